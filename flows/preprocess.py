"""preprocess-dataset: a raw CelebA / RaFD / ImageFolder data set -> Parquet shards + manifest.

    plan (list the source) -> write shards (one task each, in parallel) -> finish (rejected
    list, then the manifest, the commit marker)

The work itself is `stargan_core.data.prepare`; this flow adds parallel tasks with retries,
progress in the Prefect UI and a summary table.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped
from pydantic import Field

from flows.common import artifact_key, storage_options, warn_local_paths
from stargan_core.data.prepare import (
    Plan,
    PrepareConfig,
    ShardResult,
    committed_version,
    dataset_url,
    finish_version,
    plan,
    write_shard,
)
from stargan_core.io.images import ImageRule
from stargan_core.lease import release
from stargan_core.storage import StorageAccess, Url, default_root
from stargan_core.threads import set_torch_threads


@task(name="plan-shards", cache_policy=NO_CACHE)
def plan_task(config: PrepareConfig) -> Plan:
    return plan(config)


@task(name="write-shard", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE,
      task_run_name="write-shard {task.path}")
def write_shard_task(config: PrepareConfig, label_schema: Any, task: Any) -> ShardResult:
    return write_shard(config, label_schema, task)


@task(name="write-manifest", cache_policy=NO_CACHE)
def finish_task(work: Plan, results: list[ShardResult]) -> dict[str, Any]:
    return finish_version(work, results)


def summary_table(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"split": split, "images": info["rows"],
             "shards": sum(1 for s in manifest["shards"] if s["split"] == split),
             "bytes": sum(s["bytes"] for s in manifest["shards"] if s["split"] == split)}
            for split, info in manifest["splits"].items()]
    rows += [{"split": f"rejected: {reason}", "images": n, "shards": 0, "bytes": 0}
             for reason, n in manifest["rejected"]["by_reason"].items()]
    return rows


@flow(name="preprocess-dataset", log_prints=True)
def preprocess_dataset(
    source_url: Url,
    format: Literal["auto", "celeba", "rafd", "imagefolder"] = "auto",
    output_root: Url | None = None,
    name: str | None = None,
    version: str = "v1",
    image_size: Annotated[int, Field(ge=16, le=2048)] = 256,
    encoding: Literal["jpeg", "png"] = "jpeg",
    quality: Annotated[int, Field(ge=1, le=100)] = 95,
    max_upscale: Annotated[float, Field(ge=1.0)] = 2.0,
    rows_per_shard: Annotated[int, Field(ge=1)] = 8000,
    row_group_size: Annotated[int, Field(ge=1)] = 2000,
    storage: StorageAccess | None = None,
    workers: Annotated[int, Field(ge=1, le=256)] = 4,
    cluster_address: Url = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Prepare a data set as Parquet shards and a manifest under
    `<output_root>/datasets/<name>/<version>/`.

    source_url: the raw data set, a folder or an s3:// prefix (CelebA, RaFD or <domain>/ folders).
    output_root: the storage root (default: $STARGAN_STORAGE_URL, else ./stargan-storage).
    name: the data set's name (default: the source folder's name).
    storage: how to reach S3, by reference: {"endpoint_url": ...} (default
        $AWS_ENDPOINT_URL), {"profile": <AWS profile>} or {"credentials_block": <StarGAN S3
        Credentials block>}; without it, the worker's environment (AWS_ACCESS_KEY_ID, ..., a role).
    workers: parallel shard tasks on this machine (threads); cluster_address: a Dask
        scheduler to run them on instead.
    overwrite: replace a version prepared from other inputs or with other parameters.
    """
    logger = get_run_logger()
    name = name or source_url.rstrip("/").rsplit("/", 1)[-1]
    output = dataset_url(output_root or default_root(), name, version)
    config = PrepareConfig(
        source_url, output, format, ImageRule(image_size, encoding, quality, max_upscale),
        rows_per_shard, row_group_size, storage_options(storage), overwrite,
    )
    work = plan_task(config)
    manifest = committed_version(work)
    if manifest is not None:
        logger.info("%s is complete and up to date: nothing to write", output)
    else:
        try:
            results = _write_shards(work, workers, cluster_address)
        except BaseException:
            release(config.out)  # the version is free for the next run, which resumes it
            raise
        written = sum(r.written for r in results)
        logger.info("wrote %d shards, %d were already complete", written,
                    len(results) - written)
        manifest = finish_task(work, results)
    create_table_artifact(
        summary_table(manifest), key=f"dataset-{artifact_key(name)}",
        description=f"{output}: {manifest['rows']} images of {manifest['inputs']} inputs, "
        f"{manifest['rejected']['count']} rejected (see {manifest['rejected']['path']})",
    )
    return manifest


def _write_shards(work: Plan, workers: int, cluster_address: str) -> list[ShardResult]:
    """Every shard task on threads here or on a Dask cluster, with a progress artifact."""
    if cluster_address:
        from prefect_dask import DaskTaskRunner

        warn_local_paths(cluster_address, work.config.source, work.config.output)
        runner = DaskTaskRunner(address=cluster_address)
    else:
        # Decoding, resizing and encoding run in Pillow's C code, which releases the GIL;
        # torch's framing in each shard thread gets that thread's share of the cores.
        get_run_logger().info(set_torch_threads(workers))
        runner = ThreadPoolTaskRunner(max_workers=workers)
    total = len(work.tasks)
    progress = create_progress_artifact(0.0, description=f"shards written: 0 of {total}")
    results = []
    with runner:
        futures = runner.map(write_shard_task, {"config": unmapped(work.config),
                                                "label_schema": unmapped(work.label_schema),
                                                "task": work.tasks})
        for future in as_completed(list(futures)):
            results.append(future.result())
            update_progress_artifact(progress, 100.0 * len(results) / total,
                                     description=f"shards written: {len(results)} of {total}")
    return results
