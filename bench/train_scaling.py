"""Data-parallel scaling of the training step: images/s of 1 process against N processes
started by torchrun (DistributedDataParallel; gloo on CPU, NCCL on GPUs), the global batch
that of the preset in both.

On CPU the cores are divided between the processes (2 cores: one process with 2 threads
against 2 processes with 1 thread each); on GPUs each process takes one GPU. Runs alternate
(1, N, 1, N, ...) and the report gives medians with the slowest and fastest run. The inputs
are random tensors already on the device, so data loading is left out.

    python bench/train_scaling.py                          # edit-32 on this machine's cores
    python bench/train_scaling.py --device cuda --preset paper-128 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch.nn.parallel import DistributedDataParallel

from stargan_core.checkpoint import build_networks
from stargan_core.config import preset
from stargan_core.distributed import World, torchrun_command
from stargan_core.domains import DomainSpec
from stargan_core.train import StepInputs, math_settings, training_step


def worker(args: argparse.Namespace) -> None:
    """One of the torchrun processes: time `args.steps` training steps after a warm-up."""
    device = torch.device(args.device)
    with World.join(device) as world:
        device = world.device(device)
        config = preset(args.preset, mixed_precision=args.precision == "bf16")
        math_settings(device, config)  # the arithmetic training uses (TF32 off in fp32)
        spec = DomainSpec.celeba()
        torch.manual_seed(0)
        nets = build_networks(spec, config, device)
        if world.parallel:
            ids = [device.index] if device.type == "cuda" else None
            nets.parallel = (DistributedDataParallel(nets.G, device_ids=ids),
                             DistributedDataParallel(nets.D, device_ids=ids))
        batch = world.local_batch(config.batch_size)
        x = torch.rand(batch, 3, config.image_size, config.image_size, device=device) * 2 - 1
        c = (torch.rand(batch, spec.c_dim, device=device) > 0.5).float()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                  enabled=args.precision == "bf16")

        def step(i: int) -> None:
            training_step(nets, StepInputs.draw(x, c, world), 0, spec, config,
                          (i + 1) % config.n_critic == 0, autocast)

        for i in range(config.n_critic):  # warm-up
            step(i)
        steps = max(config.n_critic, args.steps - args.steps % config.n_critic)
        world.barrier()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = world.mean(torch.tensor(time.perf_counter() - start, device=device)).item()
        if world.is_main:
            print(json.dumps({"images_per_second": config.batch_size * steps / seconds}))


def run(processes: int, args: argparse.Namespace, threads: int) -> float:
    command = torchrun_command(processes, "bench.train_scaling", [
        "--worker", "--device", args.device, "--preset", args.preset, "--steps",
        str(args.steps), "--precision", args.precision])
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "GLOO_SOCKET_IFNAME": "lo"}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"{processes} processes failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def build_parser() -> argparse.ArgumentParser:
    """The command line (bench/gpu_train.sh --dry-run checks its planned arguments with it)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="edit-32")
    parser.add_argument("--processes", type=int, default=0,
                        help="the N measured against 1 (default: the cores or the GPUs)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each, alternating")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.worker:
        return worker(args)
    cuda = args.device.startswith("cuda")
    cores = len(os.sched_getaffinity(0))
    n = args.processes or (torch.cuda.device_count() if cuda else cores)
    threads = {1: 1 if cuda else cores, n: 1 if cuda else max(cores // n, 1)}
    print(f"{args.preset}, {args.precision}, global batch {preset(args.preset).batch_size}; "
          f"{'GPUs' if cuda else 'CPU cores'}: {n if cuda else cores}; 1 process "
          f"({threads[1]} threads) against {n} ({threads[n]} threads each), "
          f"{args.rounds} alternating runs of {args.steps} steps")
    results: dict[int, list[float]] = {1: [], n: []}
    for r in range(args.rounds):
        for p in ((1, n) if r % 2 == 0 else (n, 1)):
            results[p].append(run(p, args, threads[p]))
    for p, values in results.items():
        print(f"  {p} process{'es' if p > 1 else ''}: {statistics.median(values):8.1f} images/s "
              f"({min(values):.1f}-{max(values):.1f})")
    ratios = [b / a for a, b in zip(results[1], results[n], strict=True)]
    print(f"  scaling: x {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
          f"with {n} processes")


if __name__ == "__main__":
    main()
