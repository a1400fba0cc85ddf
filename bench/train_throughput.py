"""Training throughput (images/s) of the StarGAN training step: variants of the step against
the eager fp32 step as it trains today, measured in the same run.

Each variant runs under the arithmetic training itself uses for its config
(stargan_core.train.math_settings): fp32 is fp32 throughout (no TF32), bf16 lets cuBLAS and
cuDNN use TF32 where bf16 autocast leaves fp32, cuDNN picks its fastest kernels, and the
"-det" variants use deterministic kernels only (training's `deterministic=true`). The settings
are process-wide, so they are applied again before every variant's turn.

A single short timing on a shared machine is noise (two runs minutes apart once disagreed by
a factor of 1.6), so every variant is timed in several rounds, the variants taking turns
within each round in alternating order, and the report gives medians with the spread (the
slowest and fastest round) and the median of the per-round ratios. FLOPs are counted with
torch.utils.flop_counter's formulas over one full n_critic cycle (n_critic D updates, one G
update, gradient penalty included); the matmul peak is printed for scale only. Data loading
is left out: the inputs are random tensors already on the device. Peak memory (CUDA) is each
variant's alone: built, one warm-up cycle, the peak of the next cycle, freed before the next
variant is built, all before the timing.

    python bench/train_throughput.py                  # tiny, edit-32 and paper-128 on CPU
    python bench/train_throughput.py --device cuda --preset paper-128 edit-128 \\
        --variant fp32 bf16 --steps 20 --rounds 3     # what bench/gpu_train.sh runs
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from stargan_core.checkpoint import Networks, build_networks
from stargan_core.config import TrainConfig, preset
from stargan_core.domains import DomainSpec
from stargan_core.losses import classification_loss, gradient_penalty, reconstruction_loss
from stargan_core.model import PatchMatmulConv2d
from stargan_core.train import StepInputs, math_settings, training_step


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


def reference_step(nets: Networks, inputs: StepInputs, label_set: int, spec: DomainSpec,
                   config: TrainConfig, update_g: bool, autocast: torch.autocast) -> None:
    """The training step as it was before it was made faster (the baseline): one pass per
    image set, G's translation computed twice in a G-update step, the identity pass apart."""
    G, D = nets.G, nets.D
    x_real, c_org, c_trg = inputs.x_real, inputs.c_org, inputs.c_trg
    with autocast:
        out_src, out_cls = D(x_real)
        d_loss_real = -out_src.float().mean()
        d_loss_cls = classification_loss(out_cls, c_org, spec, label_set)
        with torch.no_grad():
            x_fake = G(x_real, c_trg, c_org)
        out_src, _ = D(x_fake)
        d_loss_fake = out_src.float().mean()
        d_loss_gp = gradient_penalty(D, x_real, x_fake.to(x_real.dtype), inputs.alpha)
        d_loss = (d_loss_real + d_loss_fake + config.lambda_cls * d_loss_cls
                  + config.lambda_gp * d_loss_gp)
    nets.d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    nets.d_opt.step()
    if update_g:
        D.requires_grad_(False)
        with autocast:
            x_fake, m_fake = G(x_real, c_trg, c_org, with_mask=True)
            out_src, out_cls = D(x_fake)
            g_loss = (-out_src.float().mean()
                      + config.lambda_cls * classification_loss(out_cls, c_trg, spec, label_set))
            x_rec, m_rec = G(x_fake, c_org, c_trg, with_mask=True)
            g_loss = g_loss + config.lambda_rec * reconstruction_loss(x_real, x_rec.float())
            if config.lambda_id:
                g_loss = g_loss + config.lambda_id * reconstruction_loss(
                    x_real, G(x_real, c_org, c_org).float())
            if config.lambda_mask:
                g_loss = g_loss + config.lambda_mask * (m_fake.float().mean()
                                                        + m_rec.float().mean()) / 2
        nets.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        nets.g_opt.step()
        D.requires_grad_(True)


# variant: (step function, bf16 autocast, deterministic kernels)
VARIANTS = {"reference": (reference_step, False, False), "fp32": (training_step, False, False),
            "bf16": (training_step, True, False), "fp32-det": (training_step, False, True),
            "bf16-det": (training_step, True, True)}


