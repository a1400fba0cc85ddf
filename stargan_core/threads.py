"""How many threads torch computes with: this process's share of the cores it may use.

torch starts one thread per core it may run on, whatever the container's CPU quota and
however many of our processes compute beside it, and its threads wait for each other at every
operation: a few threads too many stall them all. The cores a process may use are those its
CPU affinity allows, within its cgroup's CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`),
rounded down, and without the cores that other programs keep busy (sampled for a moment from
/proc/stat: with one core of two busy elsewhere, 2 threads trained at 16-17 images/s, 1 at
36, against 60 for 2 on an idle machine); the processes that compute on the machine
(torchrun's, a local Dask cluster's workers) share them. OMP_NUM_THREADS, when set, is the
user's choice and is kept.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import torch

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")  # where distributions mount v1's controller


@dataclass(frozen=True)
class Cores:
    """The cores a process may use: `affinity` (CPUs it may run on) within `quota` (its
    cgroup's CPU time per period, in cores; None: no quota) and `idle` (the cores of its
    affinity that other programs leave free; None: not known)."""

    affinity: int
    quota: float | None = None
    idle: float | None = None

    @property
    def usable(self) -> int:
        limits = [self.affinity]
        if self.quota is not None:
            limits.append(math.floor(self.quota))
        if self.idle is not None:
            limits.append(round(self.idle))
        return max(1, min(limits))

    def __str__(self) -> str:
        quota = "none" if self.quota is None else f"{self.quota:g}"
        idle = "" if self.idle is None else f", idle {self.idle:.1f}"
        return (f"{self.usable} usable cores: affinity {self.affinity}, cgroup quota "
                f"{quota}{idle}")


def usable_cores(cgroup_root: Path = CGROUP_ROOT) -> Cores:
    """The cores this process may use, from its affinity and the cgroups under
    `cgroup_root`."""
    cpus = (os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity")
            else set(range(os.cpu_count() or 1)))
    return Cores(len(cpus), cgroup_quota(cgroup_root), idle_cores(cpus))


def idle_cores(cpus: set[int], seconds: float = 0.2) -> float | None:
    """The cores of `cpus` that other programs leave idle, over `seconds` (this process's own
    work counts as idle); None where /proc/stat is not there."""
    def sample() -> tuple[float, float, float]:
        idle = total = 0.0
        for line in Path("/proc/stat").read_text().splitlines():
            name, *ticks = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                values = [float(t) for t in ticks[:8]]  # user .. steal
                idle += values[3] + values[4]  # idle, iowait
                total += sum(values)
        return idle, total, time.process_time()

    try:
        idle0, total0, own0 = sample()
        time.sleep(seconds)
        idle1, total1, own1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    share = (idle1 - idle0) / (total1 - total0)  # of all ticks of these CPUs
    return min(len(cpus), share * len(cpus) + (own1 - own0) / seconds)


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The tightest CPU quota, in cores, of this process's cgroup and the groups above it
    (v2 and v1); None when there is none."""
    groups = _own_groups()
    v1 = next((path for names, path in groups.items() if "cpu" in names.split(",")), "/")
    quotas = [_read_quota(folder / "cpu.max") for folder in _up_from(root, groups.get("", "/"))]
    quotas += [_read_quota(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")
               for name in V1_FOLDERS for folder in _up_from(root / name, v1)]
    return min((q for q in quotas if q is not None), default=None)


def _own_groups() -> dict[str, str]:
    """This process's cgroup per controller list ("" for v2), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:  # not Linux
        return {}
    return {controllers: path for _, controllers, path in
            (line.split(":", 2) for line in lines if line.count(":") >= 2)}


def _up_from(root: Path, group: str) -> list[Path]:
    """The folder of `group` under `root` and every folder above it, up to `root`."""
    folder = root / group.strip("/")
    return [folder, *[p for p in folder.parents if p.is_relative_to(root)]]


def _read_quota(quota_file: Path, period_file: Path | None = None) -> float | None:
    """Cores' worth of CPU time: v2's `QUOTA PERIOD` (or `max PERIOD`) in one file, v1's
    quota (-1: none) and period in two."""
    try:
        if period_file is None:
            quota, period = quota_file.read_text().split()
        else:
            quota, period = quota_file.read_text(), period_file.read_text()
        quota, period = quota.strip(), period.strip()
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):  # no such group or controller here
        return None


def threads_for(processes: int = 1, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Each of `processes` computing processes' share of the usable cores, at least 1."""
    return max(1, usable_cores(cgroup_root).usable // processes)


def set_torch_threads(processes: int | None = None, cgroup_root: Path = CGROUP_ROOT) -> str:
    """Give torch this process's share of the usable cores (`processes`: those of this
    machine that compute at once; default: torchrun's LOCAL_WORLD_SIZE, else 1), unless
    OMP_NUM_THREADS says how many. Returns the line that says what it chose and why."""
    processes = processes or int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    why = (f"{usable_cores(cgroup_root)}; {processes} "
           f"process{'es' if processes > 1 else ''}")
    if os.environ.get("OMP_NUM_THREADS"):
        return (f"torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS="
                f"{os.environ['OMP_NUM_THREADS']}; {why})")
    threads = threads_for(processes, cgroup_root)
    torch.set_num_threads(threads)
    with suppress(RuntimeError):  # possible once, before any inter-op work has started
        torch.set_num_interop_threads(threads)
    return f"torch threads: {threads} ({why})"


def threads_environment(processes: int, cgroup_root: Path = CGROUP_ROOT) -> dict[str, str]:
    """The environment for `processes` computing child processes (torchrun's, which would
    give each one thread): this one, with OMP_NUM_THREADS each one's share unless set."""
    if os.environ.get("OMP_NUM_THREADS"):
        return dict(os.environ)
    return os.environ | {"OMP_NUM_THREADS": str(threads_for(processes, cgroup_root))}
