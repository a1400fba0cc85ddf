#!/usr/bin/env bash
# The one-GPU acceptance check: what a lent GPU machine must show before training runs on it
# (about 7 minutes on one H100). Each step is bounded by `timeout`, prints what it proves and
# ends with a PASS, FAIL or SKIP line; a failed step does not stop the steps that do not need
# its results, and the summary at the end gives every step's result. The exit status is
# non-zero when any step failed.
#   a. the driver and torch see the GPU; `--device auto` picks CUDA; bf16 is native
#   b. the training step: images/s and peak memory, paper-128 and edit-128, fp32 and bf16
#   c. `stargan train` at 128 px (edit-128, 60 steps, 4 DataLoader workers, pinned memory):
#      GPU utilisation sampled by nvidia-smi while it runs, and the step rate
#   d. resuming on CUDA: the same command to 90 steps resumes at step 60
#   e. deterministic mode: 20 steps straight and 10 + resumed to 20 give the same weights bit
#      for bit; the cost of deterministic kernels in step time
#   f. a CUDA checkpoint translates the same on the CPU as on CUDA (largest pixel difference)
#   g. `stargan evaluate --device cuda` on the run
#   h. translate-bulk's local cluster on the GPU against `stargan translate`, images/s
#   i. data-parallel training, 2 processes against 1 (only with two or more GPUs)
# From the repository root (uses .venv/bin/python when present):
#   bash bench/gpu_train.sh              # everything; the work folder is removed at the end
#   bash bench/gpu_train.sh --keep       # keep it (data, runs, logs; its path is printed)
#   bash bench/gpu_train.sh --dry-run    # any machine, no GPU needed, ~15 s: print the plan
#       (each step, its time limit, its exact commands) and check that every python command's
#       arguments parse with the parser of the program it runs (bench/gpu_checks.py
#       check-args), running nothing; a bad argument makes the dry run fail.
#   WORK=DIR bash bench/gpu_train.sh --step d   # one step alone, on an earlier --keep's folder
set -uo pipefail
script=$0
python=${PYTHON:-python}
[ -x .venv/bin/python ] && python=.venv/bin/python
export MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

dry=0 keep=0 only=""
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) dry=1 ;;
        --keep) keep=1 ;;
        --step) only=${2:?--step needs a letter}; shift ;;
        -h|--help) sed -n '2,/^set /p' "$script" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (--dry-run, --keep, --step X, --help)" >&2; exit 2 ;;
    esac
    shift
done

steps=(a b c d e f g h i)
declare -A limit=([a]=60 [b]=300 [c]=300 [d]=180 [e]=360 [f]=120 [g]=300 [h]=300 [i]=300)
declare -A proves=(
    [a]="the driver and torch see the GPU; --device auto picks CUDA; bf16 is native"
    [b]="training step images/s and peak memory: paper-128, edit-128 in fp32 and bf16"
    [c]="stargan train at 128 px keeps the GPU busy: utilisation and step rate"
    [d]="a run resumes on CUDA where it stopped (resuming at step 60)"
    [e]="deterministic mode repeats a run bit for bit across a resume; its cost"
    [f]="a CUDA checkpoint translates the same on the CPU as on CUDA"
    [g]="stargan evaluate runs on CUDA"
    [h]="translate-bulk's local cluster on the GPU against stargan translate"
    [i]="data-parallel training scales: 2 processes against 1 (two or more GPUs)"
)

exec 3>&1  # the step's own lines, whatever its commands' output is redirected to

# A command line as it can be pasted into a shell (quoted only where needed).
quoted() {
    local arg out=()
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
            out+=("$arg")
        else
            out+=("$(printf '%q' "$arg")")
        fi
    done
    echo "${out[*]}"
}

# A command of a step: printed as it runs; in a dry run printed only, and a python command's
# arguments kept for the argument check.
run() {
    echo "   \$ $(quoted "$@")" >&3
    if [ "$dry" = 1 ]; then
        if [ "$1" = "$python" ]; then
            printf '%q ' "${@:2}" >>"$PLAN"
            echo >>"$PLAN"
        fi
        return 0
    fi
    "$@"
}

# A command started in the background (output to $1), printed; its process id in $started.
started=""
background() {
    local out=$1
    shift
    echo "   \$ $(quoted "$@") >$(quoted "$out") &" >&3
    [ "$dry" = 1 ] && return 0
    "$@" >"$out" 2>&1 &
    started=$!
}

