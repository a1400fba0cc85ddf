#!/usr/bin/env bash
# GPU check for a lent GPU machine (about 5 minutes on one H200):
#   1. the training step: paper-128 and edit-128, the step before it was made faster against
#      today's step in fp32 and bf16, 5 interleaved rounds of 20 steps, images/s and peak memory;
#   2. data-parallel scaling: 1 GPU against all of them (bf16, paper-128), when there are two
#      or more;
#   3. the tiny preset trained end to end on CUDA by `stargan train`, then translating and
#      evaluating with what it wrote.
# From the repository root:  bash bench/gpu_train.sh   (uses .venv/bin/python when present)
set -euo pipefail
python=${PYTHON:-python}
[ -x .venv/bin/python ] && python=.venv/bin/python
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

echo "== 1. training step"
"$python" bench/train_throughput.py --device cuda --preset paper-128 edit-128 --steps 20 \
    --rounds 5

gpus=$("$python" -c "import torch; print(torch.cuda.device_count())")
echo "== 2. data-parallel scaling ($gpus GPUs)"
if [ "$gpus" -ge 2 ]; then
    "$python" bench/train_scaling.py --device cuda --preset paper-128 --precision bf16 \
        --steps 50 --rounds 3
else
    echo "one GPU: nothing to scale"
fi

echo "== 3. tiny demo on CUDA"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m stargan_core.cli synth --out "$work/data" --dataset celeba --num-images 2000
"$python" -m stargan_core.cli train --data "$work/data/celeba" --preset tiny --device cuda \
    --out "$work/run"
"$python" -m stargan_core.cli translate --checkpoint "$work/run" --device cuda \
    --input "$work/data/celeba/img_align_celeba" --target Blond_Hair --target Male=0 \
    --out "$work/translated" | tail -3
"$python" -m stargan_core.cli evaluate --checkpoint "$work/run" --data "$work/data/celeba" \
    --device cuda > /dev/null
