"""bench/gpu_train.sh, the one-GPU acceptance script, on a machine without a GPU: its dry run
prints the whole plan and checks every python command's arguments with the parser of the
program it runs, so that a lent GPU machine's minutes are not lost to a misspelt option."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = {
    "a": "the driver and torch see the GPU",
    "b": "training step images/s and peak memory",
    "c": "stargan train at 128 px",
    "d": "resuming at step 60",
    "e": "deterministic mode",
    "f": "translates the same on the CPU as on CUDA",
    "g": "stargan evaluate runs on CUDA",
    "h": "translate-bulk's local cluster on the GPU",
    "i": "2 processes against 1",
}


def dry_run(script: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    return subprocess.run(["bash", str(script), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_dry_run_plans_every_step_and_its_commands_parse() -> None:
    done = dry_run(ROOT / "bench" / "gpu_train.sh")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step, what in STEPS.items():
        assert f"== {step}. " in out and what in out, f"step {step} is not in the plan:\n{out}"
        assert f"== {step}: planned" in out, out
    # The commands themselves, each with its time limit, and the argument check's verdict.
    for command in ("bench/train_throughput.py --device cuda --preset paper-128 edit-128",
                    "-m stargan_core.cli train", "--set deterministic=true",
                    "nvidia-smi --id=0 --query-gpu=utilization.gpu,memory.used",
                    "-m stargan_core.cli evaluate", "bench/translate_throughput.py --device cuda",
                    "bench/train_scaling.py --device cuda", "(at most 300 s)"):
        assert command in out, f"{command!r} is not in the plan"
    assert "15 of 15 planned python commands parse" in out, out
    assert "FAIL" not in out, out


def test_a_planned_command_with_a_bad_argument_fails_the_dry_run(tmp_path: Path) -> None:
    """The script with one option misspelt: the dry run names the command and fails."""
    script = (ROOT / "bench" / "gpu_train.sh").read_text()
    broken = script.replace("--classifier-steps 100", "--classifier-stpes 100")
    assert broken != script
    (tmp_path / "gpu_train.sh").write_text(broken)
    done = dry_run(tmp_path / "gpu_train.sh")
    assert done.returncode != 0
    assert "FAIL -m stargan_core.cli evaluate" in done.stdout, done.stdout
    assert "unrecognized arguments: --classifier-stpes" in done.stdout, done.stdout
    assert "dry run FAILED" in done.stdout


def test_the_checker_rejects_unknown_options_bad_choices_and_training_options(
        tmp_path: Path) -> None:
    plan = tmp_path / "plan.txt"
    plan.write_text("\n".join([
        "-m stargan_core.cli train --data d --out r --bogus",
        "-m stargan_core.cli train --data d --out r --set nosuch=1",
        "bench/train_throughput.py --variant fp16",
        "bench/translate_throughput.py --device cuda --workers 1 --against-cli",
    ]))
    done = subprocess.run([sys.executable, "bench/gpu_checks.py", "check-args", "--plan",
                           str(plan)], cwd=ROOT, env=os.environ | {"OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    for error in ("stargan: error: unrecognized arguments: --bogus",
                  "unknown training option ['nosuch']",
                  "train_throughput.py: error: argument --variant: invalid choice: 'fp16'"):
        assert error in out, out
    assert "ok   bench/translate_throughput.py --device cuda" in out, out
    assert "1 of 4 planned python commands parse" in out, out
