"""Data-parallel training: one process per GPU (or CPU core), started by torchrun.

torchrun (`python -m torch.distributed.run`) sets RANK, WORLD_SIZE and LOCAL_RANK in each
process's environment and the rendezvous (MASTER_ADDR/PORT) they meet at; `World.join` reads
them and opens the process group (NCCL between GPUs, gloo on CPU). Without them, the world is
this one process and nothing is opened. `torchrun_command` is how `stargan train --processes`
and the train-stargan flow start the processes on one machine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that logs, samples and writes checkpoints."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """Each process of a node takes its own GPU (LOCAL_RANK); CPUs are shared."""
        if device.type == "cuda" and self.parallel and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def local_batch(self, batch_size: int) -> int:
        """Each process's part of the global batch, which must split evenly."""
        if batch_size % self.size:
            raise ValueError(f"batch size {batch_size} does not split over {self.size} "
                             f"processes: use a multiple of {self.size}")
        return batch_size // self.size

    def part(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global-batch tensor (rank order)."""
        n = tensor.size(0) // self.size
        return tensor[self.rank * n:(self.rank + 1) * n]

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows of a batch, concatenated in rank order (the global batch)."""
        if not self.parallel:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over the processes."""
        if not self.parallel:
            return tensor
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor / self.size

    def share(self, value: object) -> object:
        """The main process's `value`, on every process."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    @staticmethod
    def from_environment() -> World:
        """The world torchrun describes in the environment; a single process without it."""
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))

    @staticmethod
    @contextmanager
    def join(device: torch.device) -> Iterator[World]:
        """The world of this process, its process group open while inside (NCCL for CUDA,
        gloo for CPU) unless someone opened it already."""
        world = World.from_environment()
        opened = world.parallel and not dist.is_initialized()
        if opened:
            if device.type == "cuda":
                torch.cuda.set_device(world.device(device))
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        try:
            yield world
        finally:
            if opened:
                dist.destroy_process_group()


ONE_PROCESS = World()


def torchrun_command(processes: int, module: str, args: Sequence[str]) -> list[str]:
    """`python -m torch.distributed.run` starting `processes` copies of `python -m module
    args` on this machine, meeting at a rendezvous of their own (several machines start
    torchrun themselves, with a shared rendezvous: see the README)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(processes), "-m", module, *args]
