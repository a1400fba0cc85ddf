"""Bulk translation on a Dask cluster: each worker loads the model version once (a worker
plugin), and each partition is one task with retries.

Plain Dask rather than Prefect's DaskTaskRunner: the model must live in the workers between
tasks (the plugin), and a partition whose worker dies must simply run again elsewhere, which
the scheduler does by itself. Its shard is written whole or not at all (see partition.py).
"""

from __future__ import annotations

import importlib.util
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import dask.config
import mlflow
import torch
from dask.system import CPU_COUNT
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from stargan_core.bulk.partition import PartitionResult, translate_partition
from stargan_core.bulk.plan import BulkConfig, BulkPlan, Partition
from stargan_core.registry import StarGANModel, load_registered

PLUGIN_PREFIX = "stargan-model-"


class ModelPlugin(WorkerPlugin):
    """Loads one registered model version on each worker, when the plugin is registered and
    on every worker that joins later (a restarted one included)."""

    idempotent = True  # registered again under the same name (a re-run): keep the loaded model

    def __init__(self, model_uri: str, device: str) -> None:
        self.model_uri, self.device = model_uri, device
        # The stores this process uses, for workers started without MLFLOW_TRACKING_URI.
        self.tracking_uri, self.registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        self.model: StarGANModel | None = None

    def setup(self, worker: object) -> None:
        self.model = load_registered(self.model_uri, self.device, self.tracking_uri,
                                     self.registry_uri)


def gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextmanager
def connect(address: str = "", workers: int | None = None, device: str = "auto"
            ) -> Iterator[Client]:
    """A client of the scheduler at `address` (or $DASK_SCHEDULER_ADDRESS), or of a cluster
    started here and stopped at the end: a LocalCUDACluster (one worker per GPU) when GPUs are
    present, else a LocalCluster of `workers` processes (default: one per usable core)."""
    address = address or dask.config.get("scheduler-address", None)  # $DASK_SCHEDULER_ADDRESS
    if address:
        with Client(address) as client:
            yield client
        return
    # The local cluster's scheduler runs in this process: keep its chatter out of the log.
    chatter = logging.getLogger("distributed")
    level = chatter.level
    chatter.setLevel(max(level, logging.WARNING))
    try:
        with _local_cluster(workers, device) as cluster, Client(cluster) as client:
            yield client
    finally:
        chatter.setLevel(level)


def _local_cluster(workers: int | None, device: str) -> LocalCluster:
    dashboard = ":0" if importlib.util.find_spec("bokeh") else None
    if device != "cpu" and gpus():
        if not importlib.util.find_spec("dask_cuda"):
            raise RuntimeError("GPUs are present but dask-cuda is not installed: "
                               "pip install 'stargan-pipeline[gpu]', or use device='cpu'")
        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(n_workers=workers or gpus(), threads_per_worker=1,
                                dashboard_address=dashboard)
    # One thread per worker process: Dask sets OMP_NUM_THREADS=1 in each, so n workers use n
    # cores without oversubscribing them.
    return LocalCluster(n_workers=workers or CPU_COUNT, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=dashboard)


def load_model(client: Client, config: BulkConfig, device: str = "auto") -> str:
    """Load the job's model version on every worker (once per worker and version); returns
    the plugin's name. Other versions loaded by earlier jobs are unloaded."""
    name = f"{PLUGIN_PREFIX}{config.model.name}-v{config.model.version}-{device}"
    loaded = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    for old in loaded:
        if old.startswith(PLUGIN_PREFIX) and old != name:
            client.unregister_worker_plugin(old)
    client.register_plugin(ModelPlugin(config.model.uri, device), name=name)
    return name


def _translate(config: BulkConfig, partition: Partition, plugin: str) -> PartitionResult:
    worker = get_worker()
    model = worker.plugins[plugin].model
    return replace(translate_partition(config, partition, model), worker=worker.address)


def run_partitions(
    client: Client, plan: BulkPlan, plugin: str, retries: int = 2,
    on_result: Callable[[PartitionResult, int, int], None] | None = None,
) -> list[PartitionResult]:
    """Every partition of `plan` as a task on the cluster (`plugin`: from `load_model`); stops
    at the first partition that still fails after its retries."""
    run = uuid.uuid4().hex[:8]
    futures = [client.submit(_translate, plan.config, p, plugin, retries=retries, pure=False,
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
