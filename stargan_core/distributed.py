"""Data-parallel training: one process per GPU (or CPU core), started by torchrun.

torchrun (`python -m torch.distributed.run`) sets RANK, WORLD_SIZE and LOCAL_RANK in each
process's environment and the rendezvous (MASTER_ADDR/PORT) they meet at; `World.join` reads
them and opens the process group (NCCL between GPUs, gloo on CPU). Without them, the world is
this one process and nothing is opened. `torchrun_command` is how `stargan train --processes`
and the train-stargan flow start the processes on one machine: torchrun through this module's
entry point, so that it dies with the process that started it, and its workers with it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from stargan_core.devices import check_gpus


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # the processes on this machine

    @property
    def is_main(self) -> bool:
        """The process that logs, samples and writes checkpoints."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """Each process of a node takes its own GPU (LOCAL_RANK); CPUs are shared. A device
        that cannot be mapped so is a ValueError (`check_gpus`)."""
        if device.type == "cuda" and self.parallel:
            check_gpus(device, self.local_size, "training processes on this machine")
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
        """Wait until every process is here. This is where the others wait while process 0
        works alone (restoring the run, evaluating, uploading a checkpoint), however long that
        takes (up to `PATIENCE`): call it after such work, before the next collective, whose
        wait is bounded by the process group's timeout (`collective_timeout`)."""
        if self.parallel:
            dist.barrier(group=_patient_group())

    @staticmethod
    def from_environment() -> World:
        """The world torchrun describes in the environment; a single process without it."""
        size = int(os.environ.get("WORLD_SIZE", 1))
        return World(int(os.environ.get("RANK", 0)), size, int(os.environ.get("LOCAL_RANK", 0)),
                     int(os.environ.get("LOCAL_WORLD_SIZE", size)))

    @staticmethod
    @contextmanager
    def join(device: torch.device) -> Iterator[World]:
        """The world of this process, its process group open while inside (NCCL for CUDA,
        gloo for CPU) unless someone opened it already."""
        world = World.from_environment()
        if world.parallel:
            die_with_launcher()
        opened = world.parallel and not dist.is_initialized()
        if opened:
            if device.type == "cuda":
                torch.cuda.set_device(world.device(device))
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=collective_timeout())
            _patient_group()  # every process is here now: meet in it too
        try:
            yield world
        finally:
            if opened:
                _PATIENT.clear()
                dist.destroy_process_group()


ONE_PROCESS = World()

COLLECTIVE_TIMEOUT = "STARGAN_COLLECTIVE_TIMEOUT"  # seconds, in the environment
# How long the other processes wait for process 0 at `World.barrier`: its lone work (an
# evaluation, a checkpoint upload to slow storage) ends or fails well within it; a failure
# ends every process at once (torchrun stops the others), so this only bounds a hang.
PATIENCE = timedelta(hours=2)
_PATIENT: list[dist.ProcessGroup] = []  # the group `World.barrier` waits in, once opened


def collective_timeout() -> timedelta | None:
    """How long a collective (the gradients' all-reduce, a broadcast) waits for a process
    that does not come: $STARGAN_COLLECTIVE_TIMEOUT seconds, else torch's default (NCCL 10
    minutes, gloo 30). Only steps that every process computes meet in such collectives."""
    value = os.environ.get(COLLECTIVE_TIMEOUT, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError(f"{COLLECTIVE_TIMEOUT}={value!r} is not a number of seconds above 0")
    return timedelta(seconds=seconds)


def _patient_group() -> dist.ProcessGroup:
    """A gloo group of every process whose operations wait up to `PATIENCE` (gloo, so that a
    wait on NCCL's watchdog never starts): opened once by every process together."""
    if not _PATIENT:
        _PATIENT.append(dist.new_group(backend="gloo", timeout=PATIENCE))
    return _PATIENT[0]


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
LAUNCHER_PID = "STARGAN_LAUNCHER_PID"  # the torchrun process, in its workers' environment


def die_with(parent: int, signum: signal.Signals) -> None:
    """Have this process sent `signum` when `parent`, the process that started it, ends
    (even by SIGKILL): the kernel's parent-death signal on Linux, a watchdog thread elsewhere.
    A parent that ended before the signal was armed counts too."""
    try:
        armed = ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signum)) == 0
    except (OSError, AttributeError):  # no prctl: not Linux
        armed = False
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent, signum), daemon=True,
                         name="parent-watchdog").start()
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def _watch_parent(parent: int, signum: signal.Signals) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signum)


@functools.cache
def die_with_launcher() -> None:
    """A torchrun worker ends with its launcher: without it the other workers are going or
    gone, and a rerun must find the run folder free. SIGKILL, since nothing is left to save
    that the last checkpoint does not hold."""
    die_with(int(os.environ.get(LAUNCHER_PID, os.getppid())), signal.SIGKILL)


def torchrun_command(processes: int, module: str, args: Sequence[str]) -> list[str]:
    """torchrun starting `processes` copies of `python -m module args` on this machine,
    meeting at a rendezvous of their own (several machines start torchrun themselves, with a
    shared rendezvous: see docs/training.md). It runs through this module, as a child of this
    process that ends with it (see `launch`)."""
    return [sys.executable, "-m", "stargan_core.distributed", str(os.getpid()), "--standalone",
            "--nproc-per-node", str(processes), "-m", module, *args]


def launch(parent: int, torchrun_args: Sequence[str]) -> None:
    """torchrun (`python -m torch.distributed.run torchrun_args`), sent SIGTERM when `parent`
    ends so that it stops its workers; they end with it in any case (`die_with_launcher`).
    On Linux the signal comes when the parent's thread that started it ends: keep that thread
    waiting for it."""
    from torch.distributed.run import main

    die_with(parent, signal.SIGTERM)
    os.environ[LAUNCHER_PID] = str(os.getpid())
    main(list(torchrun_args))


if __name__ == "__main__":  # python -m stargan_core.distributed PARENT_PID TORCHRUN_ARGS...
    launch(int(sys.argv[1]), sys.argv[2:])
