"""The local Dask cluster of a GPU machine, on this CPU machine: the test process is told that
there are 2 GPUs (torch.cuda, where `visible_gpus()` asks), and the cluster's worker processes are
started for real. They have no GPU, so the model they load for `auto` is on the CPU there."""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter

import pytest
import torch

import stargan_core.bulk.cluster as cluster
from stargan_core.bulk import BulkConfig, finish_job, job_url, parse_targets, plan_job
from stargan_core.bulk.cluster import (
    PLUGIN,
    connect,
    gpu_ids,
    load_model,
    local_workers,
    run_partitions,
)
from stargan_core.registry import resolve_model
from stargan_core.threads import Cores

CORES = 8  # what the machine is said to have: 4 per GPU worker


@pytest.fixture
def two_gpus(monkeypatch):
    """This process sees 2 GPUs with CORES usable cores; the workers inherit no
    CUDA_VISIBLE_DEVICES and no OMP_NUM_THREADS from it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(cluster, "usable_cores", lambda: Cores(CORES))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def workers_of(client) -> dict[str, dict]:
    """Per worker name: its CUDA_VISIBLE_DEVICES, dask threads and torch threads."""
    info = client.scheduler_info()["workers"]
    visible = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    torch_threads = client.run(torch.get_num_threads)
    return {info[a]["name"]: {"visible": visible[a], "threads": info[a]["nthreads"],
                              "torch": torch_threads[a]} for a in info}


@pytest.mark.parametrize(("parent", "expected"), [(None, ["0", "1"]), ("5,7", ["5", "7"])])
def test_a_worker_per_gpu_that_sees_its_own_gpu_only(two_gpus, monkeypatch, caplog, parent,
                                                     expected):
    if parent is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", parent)
    caplog.set_level(logging.INFO, logger=cluster.__name__)
    with connect() as client:
        workers = workers_of(client)
    # A thread per core of the worker's share, each computing with one torch thread.
    assert workers == {f"gpu-{gpu}": {"visible": gpu, "threads": CORES // 2, "torch": 1}
                       for gpu in expected}
    lines = [r.getMessage() for r in caplog.records if r.name == cluster.__name__]
    assert lines == [f"local Dask cluster: 2 GPU workers (GPU {expected[0]}, GPU {expected[1]})"
                     f", 4 threads each ({Cores(CORES)})"]


def test_gpus_named_by_uuid_and_fewer_workers_than_gpus(two_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8a2b, GPU-41c0")
    assert gpu_ids(2) == ["GPU-8a2b", "GPU-41c0"]
    one = local_workers(1, "cuda", Cores(CORES))  # the first GPU, with every core
    assert (one.gpus, one.threads, one.torch_threads) == (("GPU-8a2b",), CORES, 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_ids(2) == ["0", "1"]


@pytest.mark.parametrize(("workers", "device", "message"), [
    (3, "auto", r"3 workers were asked for on 2 GPUs.*workers <= 2, or device='cpu'"),
    (3, "cuda", r"workers <= 2"),
    (None, "cuda:1", r"device 'cuda:1' names one GPU.*CUDA_VISIBLE_DEVICES=1"),
])
def test_what_cannot_be_placed_on_the_gpus_fails_before_any_worker_starts(
        two_gpus, monkeypatch, workers, device, message):
    started = []
    monkeypatch.setattr(cluster, "_local_cluster", started.append)
    with pytest.raises(ValueError, match=message), connect(workers=workers, device=device):
        pass
    assert started == []


def test_no_gpu_for_cuda_is_an_error_and_auto_is_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no GPU here"):
        local_workers(None, "cuda", Cores(4))
    plan = local_workers(None, "auto", Cores(4))
    assert (plan.count, plan.threads, plan.torch_threads, plan.gpus) == (4, 1, 1, ())


def test_device_cpu_on_a_gpu_machine_is_a_cluster_of_cpu_workers(two_gpus, caplog):
    caplog.set_level(logging.INFO, logger=cluster.__name__)
    with connect(workers=2, device="cpu") as client:
        workers = workers_of(client)
    assert [w["visible"] for w in workers.values()] == [None, None]
    assert not any(str(name).startswith("gpu") for name in workers)
    assert [(w["threads"], w["torch"]) for w in workers.values()] == [(1, CORES // 2)] * 2
    assert [r.getMessage() for r in caplog.records if r.name == cluster.__name__] == [
        f"local Dask cluster: 2 CPU workers, 1 thread each ({Cores(CORES)})"]


def test_a_job_on_the_gpu_workers_translates_every_input_once(two_gpus, registered_model,
                                                               celeba_root, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(celeba_root / "img_align_celeba", photos,
                    ignore=lambda d, names: sorted(names)[12:])
    model = resolve_model("models:/stargan-celeba@champion")
    config = BulkConfig(str(photos), job_url(str(tmp_path / "out"), "faces", model), model,
                        parse_targets(model, ["Male", "Blond_Hair"]), batch_size=2,
                        files_per_partition=3)
    plan = plan_job(config)
    with connect() as client:
        source = load_model(client, config, "auto")
        results = run_partitions(client, plan, source, retries=0)
        gpu_workers = {a for a, w in client.scheduler_info()["workers"].items()
                       if w["name"] in ("gpu-0", "gpu-1")}
        # `auto` in a worker with no GPU: the model is on the CPU there.
        devices = client.run(lambda dask_worker: [
            str(m.device) for m in dask_worker.plugins[PLUGIN].models.values()])
    assert len(gpu_workers) == 2 and {r.worker for r in results} <= gpu_workers
    assert sorted(devices.values()) == [["cpu"], ["cpu"]]
    manifest = finish_job(plan, results, sample_rows=2)
    assert len(plan.partitions) == 4 and manifest["inputs"] == 12
    assert manifest["rows"] == 24 and manifest["rejected"]["count"] == 0
    assert Counter(r.rows for r in results) == {6: 4}  # 3 inputs x 2 targets in each