# The last lines of a command's log, progress bars unrolled.
show() {
    [ "$dry" = 1 ] || [ ! -f "$1" ] && return 0
    tr '\r' '\n' <"$1" | grep -v '^[[:space:]]*$' | tail -n "${2:-3}" | sed 's/^/   | /'
}

# A check of a step's output: prints what it checks and its result (nothing to check in a
# dry run).
check() {
    local what=$1
    shift
    if [ "$dry" = 1 ]; then
        echo "   check: $what" >&3
        return 0
    fi
    if "$@"; then echo "   check: $what: yes"; else echo "   check: $what: NO"; return 1; fi
}

# What an earlier step left, or this step is skipped (exit 3).
need() {
    [ "$dry" = 1 ] || [ -e "$1" ] && return 0
    echo "   not run: needs $2 ($1 is missing)"
    exit 3
}

data="" train=()
setup_paths() {
    data="$WORK/data/celeba"
    train=(-m stargan_core.cli train --data "$data" --preset edit-128 --device cuda
           --set num_workers=4)
}

step_a() {
    local rc=0
    run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || rc=1
    run "$python" bench/gpu_checks.py devices || rc=1
    return $rc
}

step_b() {
    run "$python" bench/train_throughput.py --device cuda --preset paper-128 edit-128 \
        --variant fp32 bf16 --steps 20 --rounds 3
}

step_c() {
    local log=$WORK/c-train.log usage=$WORK/c-usage.csv rc
    run "$python" -m stargan_core.cli synth --out "$WORK/data" --dataset celeba \
        --num-images 2000 >"$WORK/c-synth.log" 2>&1 || { show "$WORK/c-synth.log" 20; return 1; }
    show "$WORK/c-synth.log" 1
    echo "   in the background while training runs:" >&3
    background "$usage" nvidia-smi --id=0 --query-gpu=utilization.gpu,memory.used \
        --format=csv,noheader,nounits -lms 500
    run "$python" "${train[@]}" --iters 60 --out "$WORK/run" >"$log" 2>&1
    rc=$?
    if [ -n "$started" ]; then kill "$started"; wait "$started" 2>/dev/null; fi
    show "$log" 4
    [ "$rc" = 0 ] || return 1
    run "$python" bench/gpu_checks.py run-summary --log "$log" --usage "$usage"
}

step_d() {
    local log=$WORK/d-train.log
    need "$WORK/run/checkpoints/step-0000060.ckpt" "step c's run"
    run "$python" "${train[@]}" --iters 90 --out "$WORK/run" >"$log" 2>&1 || {
        show "$log" 20; return 1; }
    show "$log" 4
    check "the output says it resumed at step 60" grep -q "resuming at step 60" "$log"
}

step_e() {
    # A constant learning rate (no decay), so that the 10-step run is the first half of the
    # 20-step one (the decay's length follows --iters).
    local det=(--set deterministic=true --set num_iters_decay=0) rc=0
    need "$data" "step c's data set"
    run "$python" "${train[@]}" "${det[@]}" --iters 20 --out "$WORK/det-straight" \
        >"$WORK/e-straight.log" 2>&1 || { show "$WORK/e-straight.log" 20; rc=1; }
    run "$python" "${train[@]}" "${det[@]}" --iters 10 --out "$WORK/det-resumed" \
        >"$WORK/e-first.log" 2>&1 || { show "$WORK/e-first.log" 20; rc=1; }
    run "$python" "${train[@]}" "${det[@]}" --iters 20 --out "$WORK/det-resumed" \
        >"$WORK/e-resumed.log" 2>&1 || { show "$WORK/e-resumed.log" 20; rc=1; }
    check "the second part resumed at step 10" grep -q "resuming at step 10" \
        "$WORK/e-resumed.log" || rc=1
    if [ "$dry" = 0 ]; then  # operations torch ran without a deterministic kernel, if any
        cat "$WORK"/e-*.log | grep -o "[A-Za-z0-9_:]* does not have a deterministic [a-z]*" \
            | sort -u | sed 's/^/   warned: /'
    fi
    run "$python" bench/gpu_checks.py same-weights \
        "$WORK/det-straight/checkpoints/step-0000020.ckpt" \
        "$WORK/det-resumed/checkpoints/step-0000020.ckpt" || rc=1
    echo "   the cost: the bf16 step with deterministic kernels against without" >&3
    run "$python" bench/train_throughput.py --device cuda --preset edit-128 \
        --variant bf16 bf16-det --steps 20 --rounds 3 || rc=1
    return $rc
}

