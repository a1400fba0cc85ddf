#!/usr/bin/env bash
# GPU check for a lent GPU machine (well under 5 minutes): paper-128 training steps in
# fp32 and with bf16 autocast, eager and channels_last in 5 interleaved rounds of 20 steps,
# reporting median images/s with the spread and peak GPU memory. From the repository root:
#   bash bench/gpu_train.sh            (uses .venv/bin/python when present)
set -euo pipefail
python=${PYTHON:-python}
[ -x .venv/bin/python ] && python=.venv/bin/python
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$python" bench/train_throughput.py --device cuda --preset paper-128 --steps 20 --rounds 5 \
    --precision fp32 bf16
