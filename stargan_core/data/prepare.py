"""Raw data set -> Parquet shards + manifest on object storage (docs/design.md, "Storage and
prepared data"): a sharded, exactly-once job (`stargan_core.sharded`). The plan cuts every
split into shard tasks of a fixed, ordered chunk of inputs; each task frames, resizes and
encodes its images (`preprocessing.prepare_image`) into one shard; the manifest, written last,
is the commit marker of a version.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import pyarrow as pa
import torch
from pydantic import PositiveInt
from pydantic.dataclasses import dataclass as checked_dataclass

from stargan_core.data.folders import FORMATS, read_dataset
from stargan_core.io.celeba import CROP
from stargan_core.io.images import ImageRule, RejectedImage
from stargan_core.io.parquet import ShardWriter, image_schema
from stargan_core.io.sample import DataFormatError, Sample
from stargan_core.lease import release
from stargan_core.preprocessing import Preprocessing, prepare_image
from stargan_core.sharded import (
    Rejection,
    ShardOutcome,
    committed,
    digest,
    finished_shard,
    publish,
    shard_entry,
)
from stargan_core.storage import Location, check_reachable, filesystem, is_local, join, url_of

SHARD_NAME = re.compile(r"^[^/]+/part-\d{5}\.parquet$")  # <split>/part-00000.parquet
RAFD_COLUMNS = {"expression": pa.string(), "identity": pa.int16(), "ethnicity": pa.string(),
                "gender": pa.string(), "gaze": pa.string(), "angle": pa.int16()}


@checked_dataclass(frozen=True)
class PrepareConfig:
    """What to prepare and how: source, destination, image rule and shard sizes; checked
    when made (a bad value names the field)."""

    source: str
    output: str  # the version's folder: <root>/datasets/<name>/<version>
    format: Literal[FORMATS] = "auto"
    rule: ImageRule = field(default_factory=ImageRule)
    rows_per_shard: PositiveInt = 8000
    row_group_size: PositiveInt = 2000
    storage_options: dict[str, Any] | None = None
    overwrite: bool = False

    @cached_property
    def out(self) -> Location:
        """The version's folder, resolved once."""
        return Location.of(self.output, self.storage_options)

    def parameters(self) -> dict[str, Any]:
        """Everything that decides the bytes written (storage options do not)."""
        return {"source": self.source, "format": self.format, "rule": asdict(self.rule),
                "rows_per_shard": self.rows_per_shard, "row_group_size": self.row_group_size}


def dataset_url(root: str, name: str, version: str) -> str:
    return join(root, "datasets", name, version)


@dataclass(frozen=True)
class ShardTask:
    """One shard to write: its split, its number and its ordered inputs."""

    split: str
    index: int
    inputs: tuple[Sample, ...]
    fingerprint: str

    @property
    def path(self) -> str:
        return f"{self.split}/part-{self.index:05d}.parquet"


@dataclass(frozen=True, kw_only=True)
class ShardResult(ShardOutcome):
    """What a task wrote (or found already written), with its split's label counts."""

    split: str
    label_counts: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Plan:
    config: PrepareConfig  # with the format detected
    label_schema: pa.Schema
    tasks: list[ShardTask]
    rejected: list[Rejection]  # non-image files found among the images
    fingerprint: str

    @property
    def inputs(self) -> int:
        return sum(len(t.inputs) for t in self.tasks) + len(self.rejected)


# Part of every fingerprint: bump it when a change to the code changes the bytes written, so
# that existing versions are recognised as out of date.
FORMAT_VERSION = 2  # 2: framed and resized as translation frames photos (was Lanczos)


def _label_schema(format: str, samples: list[Sample]) -> pa.Schema:
    if format == "celeba":  # all 40 attributes: the choice of domains is made when training
        return pa.schema([(name, pa.int8()) for name in samples[0].labels])
    if format == "rafd":
        return pa.schema(list(RAFD_COLUMNS.items()))
    return pa.schema([("domain", pa.string())])


