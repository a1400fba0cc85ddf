"""Finishing a bulk translation job: the rejected list, the contact sheet, then the manifest."""

from __future__ import annotations

import re
from typing import Any

import pyarrow.parquet as pq
import torch

from stargan_core.bulk.partition import PartitionResult
from stargan_core.bulk.plan import FORMAT_VERSION, BulkPlan, Partition, read_inputs
from stargan_core.grids import photo_grid
from stargan_core.io.images import RejectedImage, decode_rgb, encode
from stargan_core.io.parquet import read_footer
from stargan_core.sharded import MANIFEST, REJECTED, committed, publish, shard_entry

CONTACT_SHEET = "contact-sheet.png"
SHARD_NAME = re.compile(r"^part-\d{5}\.parquet$")


class JobClash(ValueError):
    """The job's folder holds a finished job of other inputs, targets or output format."""


def committed_job(plan: BulkPlan) -> dict[str, Any] | None:
    """The manifest when this exact job is complete, else None (and the folder's lease is this
    run's until `finish_job`; a job that another run is writing now is an error).

    A finished job of the same inputs, targets and format whose inputs have changed since is
    unmarked first (its folder is about to change); one of other inputs, targets or format
    is an error unless the configuration says to overwrite it.
    """
    config = plan.config

    def replaceable(found: dict[str, Any]) -> bool:
        same = {k: found.get(k) for k in config.identity()} == config.identity()
        return same or config.overwrite

    def clash(found: dict[str, Any]) -> JobClash:
        return JobClash(
            f"{config.output} holds translations of {found['input']} into "
            f"{', '.join(found['targets'])} ({found['output_format']}): choose another job "
            "name (job=...), or replace it on purpose (overwrite=True)")

    return committed(config.out, plan.fingerprint, replaceable=replaceable, clash=clash,
                     about=f"translating {config.input_url} into "
                           f"{', '.join(t.text for t in config.targets)} with "
                           f"{config.model.uri} ({config.output_format})",
                     hint="choose another job name (job=...)")


def _keep(plan: BulkPlan, results: list[PartitionResult]) -> set[str]:
    """What the finished job's folder holds; with overwrite, its image files too."""
    config = plan.config
    keep = {MANIFEST, REJECTED, CONTACT_SHEET} | {r.path for r in results}
    if config.overwrite and config.writes_files:
        for result in results:
            with config.out.fs.open(config.out.join(result.path), "rb") as f:
                paths = pq.ParquetFile(f).read(columns=["image.path"]).column("image").to_pylist()
            keep.update(image["path"] for image in paths)
    return keep


def finish_job(plan: BulkPlan, results: list[PartitionResult], sample_rows: int = 8
               ) -> dict[str, Any]:
    """Check every shard is this job's, remove what the job no longer has, then write the
    rejected list, the contact sheet and last the manifest; returns the manifest."""
    config = plan.config
    results = sorted(results, key=lambda r: r.path)
    for partition in plan.partitions:  # another run in this folder may have replaced one
        record = read_footer(config.out.fs, config.out.join(partition.path)) or {}
        if record.get("fingerprint") != partition.fingerprint:
            raise RuntimeError(f"{partition.path} in {config.output} is not this job's: did "
                               "another run write to the same folder? Run the job again")
    keep = _keep(plan, results)
    rejected = plan.rejected + [r for result in results for r in result.rejected]
    model = config.model
    manifest = config.identity() | {
        "strength": config.strength,
        "format_version": FORMAT_VERSION,
        "model": {"name": model.name, "version": model.version, "uri": model.uri,
                  "requested": model.requested, "run_id": model.run_id},
        "image": {"model_size": model.image_size, "output_size": config.output_size,
                  "encoding": "the input's file type"},
        "contact_sheet": CONTACT_SHEET,
    }
    # Shards of partitions the job no longer has and files left by killed writers; with
    # overwrite, anything else too.
    return publish(config.out, about=manifest, inputs=plan.inputs, rejected=rejected,
                   shards=[shard_entry(r, inputs=r.inputs) for r in results],
                   fingerprint=plan.fingerprint,
                   files={CONTACT_SHEET: contact_sheet(plan, sample_rows)},
                   stale=lambda name: name not in keep and (
                       config.overwrite or bool(SHARD_NAME.match(name)) or ".tmp-" in name))


def _sample(plan: BulkPlan, partition: Partition, count: int) -> list[list[torch.Tensor]]:
    """Contact-sheet rows (the input photo, then each target's output) for a partition's first
    `count` inputs, read back from the published shard and files."""
    config, out = plan.config, plan.config.out
    shard = out.join(partition.path)
    ids = pq.read_table(shard, columns=["image_id"], filesystem=out.fs).column("image_id")
    wanted = list(dict.fromkeys(ids.to_pylist()))[:count]  # in input order
    if not wanted:
        return []
    table = pq.read_table(shard, columns=["image", "image_id", "target"], filesystem=out.fs,
                          filters=[("image_id", "in", wanted)])
    outputs = {(r["image_id"], r["target"]): r["image"] for r in table.to_pylist()}
    rows: list[list[torch.Tensor]] = []
    try:
        for image_id, _, data in read_inputs(partition, config.batch_size, config.source):
            if image_id in wanted:
                row = [decode_rgb(data)]
                for target in config.targets:
                    image = outputs[image_id, target.text]
                    row.append(decode_rgb(image["bytes"] or
                                            out.fs.cat_file(out.join(image["path"]))))
                rows.append(row)
                if image_id == wanted[-1]:
                    break
    except (RejectedImage, FileNotFoundError):
        pass  # an input changed or moved since it was translated: the sheet shows what it has
    return rows


def contact_sheet(plan: BulkPlan, rows: int = 8) -> bytes:
    """A PNG grid of the job's first `rows` translated inputs: each whole input photo, then one
    column per target, read back from the published shards and files."""
    targets = [t.text for t in plan.config.targets]
    found: list[list[torch.Tensor]] = []
    for partition in plan.partitions:
        if len(found) >= rows:
            break
        found += _sample(plan, partition, rows - len(found))
    if not found:  # nothing could be translated: a sheet that says so
        found, targets = [[torch.full((3, 64, 64), 255, dtype=torch.uint8)]], []
    return encode(photo_grid(found, ["input", *targets]), ".png")
