"""Training throughput (images/s) and achieved GFLOP/s of the StarGAN training step.

The reference measured in the same run is the machine's matrix-multiply peak (fp32 GEMM, or
bf16 with --precision bf16 on CUDA): a training step's GFLOP/s as a share of it says how well
the step uses the hardware. FLOPs are counted with torch.utils.flop_counter's formulas over one full
n_critic cycle (n_critic D updates, one G update, gradient penalty included). Data loading is
left out: the inputs are random tensors already on the device.

    python bench/train_throughput.py                          # tiny and paper-128 on CPU
    python bench/train_throughput.py --device cuda --preset paper-128 --steps 200 \\
        --precision fp32 bf16                                 # what bench/gpu_train.sh runs
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from stargan_core.checkpoint import build_networks
from stargan_core.config import preset
from stargan_core.domains import DomainSpec
from stargan_core.train import training_step


class FlopCount(TorchDispatchMode):
    """FLOPs of every operator torch has a formula for (convolutions, matmuls), backward and
    double backward included. FlopCounterMode itself tracks modules with autograd hooks, which
    the gradient penalty's autograd.grad does not support."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None:
            # Under inference mode, composite ops such as conv2d arrive undecomposed: count the
            # operators they are made of.
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """GFLOP/s of an n x n matrix multiply, the best of several."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(5):
        sync(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * n**3 / best / 1e9


def bench(name: str, device: torch.device, bf16: bool, steps: int) -> dict[str, float]:
    config = preset(name, mixed_precision=bf16)
    spec = DomainSpec.celeba()
    torch.manual_seed(0)
    nets = build_networks(spec, config, device)
    x = torch.rand(config.batch_size, 3, config.image_size, config.image_size,
                   device=device) * 2 - 1
    c = (torch.rand(config.batch_size, spec.c_dim, device=device) > 0.5).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(i: int) -> None:
        training_step(nets, x, c, 0, spec, config, (i + 1) % config.n_critic == 0, autocast)

    cycle = config.n_critic
    with FlopCount() as counter:
        for i in range(cycle):
            step(i)
    flops_per_step = counter.total / cycle
    for i in range(cycle):  # warm-up
        step(i)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps = max(cycle, steps - steps % cycle)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    seconds = time.perf_counter() - start
    out = {"images_per_second": steps * config.batch_size / seconds,
           "gflops": flops_per_step * steps / seconds / 1e9,
           "gflop_per_step": flops_per_step / 1e9, "seconds": seconds, "steps": steps}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", nargs="+", default=["tiny", "paper-128"])
    parser.add_argument("--steps", type=int, default=0,
                        help="timed steps (default: 20 for tiny, 5 for paper-128 on CPU)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    with contextlib.suppress(AttributeError):  # fp32 means fp32, for matmuls and convolutions
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    peaks = {}
    for precision in args.precision:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        peaks[precision] = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 2048)
        print(f"matmul peak ({precision}): {peaks[precision]:,.0f} GFLOP/s")
    for preset_name in args.preset:
        for precision in args.precision:
            steps = args.steps or (20 if preset_name == "tiny" else 5)
            r = bench(preset_name, device, precision == "bf16", steps)
            memory = f", peak memory {r['peak_memory_gib']:.2f} GiB" \
                if "peak_memory_gib" in r else ""
            print(f"{preset_name:10s} {precision}: {r['images_per_second']:8.1f} images/s, "
                  f"{r['gflop_per_step']:.1f} GFLOP/step, {r['gflops']:,.0f} GFLOP/s = "
                  f"{r['gflops'] / peaks[precision]:.1%} of matmul peak "
                  f"({r['steps']} steps, {r['seconds']:.1f} s{memory})")


if __name__ == "__main__":
    main()