def plan(config: PrepareConfig) -> Plan:
    """List the source and cut every split into shard tasks (fails at once on a missing or
    malformed source or unreachable storage)."""
    check_reachable(config.source, config.storage_options, must_exist=True)
    check_reachable(config.output, config.storage_options)
    fs, base = filesystem(config.source, config.storage_options)
    source = url_of(fs, base)  # absolute: image ids are paths relative to it
    raw = read_dataset(source, config.format, storage_options=config.storage_options)
    if not raw.samples:
        raise DataFormatError(f"{config.source} has no images")
    config = replace(config, source=source, format=raw.format)
    parameters = config.parameters() | {"format_version": FORMAT_VERSION}
    tasks = []
    for split in sorted({s.split for s in raw.samples}):
        samples = sorted(raw.split(split), key=lambda s: s.path)
        for index, start in enumerate(range(0, len(samples), config.rows_per_shard)):
            chunk = tuple(samples[start:start + config.rows_per_shard])
            fingerprint = digest([parameters, split, index,
                                   [(s.path, s.labels) for s in chunk]])
            tasks.append(ShardTask(split, index, chunk, fingerprint))
    rejected = [Rejection(path, "", reason) for path, reason in raw.others]
    fingerprint = digest([parameters, [t.fingerprint for t in tasks], raw.others])
    return Plan(config, _label_schema(raw.format, raw.samples), tasks, rejected,
                fingerprint)


def _image_id(sample: Sample, source: str) -> str:
    """The input's path relative to the source root: unique and stable."""
    root = source.rstrip("/") + "/"
    return sample.path[len(root):] if sample.path.startswith(root) else sample.path


def _label(value: object, type: pa.DataType) -> object:
    """A raw label as its column's type (RaFD's file names give identity '05', angle '090')."""
    if value is None:
        return None
    return int(value) if pa.types.is_integer(type) else str(value)


def _read(sample: Sample, options: dict[str, Any] | None) -> bytes:
    """The input's bytes. A missing file, or a local file that cannot be read, is a rejected
    input; any other error (a network failure, expired credentials, throttling) is raised, so
    that the task is retried instead of recording good inputs as rejected."""
    fs, path = filesystem(sample.path, options)
    try:
        return fs.cat_file(path)
    except (FileNotFoundError, IsADirectoryError):
        raise RejectedImage("missing file", "listed by the data set but not found") from None
    except PermissionError as error:
        if not is_local(fs):
            raise
        raise RejectedImage("unreadable", str(error)) from None


def _label_counts(rows: list[dict[str, Any]], label_names: list[str]) -> dict[str, dict[str, int]]:
    counts = {}
    for name in label_names:
        values = Counter(row[name] for row in rows if row[name] is not None)
        counts[name] = {str(k): n for k, n in sorted(values.items(), key=lambda kv: str(kv[0]))}
    return counts


def write_shard(config: PrepareConfig, label_schema: pa.Schema, task: ShardTask) -> ShardResult:
    """Prepare the task's inputs into one shard (or find it already complete)."""
    found = finished_shard(config.out, task.path, task.fingerprint)
    if found is not None:
        record, facts = found
        return ShardResult(path=task.path, **asdict(facts),
                           rejected=[Rejection(**r) for r in record["rejected"]],
                           written=False, split=task.split,
                           label_counts=record["label_counts"])
    schema = image_schema([("image_id", pa.string()), ("height", pa.int32()),
                           ("width", pa.int32()), *zip(label_schema.names, label_schema.types,
                                                       strict=True)])
    framing = Preprocessing.of(config.format, config.rule.image_size).framing
    rows, rejected = [], []
    for sample in task.inputs:
        image_id = _image_id(sample, config.source)
        try:
            data = prepare_image(_read(sample, config.storage_options), config.rule, framing)
        except RejectedImage as error:
            rejected.append(Rejection(sample.path, task.split, error.reason, error.detail))
            continue
        name = posixpath.splitext(posixpath.basename(image_id))[0] + config.rule.suffix
        rows.append({"image": {"bytes": data, "path": name}, "image_id": image_id,
                     "height": config.rule.image_size, "width": config.rule.image_size}
                    | {f.name: _label(sample.labels.get(f.name), f.type) for f in label_schema})
    label_counts = _label_counts(rows, label_schema.names)
    record = {"fingerprint": task.fingerprint, "split": task.split, "path": task.path,
              "label_counts": label_counts, "rejected": [asdict(r) for r in rejected]}
    with ShardWriter(schema, config.row_group_size) as writer:
        writer.add(rows)
        facts = writer.publish(config.out.fs, config.out.join(task.path), record)
    return ShardResult(path=task.path, **asdict(facts), rejected=rejected, written=True,
                       split=task.split, label_counts=label_counts)


