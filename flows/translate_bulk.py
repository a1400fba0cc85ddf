"""translate-bulk: an image collection -> every target domain, on a Dask cluster.

    resolve the model (an alias -> one version) -> plan partitions -> translate them on Dask
    (one model per worker, one task per partition) -> finish (rejected list, contact sheet,
    then the manifest, the commit marker)

The work itself is `stargan_core.bulk` (its Dask side: `bulk.cluster`); this flow adds checks that
fail before any work, progress in the Prefect UI, the contact sheet and a summary table.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Annotated, Any, Literal

from PIL import Image
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.common import artifact_key, storage_options, warn_local_paths
from stargan_core.bulk import (
    BulkConfig,
    BulkPlan,
    PartitionResult,
    committed_job,
    default_job,
    finish_job,
    job_url,
    parse_targets,
    plan_job,
)
from stargan_core.bulk.cluster import (
    connect,
    load_model,
    local_workers,
    run_partitions,
    worker_threads,
)
from stargan_core.bulk.job import CONTACT_SHEET
from stargan_core.bulk.plan import (
    BatchSize,
    Confidence,
    FileFormat,
    Framing,
    OutputFormat,
    OutputSize,
    Quality,
    Strength,
)
from stargan_core.lease import release
from stargan_core.registry import RegisteredModel, resolve_model
from stargan_core.storage import StorageAccess, Url, default_root, join
from stargan_core.threads import usable_cores

PARTITION_RETRIES = 2


@task(name="resolve-model", cache_policy=NO_CACHE)
def resolve_model_task(model_uri: str) -> RegisteredModel:
    return resolve_model(model_uri)


@task(name="plan-partitions", cache_policy=NO_CACHE)
def plan_task(config: BulkConfig) -> BulkPlan:
    return plan_job(config)


@task(name="translate-partitions", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def translate_task(plan: BulkPlan, cluster_address: str, workers: int | None, device: str
                   ) -> tuple[list[PartitionResult], float]:
    """Every partition on the cluster (complete ones are found and skipped), with a progress
    artifact; returns the results and the seconds it took."""
    logger = get_run_logger()
    warn_local_paths(cluster_address, plan.config.input_url, plan.config.output)
    total = len(plan.partitions)
    progress = create_progress_artifact(0.0, description=f"partitions done: 0 of {total}")

    def report(result: PartitionResult, done: int, total: int) -> None:
        update_progress_artifact(progress, 100.0 * done / total,
                                 description=f"partitions done: {done} of {total}")
        if result.written:
            logger.info("%s: %d translations in %.1f s on %s (%d of %d done)", result.path,
                        result.rows, result.seconds, result.worker, done, total)

    with connect(cluster_address, workers, device, logger) as client:
        logger.info("Dask scheduler %s with %d workers", client.scheduler.address,
                    len(client.scheduler_info()["workers"]))
        logger.info("torch threads: %s", worker_threads(client))
        logger.info("loading %s on every worker", plan.config.model.uri)
        model = load_model(client, plan.config, device)
        start = time.perf_counter()  # translation alone: without starting or loading workers
        results = run_partitions(client, plan, model, PARTITION_RETRIES, report)
        return results, time.perf_counter() - start


@task(name="write-manifest", cache_policy=NO_CACHE)
def finish_task(plan: BulkPlan, results: list[PartitionResult], sample_rows: int
                ) -> dict[str, Any]:
    return finish_job(plan, results, sample_rows)


def summary_table(manifest: dict[str, Any], results: list[PartitionResult], seconds: float
                  ) -> list[dict[str, Any]]:
    written = [r for r in results if r.written]
    translations = sum(r.rows for r in written)
    rows = [
        ("inputs", manifest["inputs"]),
        ("translated inputs", manifest["inputs"] - manifest["rejected"]["count"]),
        ("rejected inputs", manifest["rejected"]["count"]),
        ("targets", len(manifest["targets"])),
        ("translations in the job", manifest["rows"]),
        ("partitions", len(manifest["shards"])),
        ("partitions written by this run", len(written)),
        ("partitions found complete", len(manifest["shards"]) - len(written)),
        ("translations written by this run", translations),
        ("seconds", round(seconds, 1)),
        ("translations per second", round(translations / seconds, 1) if seconds else 0),
    ]
    rows += [(f"translations on {worker}", sum(r.rows for r in written if r.worker == worker))
             for worker in sorted({r.worker for r in written})]
    judged = manifest["verdicts"]
    rows.append(("doubtful translations (doubtful.parquet)", judged["doubtful"]["count"]))
    for target, found in judged["by_target"].items():
        if found["mean_confidence"] is None:
            rows.append((f"{target}: pixels changed (no judge)",
                         f"{found['mean_changed_share']:.1%}"))
            continue
        rows.append((f"{target}: edit did not take / doubtful / mean confidence / pixels "
                     "changed", f"{found['not_taken']} / {found['doubtful']} / "
                     f"{found['mean_confidence']:.2f} / {found['mean_changed_share']:.1%}"))
    return [{"measure": name, "value": value} for name, value in rows]


def preview(png: bytes, width: int = 1024) -> str:
    """A contact sheet as a data URL (JPEG, at most `width` pixels wide) that the Prefect UI
    shows as it is: no link to storage, no credentials."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


