"""Training throughput (images/s) of the StarGAN training step: variants of the step against
the eager fp32 step as it trains today, measured in the same run.

A single short timing on a shared machine is noise (two runs minutes apart once disagreed by
a factor of 1.6), so every variant is timed in several rounds, the variants taking turns
within each round in alternating order, and the report gives medians with the spread (the
slowest and fastest round) and the median of the per-round ratios. FLOPs are counted with
torch.utils.flop_counter's formulas over one full n_critic cycle (n_critic D updates, one G
update, gradient penalty included); the matmul peak is printed for scale only. Data loading
is left out: the inputs are random tensors already on the device.

    python bench/train_throughput.py                          # tiny and paper-128 on CPU
    python bench/train_throughput.py --device cuda --preset paper-128 --steps 20 --rounds 5 \\
        --precision fp32 bf16                                 # what bench/gpu_train.sh runs
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

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


# How a variant's networks and inputs are laid out; "eager" is the training step as it is.
VARIANTS = {"eager": torch.contiguous_format, "channels_last": torch.channels_last}


def make_step(name: str, device: torch.device, bf16: bool, variant: str
              ) -> tuple[Callable[[int], None], int, int]:
    """One training step of preset `name` on random inputs already on the device, the same
    networks and data for every variant; with its n_critic and batch size."""
    config = preset(name, mixed_precision=bf16)
    spec = DomainSpec.celeba()
    torch.manual_seed(0)
    nets = build_networks(spec, config, device)
    layout = VARIANTS[variant]
    nets.G.to(memory_format=layout)
    nets.D.to(memory_format=layout)
    x = (torch.rand(config.batch_size, 3, config.image_size, config.image_size,
                    device=device) * 2 - 1).contiguous(memory_format=layout)
    c = (torch.rand(config.batch_size, spec.c_dim, device=device) > 0.5).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(i: int) -> None:
        training_step(nets, x, c, 0, spec, config, (i + 1) % config.n_critic == 0, autocast)

    return step, config.n_critic, config.batch_size


def flops_per_step(step: Callable[[int], None], cycle: int) -> float:
    with FlopCount() as counter:
        for i in range(cycle):
            step(i)
    return counter.total / cycle


def interleaved(steps: dict[str, Callable[[int], None]], cycle: int, rounds: int,
                per_round: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per step of each variant, one measurement per round; the variants take turns
    within a round, in alternating order, so that a machine that drifts drifts for all."""
    for step in steps.values():  # warm-up
        for i in range(cycle):
            step(i)
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        for name in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            sync(device)
            start = time.perf_counter()
            for i in range(per_round):
                steps[name](i)
            sync(device)
            seconds[name].append((time.perf_counter() - start) / per_round)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", nargs="+", default=["tiny", "paper-128"])
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="step variants measured against each other (the first is the "
                        "baseline; default: eager and channels_last)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=0,
                        help="steps per variant and round (default: 10 for 32 px presets, 2 "
                        "for 128 px on CPU)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    args = parser.parse_args()
    device = torch.device(args.device)
    with contextlib.suppress(AttributeError):  # fp32 means fp32, for matmuls and convolutions
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; medians of {args.rounds} interleaved "
          "rounds (spread: fastest and slowest round)")
    for precision in args.precision:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 2048)
        print(f"matmul peak ({precision}, best of 5; for scale only): {peak:,.0f} GFLOP/s")
    for preset_name in args.preset:
        for precision in args.precision:
            bf16 = precision == "bf16"
            made = {v: make_step(preset_name, device, bf16, v) for v in args.variant}
            cycle, batch = next(iter(made.values()))[1:]
            small = preset(preset_name).image_size <= 64 or device.type == "cuda"
            per_round = args.steps or (10 if small else 2)
            per_round = max(cycle, per_round - per_round % cycle)  # whole n_critic cycles
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            gflop = flops_per_step(next(iter(made.values()))[0], cycle) / 1e9
            seconds = interleaved({v: m[0] for v, m in made.items()}, cycle, args.rounds,
                                  per_round, device)
            base = args.variant[0]
            memory = (f", peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
                      if device.type == "cuda" else "")
            print(f"{preset_name} {precision} ({gflop:.1f} GFLOP/step, {per_round} steps per "
                  f"round{memory}):")
            for variant, times in seconds.items():
                median = statistics.median(times)
                ratios = [b / t for b, t in zip(seconds[base], times, strict=True)]
                print(f"  {variant:14s} {batch / median:8.1f} images/s  "
                      f"({batch / max(times):.1f}-{batch / min(times):.1f}), "
                      f"{gflop / median:6.1f} GFLOP/s, x {statistics.median(ratios):.2f} "
                      f"against {base} ({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