def committed_version(plan: Plan) -> dict[str, Any] | None:
    """The manifest of this exact preparation when it is already complete, else None (and
    the version's lease is this run's until `finish_version`).

    A version that was completed with other inputs or parameters is an error unless the
    configuration says to overwrite it: models trained on it name it. So is one that another
    preparation is writing now.
    """
    config = plan.config
    clash = DataFormatError(
        f"{config.output} already holds a data set prepared from other inputs or with other "
        "parameters: choose a new version (--version), or replace it on purpose (--overwrite; "
        "in the flow, overwrite=True)")
    rule = config.rule
    return committed(config.out, plan.fingerprint, replaceable=lambda _: config.overwrite,
                     clash=lambda _: clash,
                     about=f"preparing {config.source} at {rule.image_size} px ({rule.encoding})",
                     hint="prepare into another version (--version; in the flow, version=...)")


def finish_version(plan: Plan, results: list[ShardResult]) -> dict[str, Any]:
    """Remove shards that the plan no longer has, write rejected.parquet, then the manifest."""
    config = plan.config
    results = sorted(results, key=lambda r: r.path)
    keep = {r.path for r in results}
    rejected = plan.rejected + [x for r in results for x in r.rejected]
    splits = {}
    for split in sorted({r.split for r in results}):
        part = [r for r in results if r.split == split]
        splits[split] = {"rows": sum(r.rows for r in part), "labels": _sum_counts(part)}
    manifest = {
        "format_version": 1,
        "source": config.source,
        "format": config.format,
        "image": {"size": config.rule.image_size, "encoding": config.rule.encoding,
                  "quality": config.rule.quality if config.rule.encoding == "jpeg" else None,
                  "crop": CROP if config.format == "celeba" else None,
                  "framing": Preprocessing.of(config.format, config.rule.image_size).framing,
                  "resize": "the framed square, antialiased bilinear (as translation)"},
        "label_columns": {f.name: str(f.type) for f in plan.label_schema},
        "splits": splits,
        "parameters": config.parameters(),
    }
    return publish(config.out, about=manifest, inputs=plan.inputs, rejected=rejected,
                   shards=[shard_entry(r, split=r.split) for r in results],
                   fingerprint=plan.fingerprint,
                   # a shard of an earlier, overwritten preparation
                   stale=lambda name: bool(SHARD_NAME.match(name)) and name not in keep)


def _sum_counts(results: Iterable[ShardResult]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter] = {}
    for r in results:
        for name, values in r.label_counts.items():
            total.setdefault(name, Counter()).update(values)
    return {name: dict(sorted(c.items())) for name, c in total.items()}


def prepare_dataset(
    config: PrepareConfig, workers: int = 1,
    on_shard: Callable[[ShardResult, int, int], None] | None = None,
) -> dict[str, Any]:
    """Plan, write the missing shards (`workers` processes), then the manifest; returns it."""
    work = plan(config)
    manifest = committed_version(work)
    if manifest is not None:
        return manifest
    results: list[ShardResult] = []
    # One thread per worker process: they are one per core, and torch's thread pool, forked
    # from a parent that used it, would hang the child if it were entered.
    pool_context = ProcessPoolExecutor(workers, initializer=torch.set_num_threads,
                                       initargs=(1,)) if workers > 1 else nullcontext()
    try:
        with pool_context as pool:
            if pool is None:
                done: Iterable[ShardResult] = (write_shard(work.config, work.label_schema, t)
                                               for t in work.tasks)
            else:
                done = (f.result() for f in as_completed(
                    [pool.submit(write_shard, work.config, work.label_schema, t)
                     for t in work.tasks]))
            for result in done:
                results.append(result)
                if on_shard:
                    on_shard(result, len(results), len(work.tasks))
    except BaseException:
        release(work.config.out)  # the version is free for the next run, which resumes it
        raise
    return finish_version(work, results)