@flow(name="translate-bulk", log_prints=True)
def translate_bulk(
    input_url: Url,
    model_uri: Url = "models:/stargan-celeba@champion",
    targets: list[str] | None = None,
    output_root: Url | None = None,
    job: str | None = None,
    output_format: OutputFormat = "parquet",
    output_size: OutputSize = "input",
    framing: Framing = "auto",
    file_format: FileFormat = "auto",
    quality: Quality = 95,
    strength: Strength = 1.0,
    min_confidence: Confidence = 0.0,
    cluster_address: Url = "",
    workers: Annotated[int, Field(ge=1, le=1024)] | None = None,
    batch_size: BatchSize = 32,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    files_per_partition: Annotated[int, Field(ge=1)] = 1000,
    contact_sheet_rows: Annotated[int, Field(ge=1, le=64)] = 8,
    storage: StorageAccess | None = None,
    overwrite: bool = False,
    split: str | None = None,
) -> dict[str, Any]:
    """Translate every image of `input_url` into every target with one registered model version,
    writing `<output_root>/translations/<job>/<model>-v<version>/`.

    input_url: a prepared data set (its folder or manifest.json) or a folder / s3:// prefix of
        image files (JPEG, PNG, WebP, BMP, GIF, TIFF).
    model_uri: models:/<name>@<alias> or models:/<name>/<version>; an alias is resolved once and
        the version is recorded in every output row and in the manifest.
    targets: e.g. ["Blond_Hair", "Male=0", "Blond_Hair,Young=0"]; default: every single-domain
        target of the model.
    output_root: the storage root (default: $STARGAN_STORAGE_URL, else ./stargan-storage).
    job: the job's name (default: the data set's name and version, or the folder's name).
    output_format: parquet shards, image files `<target>/<input name>`, or both.
    output_size: each input at its own size with the edit carried back into it (input), or
        the model's square crop (model).
    framing: where the model looks in each photo of a folder: every face found, aligned as
        CelebA's faces are and blended back (face; a photo without one is listed as rejected,
        `no face`), the centre of an aligned face (celeba), the centre square (center), the
        whole photo (full) or as the model's training images (model). auto: a model trained on
        aligned faces frames photos of their 178:218 shape as celeba, any other as face;
        other models as they were trained. A prepared data set's squares are always framed
        as they are.
    file_format, quality: the image files' type (auto: each input's own; png, jpeg, webp: an
        input of another type gets that suffix added, `photo.png.jpg`) and JPEG/WebP quality
        (JPEG with 4:4:4 chroma; WebP at 100: lossless).
    cluster_address: a Dask scheduler; empty: $DASK_SCHEDULER_ADDRESS when set, else a local
        cluster of `workers` processes (one per core), or one worker per GPU when GPUs are
        present (the first `workers` GPUs; more workers than GPUs is an error).
    files_per_partition: inputs per task for a folder of files (a prepared set: one per shard).
    storage: how to reach S3, by reference: {"endpoint_url": ...}, {"profile": <AWS profile>}
        or {"credentials_block": <StarGAN S3 Credentials block>}; default: the worker's environment.
    strength: how strong each edit is: 0 nothing, 1 as trained, up to 2 (for versions trained
        with label differences: edit-32, edit-128); part of the job, whose default name
        gains `-strength-<s>` when it is not 1.
    min_confidence: every output carries a verdict (the version's judge's probability that
        the target was reached and that every other domain was kept, their product
        `confidence`, and the share of pixels changed); outputs under this confidence are
        listed apart in doubtful.parquet, flagged `doubtful` in their rows, and their files go
        to doubtful/<target>/. Needs a version registered with a judge; 0 lists none.
    overwrite: replace a job of other inputs, targets or format in the same folder.
    split: of a prepared data set, translate this split only (e.g. test).
    """
    logger = get_run_logger()
    if not cluster_address:  # a local cluster that cannot be placed fails before any work
        local_workers(workers, device, usable_cores())
    model = resolve_model_task(model_uri)
    logger.info("%s is %s (run %s)", model_uri, model.uri, model.run_id)
    job = job or default_job(input_url) + (f"-strength-{strength:g}" if strength != 1 else "")
    config = BulkConfig(
        input_url, job_url(output_root or default_root(), job, model),
        model, parse_targets(model, targets), output_format, batch_size, files_per_partition,
        storage_options=storage_options(storage), overwrite=overwrite, split=split,
        output_size=output_size, framing=framing, file_format=file_format, quality=quality,
        strength=strength, min_confidence=min_confidence,
    )
    work = plan_task(config)
    manifest = committed_job(work)
    results: list[PartitionResult] = []
    seconds = 0.0
    if manifest is not None:
        logger.info("%s is complete and up to date: nothing to write", config.output)
    else:
        try:
            results, seconds = translate_task(work, cluster_address, workers, device)
        except BaseException:
            release(config.out)  # the folder is free for the next run, which resumes it
            raise
        manifest = finish_task(work, results, contact_sheet_rows)
    key = artifact_key(f"{job}-{model.name}-v{model.version}")
    create_image_artifact(
        preview(config.out.fs.cat_file(config.out.join(CONTACT_SHEET))), key=f"contact-sheet-{key}",
        description=f"inputs x targets, first {contact_sheet_rows} inputs; full size: "
        f"{join(config.output, CONTACT_SHEET)}")
    create_table_artifact(
        summary_table(manifest, results, seconds), key=f"translations-{key}",
        description=f"{config.output}: {manifest['rows']} translations by {model.uri}")
    logger.info("%d translations of %d inputs into %d targets in %s (%d rejected)",
                manifest["rows"], manifest["inputs"], len(manifest["targets"]), config.output,
                manifest["rejected"]["count"])
    return manifest | {"output": config.output}
