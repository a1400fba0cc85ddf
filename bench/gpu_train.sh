#!/usr/bin/env bash
# GPU check for a lent GPU machine (well under 5 minutes): 200 training steps of paper-128 in
# fp32 and with bf16 autocast, reporting images/s, GFLOP/s against the GPU's own matmul peak,
# and peak GPU memory. Run from the repository root with the project installed:
#   bash bench/gpu_train.sh            (uses .venv/bin/python when present)
set -euo pipefail
python=${PYTHON:-python}
[ -x .venv/bin/python ] && python=.venv/bin/python
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$python" bench/train_throughput.py --device cuda --preset paper-128 --steps 200 \
    --precision fp32 bf16
