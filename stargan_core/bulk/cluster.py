"""Bulk translation on a Dask cluster: each worker keeps the model versions its jobs use
(a worker plugin shared by every job), and each partition is one task with retries.

Plain Dask rather than Prefect's DaskTaskRunner: the model must live in the workers between
tasks (the plugin), and a partition whose worker dies must simply run again elsewhere, which
the scheduler does by itself. Its shard is written whole or not at all (see partition.py).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import dask.config
import mlflow
import torch
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from stargan_core.bulk.partition import PartitionResult, translate_partition
from stargan_core.bulk.plan import BulkConfig, BulkPlan, Partition
from stargan_core.serving import StarGANModel, load_registered
from stargan_core.threads import usable_cores

PLUGIN = "stargan-models"
THREADS_PLUGIN = "stargan-torch-threads"
MODELS_PER_WORKER = 2  # loaded versions a worker keeps when no task uses them


@dataclass(frozen=True)
class ModelSource:
    """A registered model version as a job's tasks ask their worker for it."""

    uri: str
    device: str
    # The stores of the process that submits the job, for workers started without
    # MLFLOW_TRACKING_URI.
    tracking_uri: str
    registry_uri: str


class ModelCache(WorkerPlugin):
    """The model versions loaded on one worker, shared by every job on the cluster: a version
    is loaded by the first task that needs it (or by `load_model`) and kept for the next
    ones; beyond `capacity`, the least recently used versions that no running task holds are
    dropped. Jobs with different versions run side by side; none unloads another's model."""

    idempotent = True  # every job registers it: the first one's stays, with what it loaded

    def __init__(self, capacity: int = MODELS_PER_WORKER) -> None:
        self.capacity = capacity

    def setup(self, worker: object) -> None:
        self.models: OrderedDict[ModelSource, StarGANModel] = OrderedDict()
        self.in_use: Counter[ModelSource] = Counter()
        self.lock = threading.Lock()

    @contextmanager
    def use(self, source: ModelSource) -> Iterator[StarGANModel]:
        """The version's model, loaded if need be and held until the block ends."""
        with self.lock:
            if source not in self.models:
                self.models[source] = load_registered(source.uri, source.device,
                                                      source.tracking_uri, source.registry_uri)
            self.models.move_to_end(source)
            self.in_use[source] += 1
            model = self.models[source]
            self._evict()
        try:
            yield model
        finally:
            with self.lock:
                self.in_use[source] -= 1
                self._evict()

    def _evict(self) -> None:
        idle = [s for s in self.models if not self.in_use[s]]  # least recently used first
        for source in idle[:max(0, len(self.models) - self.capacity)]:
            del self.models[source]


class TorchThreads(WorkerPlugin):
    """Each worker of a local cluster computes with `threads`, its share of the cores, chosen
    before the workers start (a worker sampling the cores would see its siblings starting)."""

    idempotent = True

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker: object) -> None:
        if not os.environ.get("OMP_NUM_THREADS"):  # the user's choice, inherited, is kept
            torch.set_num_threads(self.threads)


def worker_threads(client: Client) -> str:
    """torch's threads in the cluster's workers: `2 in 4 workers`."""
    counts = Counter(client.run(torch.get_num_threads).values())
    return ", ".join(f"{threads} in {n} worker{'s' if n > 1 else ''}"
                     for threads, n in sorted(counts.items()))


def gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextmanager
def connect(address: str = "", workers: int | None = None, device: str = "auto"
            ) -> Iterator[Client]:
    """A client of the scheduler at `address` (or $DASK_SCHEDULER_ADDRESS), or of a cluster
    started here and stopped at the end: a LocalCUDACluster (one worker per GPU) when GPUs are
    present, else a LocalCluster of `workers` processes (default: one per usable core), each
    with torch threads for its share of the cores (a remote cluster's workers: as started)."""
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
        # Dask starts each worker with OMP_NUM_THREADS=1: left out, TorchThreads decides (a
        # user's OMP_NUM_THREADS, which the workers inherit, is kept).
        cores = usable_cores()
        with dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": None}):
            cluster = _local_cluster(workers, device, cores.usable)
        with cluster, Client(cluster) as client:
            threads = max(1, cores.usable // len(cluster.workers))
            client.register_plugin(TorchThreads(threads), name=THREADS_PLUGIN)
            yield client
    finally:
        chatter.setLevel(level)


def _local_cluster(workers: int | None, device: str, cores: int) -> LocalCluster:
    dashboard = ":0" if importlib.util.find_spec("bokeh") else None
    if device != "cpu" and gpus():
        if not importlib.util.find_spec("dask_cuda"):
            raise RuntimeError("GPUs are present but dask-cuda is not installed: "
                               "pip install 'stargan-pipeline[gpu]', or use device='cpu'")
        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(n_workers=workers or gpus(), threads_per_worker=1,
                                dashboard_address=dashboard)
    # One task at a time per worker process: its torch threads are the parallelism.
    return LocalCluster(n_workers=workers or cores, threads_per_worker=1,
                        processes=True, host="127.0.0.1", dashboard_address=dashboard)


def load_model(client: Client, config: BulkConfig, device: str = "auto") -> ModelSource:
    """Load the job's model version on every worker now (a worker that joins later loads it
    with its first task); the versions of other jobs stay loaded."""
    source = ModelSource(config.model.uri, device, mlflow.get_tracking_uri(),
                         mlflow.get_registry_uri())
    client.register_plugin(ModelCache(), name=PLUGIN)

    def warm(dask_worker: object) -> None:
        with dask_worker.plugins[PLUGIN].use(source):  # type: ignore[attr-defined]
            pass

    client.run(warm)
    return source


def _translate(config: BulkConfig, partition: Partition, source: ModelSource
               ) -> PartitionResult:
    worker = get_worker()
    with worker.plugins[PLUGIN].use(source) as model:
        return replace(translate_partition(config, partition, model), worker=worker.address)


def run_partitions(
    client: Client, plan: BulkPlan, source: ModelSource, retries: int = 2,
    on_result: Callable[[PartitionResult, int, int], None] | None = None,
) -> list[PartitionResult]:
    """Every partition of `plan` as a task on the cluster (`source`: from `load_model`); stops
    at the first partition that still fails after its retries."""
    run = uuid.uuid4().hex[:8]
    futures = [client.submit(_translate, plan.config, p, source, retries=retries, pure=False,
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
