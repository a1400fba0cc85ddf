"""torch's threads: the cores a process may use (affinity, cgroup quota) shared by the
processes that compute beside it, unless OMP_NUM_THREADS says otherwise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import torch

from stargan_core import threads as thread_choice
from stargan_core.threads import (
    Cores,
    set_torch_threads,
    threads_environment,
    usable_cores,
)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """Six CPUs in the affinity mask and a cgroup folder to write quotas into; torch's
    threads as they were afterwards."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.setattr(thread_choice, "idle_cores", lambda cpus: None)  # not sampled: see below
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    threads = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(threads)


def test_the_usable_cores_are_the_affinity_within_the_cgroup_quota_rounded_down(machine):
    assert usable_cores(machine) == Cores(6, None)  # no cgroup files: no quota
    (machine / "cpu.max").write_text("max 100000\n")  # v2 without a limit
    assert usable_cores(machine).usable == 6
    (machine / "cpu.max").write_text("250000 100000\n")  # v2: 2.5 cores
    assert usable_cores(machine) == Cores(6, 2.5)
    assert str(usable_cores(machine)) == "2 usable cores: affinity 6, cgroup quota 2.5"
    (machine / "cpu.max").write_text("50000 100000\n")  # half a core: still one
    assert usable_cores(machine).usable == 1
    (machine / "cpu.max").unlink()
    (machine / "cpu").mkdir()
    (machine / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1 without a limit
    (machine / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(machine).quota is None
    (machine / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")  # v1: 3 cores
    assert usable_cores(machine) == Cores(6, 3.0)
    (machine / "cpu.max").write_text("400000 100000\n")  # both: the tighter one
    assert usable_cores(machine).usable == 3


def test_torch_gets_its_share_of_the_usable_cores_and_the_line_says_why(machine, monkeypatch):
    (machine / "cpu.max").write_text("400000 100000\n")
    line = set_torch_threads(1, cgroup_root=machine)
    assert line == "torch threads: 4 (4 usable cores: affinity 6, cgroup quota 4; 1 process)"
    assert torch.get_num_threads() == 4
    assert set_torch_threads(3, cgroup_root=machine).startswith("torch threads: 1 (")
    assert torch.get_num_threads() == 1  # 4 // 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # one of torchrun's two processes
    assert set_torch_threads(cgroup_root=machine).endswith("; 2 processes)")
    assert torch.get_num_threads() == 2


def test_omp_num_threads_is_the_users_choice_and_is_kept(machine, monkeypatch):
    torch.set_num_threads(3)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    line = set_torch_threads(1, cgroup_root=machine)
    assert line == ("torch threads: 3 (OMP_NUM_THREADS=3; 6 usable cores: affinity 6, "
                    "cgroup quota none; 1 process)")
    assert torch.get_num_threads() == 3
    assert threads_environment(2, cgroup_root=machine)["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    # torchrun would give each child one thread: they get their share instead.
    assert threads_environment(2, cgroup_root=machine)["OMP_NUM_THREADS"] == "3"
    assert threads_environment(4, cgroup_root=machine)["OMP_NUM_THREADS"] == "1"


def test_the_command_says_how_many_threads_torch_computes_with(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                           "LOCAL_WORLD_SIZE")}
    done = subprocess.run([sys.executable, "-m", "stargan_core.cli", "synth", "--out",
                           str(tmp_path), "--dataset", "celeba", "--num-images", "4"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^torch threads: \d+ \(\d+ usable cores: affinity \d+, cgroup quota \S+, "
                     r"idle [\d.]+; 1 process\)$", done.stderr, re.MULTILINE), done.stderr


def test_cores_that_other_programs_keep_busy_are_not_used():
    """One of this machine's cores kept busy by another program: the sample sees it, and
    torch is given one core fewer than when it is idle."""
    cpus = os.sched_getaffinity(0)
    assert Cores(2, None, 0.8).usable == 1 and Cores(2, None, 1.7).usable == 2
    assert Cores(4, 2.5, 3.6).usable == 2 and Cores(4, None, 0.1).usable == 1
    before = thread_choice.idle_cores(cpus, 0.5)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        during = thread_choice.idle_cores(cpus, 0.5)
    finally:
        busy.kill()
        busy.wait()
    assert during <= before - 0.6, (before, during)
