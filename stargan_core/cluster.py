"""Bulk translation on a Dask cluster: each worker loads the model version once (a worker
plugin), and each partition is one task with retries.

A worker that dies loses only the partitions it held: the scheduler gives them to another
worker, and their shards are written whole or not at all (see `stargan_core.bulk`).
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import mlflow
import torch
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from stargan_core.bulk import BulkConfig, BulkPlan, Partition, PartitionResult, translate_partition
from stargan_core.registry import StarGANModel, load_registered


class ModelPlugin(WorkerPlugin):
    """Loads one registered model version on each worker, when the plugin is registered and
    on every worker that joins later (a restarted one included)."""

    idempotent = True  # registered again under the same name (a re-run): keep the loaded model

    def __init__(self, model_uri: str, device: str, tracking_uri: str) -> None:
        self.model_uri, self.device, self.tracking_uri = model_uri, device, tracking_uri
        self.model: StarGANModel | None = None

    def setup(self, worker: object) -> None:
        mlflow.set_tracking_uri(self.tracking_uri)
        self.model = load_registered(self.model_uri, self.device)


def plugin_name(config: BulkConfig, device: str) -> str:
    """Keyed on the model version (and device): a new version is a new plugin."""
    return f"stargan-model-{config.model.name}-v{config.model.version}-{device}"


def _translate(config: BulkConfig, partition: Partition, plugin: str) -> PartitionResult:
    worker = get_worker()
    model = worker.plugins[plugin].model
    return replace(translate_partition(config, partition, model), worker=worker.address)


def gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextmanager
def connect(address: str = "", workers: int | None = None, device: str = "auto"
            ) -> Iterator[Client]:
    """A client of the scheduler at `address`, or of a cluster started here and stopped at the
    end: a LocalCUDACluster (one worker per GPU) when GPUs are present and dask-cuda is
    installed, else a LocalCluster of `workers` processes (default: one per core)."""
    if address:
        with Client(address) as client:
            yield client
        return
    dashboard = ":0" if importlib.util.find_spec("bokeh") else None
    if device != "cpu" and gpus() and importlib.util.find_spec("dask_cuda"):
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(n_workers=workers or gpus(), threads_per_worker=1,
                                   dashboard_address=dashboard)
    else:
        # One thread per worker process: Dask sets OMP_NUM_THREADS=1 in each, so n workers use
        # n cores without oversubscribing them.
        cluster = LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1,
                               processes=True, host="127.0.0.1", dashboard_address=dashboard)
    with cluster, Client(cluster) as client:
        yield client


def run_partitions(
    client: Client, plan: BulkPlan, device: str = "auto", retries: int = 2,
    on_result: Callable[[PartitionResult, int, int], None] | None = None,
) -> list[PartitionResult]:
    """Every partition of `plan` as a task on the cluster; stops at the first partition that
    still fails after its retries."""
    name = plugin_name(plan.config, device)
    client.register_plugin(ModelPlugin(plan.config.model.uri, device, mlflow.get_tracking_uri()),
                           name=name)
    run = uuid.uuid4().hex[:8]
    futures = [client.submit(_translate, plan.config, p, name, retries=retries, pure=False,
                             key=f"translate-partition-{p.index:05d}-{run}")
               for p in plan.partitions]
    results: list[PartitionResult] = []
    try:
        for future in as_completed(futures):
            results.append(future.result())
            if on_result is not None:
                on_result(results[-1], len(results), len(futures))
    finally:
        client.cancel(futures)  # after a failure, the rest need not go on
    return results