def make_step(name: str, device: torch.device, variant: str
              ) -> tuple[Callable[[int], None], int, int]:
    """One training step of preset `name` on random inputs already on the device, the same
    networks and data for every variant; with its n_critic and batch size. The step applies
    the variant's math settings (those training uses with the variant's config) before it
    runs, as they are process-wide and the variants take turns."""
    step_function, bf16, deterministic = VARIANTS[variant]
    config = preset(name, mixed_precision=bf16, deterministic=deterministic)
    spec = DomainSpec.celeba()
    torch.manual_seed(0)
    nets = build_networks(spec, config, device)
    if step_function is reference_step:  # and the networks as they were: convolution kernels
        for module in nets.D.modules():  # everywhere, Adam's per-parameter loop
            if isinstance(module, PatchMatmulConv2d):
                module.forward = functools.partial(nn.Conv2d.forward, module)
        betas = (config.beta1, config.beta2)
        nets.g_opt = torch.optim.Adam(nets.G.parameters(), config.g_lr, betas, foreach=False)
        nets.d_opt = torch.optim.Adam(nets.D.parameters(), config.d_lr, betas, foreach=False)
    x = torch.rand(config.batch_size, 3, config.image_size, config.image_size,
                   device=device) * 2 - 1
    c = (torch.rand(config.batch_size, spec.c_dim, device=device) > 0.5).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(i: int) -> None:
        if i == 0:  # each turn of a variant starts a cycle: its settings, once per turn
            math_settings(device, config)
        step_function(nets, StepInputs.draw(x, c), 0, spec, config,
                      (i + 1) % config.n_critic == 0, autocast)

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


def peak_memory(name: str, device: torch.device, variant: str) -> str:
    """Peak memory of one n_critic cycle of the variant with nothing else resident: its
    networks, Adam state and step built alone, warmed up (Adam's state, cuDNN's choice of
    kernels), then the peak of the next cycle; freed afterwards."""
    if device.type != "cuda":
        return ""
    step, cycle, _ = make_step(name, device, variant)
    for i in range(cycle):
        step(i)
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    for i in range(cycle):
        step(i)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    del step
    gc.collect()
    torch.cuda.empty_cache()
    return f", peak memory {peak / 2**30:.2f} GiB"


def build_parser() -> argparse.ArgumentParser:
    """The command line (bench/gpu_train.sh --dry-run checks its planned arguments with it)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", nargs="+", default=["tiny", "edit-32", "paper-128"])
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="step variants measured against each other (the first is the "
                        "baseline): reference, the step before it was made faster; fp32 and "
                        "bf16, the training step without and with bf16 autocast; fp32-det and "
                        "bf16-det, the same with deterministic kernels")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=0,
                        help="steps per variant and round (default: 10 for 32 px presets, 2 "
                        "for 128 px on CPU)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    device = torch.device(args.device)
    if any(VARIANTS[v][2] for v in args.variant):
        # cuBLAS reads its workspace setting when it first runs in the process: deterministic
        # variants need it set before any of them (math_settings sets it too late here).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; medians of {args.rounds} interleaved "
          "rounds (spread: fastest and slowest round)")
    math_settings(device, preset("tiny", mixed_precision=False))  # fp32: the fp32 peak
    for dtype in (torch.float32, torch.bfloat16):
        peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 2048)
        print(f"matmul peak ({dtype}, best of 5; for scale only): {peak:,.0f} GFLOP/s")
    for preset_name in args.preset:
        memory = {v: peak_memory(preset_name, device, v) for v in args.variant}  # each alone
        made = {v: make_step(preset_name, device, v) for v in args.variant}
        cycle, batch = next(iter(made.values()))[1:]
        small = preset(preset_name).image_size <= 64 or device.type == "cuda"
        per_round = args.steps or (10 if small else 2)
        per_round = max(cycle, per_round - per_round % cycle)  # whole n_critic cycles
        gflop = flops_per_step(next(iter(made.values()))[0], cycle) / 1e9
        seconds = interleaved({v: m[0] for v, m in made.items()}, cycle, args.rounds,
                              per_round, device)
        base = args.variant[0]
        print(f"{preset_name} ({gflop:.1f} GFLOP/step of the {base} step, {per_round} steps "
              "per round):")
        for variant, times in seconds.items():
            median = statistics.median(times)
            ratios = [b / t for b, t in zip(seconds[base], times, strict=True)]
            print(f"  {variant:10s} {batch / median:8.1f} images/s  "
                  f"({batch / max(times):.1f}-{batch / min(times):.1f}), "
                  f"x {statistics.median(ratios):.2f} against {base} "
                  f"({min(ratios):.2f}-{max(ratios):.2f}){memory[variant]}")


if __name__ == "__main__":
    main()