step_f() {
    need "$WORK/run/checkpoints" "step c's run"
    run "$python" bench/gpu_checks.py across-devices "$WORK/run" --devices cpu cuda \
        --input "$data/img_align_celeba" --images 16
}

step_g() {
    need "$WORK/run/checkpoints" "step c's run"
    run "$python" -m stargan_core.cli evaluate --checkpoint "$WORK/run" --data "$data" \
        --device cuda --images 200 --classifier-steps 100 >"$WORK/g-metrics.json" \
        2>"$WORK/g-evaluate.log" || { show "$WORK/g-evaluate.log" 20; return 1; }
    show "$WORK/g-evaluate.log" 6
}

gpus() {
    if [ "$dry" = 1 ]; then echo 2; else nvidia-smi --list-gpus 2>/dev/null | grep -c "^GPU"; fi
}

step_h() {
    local workers=(1) n
    n=$(gpus)
    [ "$dry" = 0 ] && [ "$n" -ge 2 ] && workers+=("$n")
    run "$python" bench/translate_throughput.py --device cuda --workers "${workers[@]}" \
        --images 512 --batch-size 32 --against-cli
}

step_i() {
    local n
    n=$(gpus)
    [ "$dry" = 1 ] && echo "   with 2 or more GPUs (else: one GPU: skipped):" >&3
    if [ "$n" -lt 2 ]; then
        echo "   one GPU: skipped"
        exit 3
    fi
    run "$python" bench/train_scaling.py --device cuda --preset paper-128 --precision bf16 \
        --processes "$n" --steps 50 --rounds 3
}

if [ -n "$only" ]; then  # one step, in its own process (the one `timeout` bounds)
    [[ " ${steps[*]} " == *" $only "* ]] || { echo "no step $only" >&2; exit 2; }
    if [ -z "${WORK:-}" ]; then
        WORK=$(mktemp -d)
        echo "work folder: $WORK"
    fi
    PLAN=${PLAN:-/dev/null}
    setup_paths
    "step_$only"
    exit $?
fi

WORK=$(mktemp -d)
PLAN=$WORK/plan.txt
export WORK PLAN
: >"$PLAN"
if [ "$keep" = 1 ]; then echo "work folder (kept): $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
[ "$dry" = 1 ] && echo "dry run: the plan, nothing is run"
declare -A result seconds
began=$SECONDS failed=0
for id in "${steps[@]}"; do
    echo "== $id. ${proves[$id]} (at most ${limit[$id]} s)"
    start=$SECONDS
    options=()
    [ "$dry" = 1 ] && options+=(--dry-run)
    timeout -k 20 "${limit[$id]}" bash "$script" --step "$id" "${options[@]}"
    rc=$?
    seconds[$id]=$((SECONDS - start))
    case $rc in
        0) result[$id]=PASS ;;
        3) result[$id]=SKIP ;;
        124|137) result[$id]="FAIL (out of time)"; failed=1 ;;
        *) result[$id]=FAIL; failed=1 ;;
    esac
    [ "$dry" = 1 ] && [ "$rc" = 0 ] && result[$id]=planned
    echo "== $id: ${result[$id]} (${seconds[$id]} s)"
done

if [ "$dry" = 1 ]; then
    echo "== the planned python commands' arguments, checked with their own parsers"
    timeout -k 10 120 "$python" bench/gpu_checks.py check-args --plan "$PLAN" || failed=1
fi
echo "== summary ($((SECONDS - began)) s)"
for id in "${steps[@]}"; do
    printf '  %s  %-18s %4s s  %s\n' "$id" "${result[$id]}" "${seconds[$id]}" "${proves[$id]}"
done
if [ "$dry" = 1 ] && [ "$failed" = 0 ]; then
    echo "dry run: every step planned, every python command's arguments parse"
elif [ "$dry" = 1 ]; then
    echo "dry run FAILED"
elif [ "$failed" = 0 ]; then
    echo "all steps passed"
else
    echo "FAILED:$(for id in "${steps[@]}"; do
        [[ ${result[$id]} == FAIL* ]] && echo -n " $id"; done)"
fi
exit $failed
