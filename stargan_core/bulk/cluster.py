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
from distributed import (
    Client,
    LocalCluster,
    Nanny,
    Scheduler,
    SpecCluster,
    WorkerPlugin,
    as_completed,
    get_worker,
)

from stargan_core.bulk.partition import PartitionResult, translate_partition
from stargan_core.bulk.plan import BulkConfig, BulkPlan, Partition, input_framing
from stargan_core.devices import visible_gpus
from stargan_core.serving import StarGANModel, load_registered
from stargan_core.threads import Cores, usable_cores

PLUGIN = "stargan-models"
THREADS_PLUGIN = "stargan-torch-threads"
MODELS_PER_WORKER = 2  # loaded versions a worker keeps when no task uses them
HOST = "127.0.0.1"  # a local cluster listens on this machine only
LOG = logging.getLogger(__name__)


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
    """Each worker of a local cluster computes with `threads` (a CPU worker: its share of the
    cores; a GPU worker: one per task thread), chosen before the workers start (a worker
    sampling the cores would see its siblings starting)."""

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


def gpu_ids(count: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entry of each of the first `count` GPUs this process sees: the
    entries of its own CUDA_VISIBLE_DEVICES (indices or UUIDs) when it is set, else 0, 1, ..."""
    visible = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    visible = [e for e in visible if e]
    return (visible or [str(i) for i in range(count)])[:count]


@dataclass(frozen=True)
class LocalWorkers:
    """The workers of a local cluster: `count` workers, one per entry of `gpus` (the
    CUDA_VISIBLE_DEVICES of each) or on the CPU, each running `threads` tasks at once and
    computing with `torch_threads` (unless OMP_NUM_THREADS says); `cores`: the cores shared."""

    count: int
    threads: int
    torch_threads: int
    gpus: tuple[str, ...] = ()
    cores: str = ""

    def __str__(self) -> str:
        kind = "GPU" if self.gpus else "CPU"
        on = f" ({', '.join(f'GPU {g}' for g in self.gpus)})" if self.gpus else ""
        return (f"local Dask cluster: {self.count} {kind} worker{'s' if self.count > 1 else ''}"
                f"{on}, {self.threads} thread{'s' if self.threads > 1 else ''} each "
                f"({self.cores})")


def local_workers(workers: int | None, device: str, cores: Cores) -> LocalWorkers:
    """The workers a local cluster gets: one per GPU (the first `workers` GPUs) when GPUs are
    present and `device` is not cpu, else `workers` CPU workers (default: one per usable
    core). What cannot be is a ValueError, raised before anything starts."""
    if device.startswith("cuda:"):
        raise ValueError(
            f"device '{device}' names one GPU, but each worker of a local cluster sees only "
            "its own GPU: use device='cuda' or 'auto' with workers=1, and choose the GPU with "
            f"CUDA_VISIBLE_DEVICES={device.removeprefix('cuda:')}")
    available = visible_gpus() if device != "cpu" else 0
    if device == "cuda" and not available:
        raise ValueError("device 'cuda' was asked for, but there is no GPU here: use 'auto' "
                         "or 'cpu', or the address of a cluster of GPU workers")
    if not available:
        count = workers or cores.usable
        return LocalWorkers(count, 1, max(1, cores.usable // count), cores=str(cores))
    if workers is not None and workers > available:
        raise ValueError(
            f"{workers} workers were asked for on {available} GPU{'s' if available > 1 else ''}"
            f", one worker per GPU: give workers <= {available}, or device='cpu' for "
            f"{workers} CPU workers")
    ids = gpu_ids(workers or available)
    # A GPU worker runs as many partitions at once as its share of the cores, each with one
    # torch thread. Its GPU does only the networks' forward: 1.4 GFLOP for D and 19.9 per
    # target for G at 128 px, 141 GFLOP for an input's 7 single-domain targets, 1.4 ms at a
    # conservative 100 TFLOP/s on an H100 (a tenth of its bf16 peak; the forward runs in fp32,
    # with TF32 in cuDNN's convolutions). The rest of a partition's work is on the CPU, per
    # input on one core: 15 ms for a 178x218 aligned face (decode, cut, paste-back, encode),
    # 160 ms for a 512 px photo and 590 ms for a 1536 px one with face framing (face detection
    # 120 and 320 ms of it). So the GPU waits for the CPU whatever the threads: a thread per
    # core keeps every core busy, and torch threads beyond one per thread would only fight
    # over the same cores. As many partitions are in flight (and as much memory) as on a CPU
    # cluster of the same cores.
    share = max(1, cores.usable // len(ids))
    return LocalWorkers(len(ids), share, 1, tuple(ids), str(cores))


@contextmanager
def connect(address: str = "", workers: int | None = None, device: str = "auto",
            log: logging.Logger | logging.LoggerAdapter | None = None) -> Iterator[Client]:
    """A client of the scheduler at `address` (or $DASK_SCHEDULER_ADDRESS), or of a cluster
    started here and stopped at the end, which `log` (default: this module's) describes: one
    worker per GPU when GPUs are present (see `local_workers`), else a LocalCluster of
    `workers` processes (default: one per usable core), each with torch threads for its share
    of the cores (a remote cluster's workers: as started)."""
    address = address or dask.config.get("scheduler-address", None)  # $DASK_SCHEDULER_ADDRESS
    if address:
        with Client(address) as client:
            yield client
        return
    plan = local_workers(workers, device, usable_cores())
    # The local cluster's scheduler runs in this process: keep its chatter out of the log.
    chatter = logging.getLogger("distributed")
    level = chatter.level
    chatter.setLevel(max(level, logging.WARNING))
    try:
        # Dask starts each worker with OMP_NUM_THREADS=1: left out, TorchThreads decides (a
        # user's OMP_NUM_THREADS, which the workers inherit, is kept).
        with dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": None}):
            cluster = _local_cluster(plan)
        (log or LOG).info("%s", plan)
        with cluster, Client(cluster) as client:
            client.register_plugin(TorchThreads(plan.torch_threads), name=THREADS_PLUGIN)
            yield client
    finally:
        chatter.setLevel(level)


def _local_cluster(plan: LocalWorkers) -> SpecCluster:
    dashboard = ":0" if importlib.util.find_spec("bokeh") else None
    if not plan.gpus:
        # One task at a time per worker process: its torch threads are the parallelism.
        return LocalCluster(n_workers=plan.count, threads_per_worker=plan.threads,
                            processes=True, host=HOST, dashboard_address=dashboard)
    # One worker process per GPU, which it sees alone (as cuda:0), named after it; the Nanny
    # sets CUDA_VISIBLE_DEVICES in the worker's process before anything there touches CUDA.
    scheduler = {"cls": Scheduler, "options": {
        "host": HOST, "port": 0, "protocol": "tcp://", "dashboard": dashboard is not None,
        "dashboard_address": dashboard}}
    workers = {f"gpu-{gpu}" if gpu.isdigit() else gpu: {"cls": Nanny, "options": {
        "host": HOST, "nthreads": plan.threads, "env": {"CUDA_VISIBLE_DEVICES": gpu},
        "memory_limit": 1 / plan.count, "silence_logs": logging.WARNING}}
        for gpu in plan.gpus}
    return SpecCluster(workers, scheduler, silence_logs=logging.WARNING)


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
        editor = model.framed(input_framing(config, partition))  # made once per framing
        return replace(translate_partition(config, partition, editor, model.judge),
                       worker=worker.address)


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
