"""Finishing a bulk translation job: the rejected list, the contact sheet, then the manifest."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from stargan_core.bulk.partition import SCHEMA, PartitionResult
from stargan_core.bulk.plan import FORMAT_VERSION, BulkPlan, Partition, read_inputs
from stargan_core.evaluation.verdicts import NOT_TAKEN_BELOW
from stargan_core.grids import photo_grid
from stargan_core.io.images import RejectedImage, decode_rgb, encode
from stargan_core.io.parquet import read_footer, table_bytes
from stargan_core.sharded import MANIFEST, REJECTED, committed, publish, shard_entry

CONTACT_SHEET = "contact-sheet.png"
DOUBTFUL = "doubtful.parquet"  # the outputs under min_confidence: their rows, without images
VERDICT_COLUMNS = ["image_id", "source", "target", "image", "target_probability",
                   "kept_probability", "confidence", "changed_share", "doubtful"]
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
    keep = {MANIFEST, REJECTED, CONTACT_SHEET, DOUBTFUL} | {r.path for r in results}
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
    judged = _judged(plan)
    doubtful = judged.filter(pc.field("doubtful")).drop_columns(["doubtful"])
    manifest = config.identity() | {
        "strength": config.strength,
        "verdicts": {"judge": model.judged, "min_confidence": config.min_confidence,
                     "not_taken_below": NOT_TAKEN_BELOW,
                     "doubtful": {"count": doubtful.num_rows, "path": DOUBTFUL},
                     "by_target": _by_target(judged)},
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
                   files={CONTACT_SHEET: contact_sheet(plan, sample_rows),
                          DOUBTFUL: table_bytes(doubtful)},
                   stale=lambda name: name not in keep and (
                       config.overwrite or bool(SHARD_NAME.match(name)) or ".tmp-" in name))


def _judged(plan: BulkPlan) -> pa.Table:
    """Every output's verdict and image path, from the published shards."""
    out = plan.config.out
    tables = [pq.read_table(out.join(p.path), columns=VERDICT_COLUMNS, filesystem=out.fs)
              for p in plan.partitions]
    table = (pa.concat_tables(tables) if tables else pa.Table.from_pylist([], SCHEMA)).flatten()
    table = table.select([c if c != "image" else "image.path" for c in VERDICT_COLUMNS])
    return table.rename_columns([c if c != "image" else "path" for c in VERDICT_COLUMNS])


def _by_target(judged: pa.Table) -> dict[str, dict[str, Any]]:
    """Per target: outputs, how many the judge finds did not take (confidence under
    `NOT_TAKEN_BELOW`), how many are doubtful, the mean confidence and changed share."""
    found = {}
    for target in dict.fromkeys(judged.column("target").to_pylist()):
        rows = judged.filter(pc.equal(judged.column("target"), target))
        confidence = rows.column("confidence")
        found[target] = {
            "outputs": rows.num_rows,
            "not_taken": pc.sum(pc.less(confidence, NOT_TAKEN_BELOW)).as_py() or 0,
            "doubtful": pc.sum(rows.column("doubtful")).as_py() or 0,
            "mean_confidence": pc.mean(confidence).as_py(),
            "mean_changed_share": pc.mean(rows.column("changed_share")).as_py()}
    return found


def _sample(plan: BulkPlan, partition: Partition, count: int
            ) -> list[tuple[list[torch.Tensor], list[bool]]]:
    """Contact-sheet rows (the input photo, then each target's output) for a partition's first
    `count` inputs, read back from the published shard and files, with per output whether
    its edit did not take or is doubtful."""
    config, out = plan.config, plan.config.out
    shard = out.join(partition.path)
    ids = pq.read_table(shard, columns=["image_id"], filesystem=out.fs).column("image_id")
    wanted = list(dict.fromkeys(ids.to_pylist()))[:count]  # in input order
    if not wanted:
        return []
    table = pq.read_table(shard, columns=["image", "image_id", "target", "confidence",
                                          "doubtful"], filesystem=out.fs,
                          filters=[("image_id", "in", wanted)])
    outputs = {(r["image_id"], r["target"]): r for r in table.to_pylist()}
    rows: list[tuple[list[torch.Tensor], list[bool]]] = []
    try:
        for image_id, _, data in read_inputs(partition, config.batch_size, config.source):
            if image_id in wanted:
                row, flags = [decode_rgb(data)], [False]
                for target in config.targets:
                    found = outputs[image_id, target.text]
                    image = found["image"]
                    row.append(decode_rgb(image["bytes"] or
                                            out.fs.cat_file(out.join(image["path"]))))
                    confidence = found["confidence"]
                    flags.append(found["doubtful"] or (confidence is not None
                                                       and confidence < NOT_TAKEN_BELOW))
                rows.append((row, flags))
                if image_id == wanted[-1]:
                    break
    except (RejectedImage, FileNotFoundError):
        pass  # an input changed or moved since it was translated: the sheet shows what it has
    return rows


def contact_sheet(plan: BulkPlan, rows: int = 8) -> bytes:
    """A PNG grid of the job's first `rows` translated inputs: each whole input photo, then one
    column per target, read back from the published shards and files; outputs whose edit
    the judge finds did not take, or that are doubtful, framed in red."""
    targets = [t.text for t in plan.config.targets]
    found: list[tuple[list[torch.Tensor], list[bool]]] = []
    for partition in plan.partitions:
        if len(found) >= rows:
            break
        found += _sample(plan, partition, rows - len(found))
    if not found:  # nothing could be translated: a sheet that says so
        found, targets = [([torch.full((3, 64, 64), 255, dtype=torch.uint8)], [False])], []
    flagged = [(r, c) for r, (_, flags) in enumerate(found) for c, f in enumerate(flags) if f]
    return encode(photo_grid([row for row, _ in found], ["input", *targets], flagged=flagged),
                  ".png")
