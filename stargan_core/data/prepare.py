"""Raw data set -> Parquet shards + manifest on object storage (DESIGN.md, "Storage").

The work is a plan of shard tasks; each task turns a fixed, ordered chunk of inputs into one
shard, so tasks run in any order, in parallel, and again after a crash. A shard records the
fingerprint of its inputs and parameters in its footer: a task whose shard is already there
with the same fingerprint writes nothing. The manifest is written last and is the commit
marker of a version.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyarrow as pa
import torch
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

from stargan_core.data.folders import read_dataset
from stargan_core.data.images import ImageRule, RejectedImage, encode, open_rgb
from stargan_core.data.manifest import committed, finish
from stargan_core.data.parquet import ShardWriter, image_schema, read_record
from stargan_core.data.sample import DataFormatError, Sample
from stargan_core.preprocessing import Preprocessing
from stargan_core.storage import check_reachable, filesystem, is_local, join, url_of

RAFD_COLUMNS = {"expression": pa.string(), "identity": pa.int16(), "ethnicity": pa.string(),
                "gender": pa.string(), "gaze": pa.string(), "angle": pa.int16()}

@dataclass(frozen=True)
class PrepareConfig:
    """What to prepare and how: source, destination, image rule and shard sizes."""

    source: str
    output: str  # the version's folder: <root>/datasets/<name>/<version>
    format: str = "auto"
    rule: ImageRule = field(default_factory=ImageRule)
    rows_per_shard: int = 8000
    row_group_size: int = 2000
    storage_options: dict[str, Any] | None = None
    overwrite: bool = False

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


@dataclass(frozen=True)
class Rejection:
    source: str
    split: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ShardResult:
    """What a task wrote (or found already written)."""

    split: str
    path: str
    rows: int
    row_groups: list[int]
    sha256: str
    bytes: int
    label_counts: dict[str, dict[str, int]]
    rejected: list[Rejection]
    written: bool


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


def prepare_image(data: bytes, rule: ImageRule, framing: str = "center") -> bytes:
    """The encoded, square `rule.image_size` image of an input file's bytes, or RejectedImage.

    Framed (`celeba`: the reference's 178-pixel centre square of an aligned face, at the
    image's scale; `center`: the centre square of the shorter side) and resized exactly as
    training and translation frame photos (`Preprocessing`), so that a model sees the same
    pixels from a shard as from the raw file.
    """
    photo = pil_to_tensor(open_rgb(data, rule.max_pixels))
    box = Preprocessing(framing, rule.image_size).box(framing, photo.shape[-1], photo.shape[-2])
    if box.side * rule.max_upscale < rule.image_size:
        raise RejectedImage("too small", f"{photo.shape[-1]}x{photo.shape[-2]} would need more "
                            f"than {rule.max_upscale:g}x enlargement to {rule.image_size} px")
    square = ((box.cut(photo, rule.image_size) + 1) * 127.5).round().to(torch.uint8)
    return encode(to_pil_image(square), rule.suffix, rule.quality)


def digest(document: object) -> str:
    """The SHA-256 of a JSON-able document: the fingerprint of a piece of work."""
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


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
    fs, base = filesystem(config.output, config.storage_options)
    path = join(base, task.path)
    found = read_record(fs, path)
    if found is not None and found[0].get("fingerprint") == task.fingerprint:
        record, facts = found
        return ShardResult(task.split, task.path, facts.rows, facts.row_groups, facts.sha256,
                           facts.bytes, record["label_counts"],
                           [Rejection(**r) for r in record["rejected"]], written=False)
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
        facts = writer.publish(fs, path, record)
    return ShardResult(task.split, task.path, facts.rows, facts.row_groups, facts.sha256,
                       facts.bytes, label_counts, rejected, written=True)


def prepare_dataset(
    config: PrepareConfig, workers: int = 1,
    on_shard: Callable[[ShardResult, int, int], None] | None = None,
) -> dict[str, Any]:
    """Plan, write the missing shards (`workers` processes), then the manifest; returns it."""
    work = plan(config)
    manifest = committed(work)
    if manifest is not None:
        return manifest
    results: list[ShardResult] = []
    # One thread per worker process: they are one per core, and torch's thread pool, forked
    # from a parent that used it, would hang the child if it were entered.
    pool_context = ProcessPoolExecutor(workers, initializer=torch.set_num_threads,
                                       initargs=(1,)) if workers > 1 else nullcontext()
    with pool_context as pool:
        if pool is None:
            done: Iterable[ShardResult] = (write_shard(work.config, work.label_schema, t)
                                           for t in work.tasks)
        else:
            done = (f.result() for f in as_completed(
                [pool.submit(write_shard, work.config, work.label_schema, t) for t in work.tasks]))
        for result in done:
            results.append(result)
            if on_shard:
                on_shard(result, len(results), len(work.tasks))
    return finish(work, results)
