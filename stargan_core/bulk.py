"""Bulk translation of an image collection into a list of targets (DESIGN.md, "Compute").

    <output>/part-00000.parquet     one per input partition: a row per (input, target)
    <output>/<target>/<input name>  the same translations as files (output format files, both)
    <output>/rejected.parquet       inputs that could not be read as images, with the reason
    <output>/contact-sheet.png      inputs x targets for a sample of the job, for review
    <output>/manifest.json          written last: the commit marker

The input is a prepared data set (each shard is a partition) or a folder of image files (chunks
of its sorted listing). An output shard records the fingerprint of its inputs, the model
version, the targets and the format in its footer: a re-run skips every complete partition, and
a lost worker costs only the partitions it held. `stargan_core.cluster` runs partitions on
Dask; this module needs neither Dask nor a server.
"""

from __future__ import annotations

import io
import posixpath
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from stargan_core.data.dataset import image_transform
from stargan_core.data.folders import Listing
from stargan_core.data.images import RejectedImage, encode, open_rgb
from stargan_core.data.manifest import (
    MANIFEST,
    REJECTED,
    REJECTED_SCHEMA,
    is_prepared,
    manifest_url,
    read_manifest,
)
from stargan_core.data.parquet import ShardWriter, image_schema, read_record, write_table
from stargan_core.data.prepare import Rejection, digest
from stargan_core.data.sample import IMAGE_SUFFIXES, DataFormatError
from stargan_core.domains import Target
from stargan_core.registry import RegisteredModel, StarGANModel
from stargan_core.storage import (
    check_reachable,
    filesystem,
    join,
    read_json,
    remove_empty_folders,
    write_bytes,
    write_files,
    write_json,
)
from stargan_core.translate import denorm, image_grid, labelled_grid, to_pixels

# Part of every fingerprint: bump it when a change to the code changes the bytes written.
FORMAT_VERSION = 1
OUTPUT_FORMATS = ("parquet", "files", "both")
CONTACT_SHEET = "contact-sheet.png"
SCHEMA = image_schema([("image_id", pa.string()), ("source", pa.string()),
                       ("target", pa.string()), ("model_name", pa.string()),
                       ("model_version", pa.string()), ("height", pa.int32()),
                       ("width", pa.int32())])


@dataclass(frozen=True)
class BulkConfig:
    """One job: what to translate, with which model version, into which targets, where."""

    input_url: str  # a prepared data set (its folder or manifest) or a folder of images
    output: str  # the job's folder: see `job_url`
    model: RegisteredModel
    targets: tuple[Target, ...]
    output_format: str = "parquet"
    batch_size: int = 32
    files_per_partition: int = 1000
    row_group_rows: int = 1000
    storage_options: dict[str, Any] | None = None

    @property
    def writes_files(self) -> bool:
        return self.output_format in ("files", "both")

    def identity(self) -> list[Any]:
        """What decides the bytes of every partition besides its inputs."""
        return [FORMAT_VERSION, self.model.name, self.model.version,
                [t.text for t in self.targets], self.output_format]


def job_url(root: str, job: str, model: RegisteredModel) -> str:
    """`<root>/translations/<job>/<model name>-v<version>`."""
    return join(root, "translations", job, f"{model.name}-v{model.version}")


def default_job(input_url: str) -> str:
    """A prepared data set's name and version (`celeba-v1`), else the folder's name."""
    parts = input_url.rstrip("/").removesuffix(f"/{MANIFEST}").split("/")
    if len(parts) >= 3 and parts[-3] == "datasets":
        return f"{parts[-2]}-{parts[-1]}"
    return parts[-1] or "translations"


def parse_targets(model: RegisteredModel, texts: Sequence[str] | None) -> tuple[Target, ...]:
    """The targets named (an unknown one is an error listing the known domains), or every
    single-domain target of the model."""
    if not texts:
        return tuple(model.spec.single_targets())
    return tuple(model.spec.parse_target(t) for t in texts)


@dataclass(frozen=True)
class Partition:
    """A fixed, ordered part of the input: one prepared shard, or a chunk of image files."""

    index: int
    root: str  # image ids are paths relative to it (for a shard: the raw data set's folder)
    fingerprint: str
    shard: str = ""  # a prepared data set's shard...
    files: tuple[str, ...] = ()  # ...or image files, relative to `root`
    split: str = ""

    @property
    def path(self) -> str:
        return f"part-{self.index:05d}.parquet"


@dataclass(frozen=True)
class BulkPlan:
    config: BulkConfig
    partitions: list[Partition]
    rejected: list[Rejection]  # files of the input that are not images
    inputs: int
    fingerprint: str


@dataclass(frozen=True)
class PartitionResult:
    """What a partition's task wrote (or found already written)."""

    path: str
    inputs: int
    rows: int
    row_groups: list[int]
    sha256: str
    bytes: int
    rejected: list[Rejection]
    written: bool
    seconds: float = 0.0
    worker: str = ""


def plan_job(config: BulkConfig) -> BulkPlan:
    """Partition the input; fails at once when input or output storage cannot be reached, or
    when the input holds no images."""
    options = config.storage_options
    check_reachable(config.input_url, options, must_exist=True)
    check_reachable(config.output, options)
    identity = config.identity()
    if is_prepared(config.input_url, options):
        manifest = read_manifest(config.input_url, options)
        base = manifest_url(config.input_url).rsplit("/", 1)[0]
        partitions = [Partition(i, manifest["source"], digest([identity, s["sha256"]]),
                                shard=join(base, s["path"]), split=s["split"])
                      for i, s in enumerate(manifest["shards"])]
        rejected, inputs = [], manifest["rows"]
    else:
        listing = Listing.of(config.input_url, options)
        images = [f for f in listing.files if posixpath.splitext(f)[1].lower() in IMAGE_SUFFIXES]
        if not images:
            raise DataFormatError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under "
                                  f"{config.input_url}")
        rejected = [Rejection(listing.url(f), "", "not an image file",
                              f"not one of {', '.join(IMAGE_SUFFIXES)}")
                    for f in sorted(set(listing.files) - set(images))]
        root = listing.url("").rstrip("/")
        size = config.files_per_partition
        partitions = [
            Partition(i, root, digest([identity, [(f, listing.stamps[f]) for f in chunk]]),
                      files=tuple(chunk))
            for i, chunk in enumerate(images[s:s + size] for s in range(0, len(images), size))
        ]
        inputs = len(listing.files)
    fingerprint = digest([identity, [p.fingerprint for p in partitions],
                          [asdict(r) for r in rejected]])
    return BulkPlan(config, partitions, rejected, inputs, fingerprint)


def committed_job(plan: BulkPlan) -> dict[str, Any] | None:
    """The manifest when this exact job is complete. A manifest of another job in the same
    folder (other inputs or targets) is removed first: the folder is about to change."""
    url = join(plan.config.output, MANIFEST)
    manifest = read_json(url, plan.config.storage_options)
    if manifest is not None and manifest["fingerprint"] != plan.fingerprint:
        fs, path = filesystem(url, plan.config.storage_options)
        fs.rm_file(path)
        return None
    return manifest


def read_inputs(partition: Partition, batch_size: int, options: dict[str, Any] | None
                ) -> Iterator[tuple[str, str, bytes | None]]:
    """(image id, source URL, the file's bytes or None when it is gone) for each input."""
    fs, root = filesystem(partition.root, options)
    if partition.shard:
        shard_fs, shard = filesystem(partition.shard, options)
        with shard_fs.open(shard, "rb") as f:
            reader = pq.ParquetFile(f)
            for group in range(reader.num_row_groups):
                for row in reader.read_row_group(group, ["image", "image_id"]).to_pylist():
                    yield (row["image_id"], join(partition.root, row["image_id"]),
                           row["image"]["bytes"])
        return
    for start in range(0, len(partition.files), batch_size):
        names = partition.files[start:start + batch_size]
        paths = [join(root, name) for name in names]
        found = fs.cat(paths, on_error="return")  # concurrent requests on S3
        for name, path in zip(names, paths, strict=True):
            data = found.get(path, FileNotFoundError(path))
            if isinstance(data, FileNotFoundError):
                data = None  # deleted since the listing
            elif isinstance(data, Exception):
                raise data  # a network error or throttling: the task is retried
            yield name, join(partition.root, name), data


def _decode(data: bytes | None, transform: Any) -> torch.Tensor:
    if data is None:
        raise RejectedImage("missing file", "listed, but gone when it was read")
    return transform(pil_to_tensor(open_rgb(data)))


def _batches(config: BulkConfig, partition: Partition, transform: Any,
             rejected: list[Rejection]) -> Iterator[tuple[list[str], list[str], torch.Tensor]]:
    """Decoded inputs in batches of (ids, sources, images); undecodable ones go to `rejected`."""
    ids, sources, images = [], [], []
    for image_id, source, data in read_inputs(partition, config.batch_size,
                                              config.storage_options):
        try:
            images.append(_decode(data, transform))
        except RejectedImage as error:
            rejected.append(Rejection(source, partition.split, error.reason, error.detail))
            continue
        ids.append(image_id)
        sources.append(source)
        if len(images) == config.batch_size:
            yield ids, sources, torch.stack(images)
            ids, sources, images = [], [], []
    if images:
        yield ids, sources, torch.stack(images)


def _transform(config: BulkConfig, partition: Partition) -> Any:
    """The model's preprocessing; a prepared shard's images are square already."""
    kind = "prepared" if partition.shard else config.model.data_format
    return image_transform(kind, config.model.image_size)


def translate_partition(config: BulkConfig, partition: Partition, model: StarGANModel
                        ) -> PartitionResult:
    """Translate a partition into every target and publish its shard (files first, when asked
    for); a partition whose shard is complete already is left as it is."""
    fs, base = filesystem(config.output, config.storage_options)
    path = join(base, partition.path)
    found = read_record(fs, path)
    if found is not None and found[0].get("fingerprint") == partition.fingerprint:
        record, facts = found
        return PartitionResult(partition.path, record["inputs"], facts.rows, facts.row_groups,
                               facts.sha256, facts.bytes,
                               [Rejection(**r) for r in record["rejected"]], written=False)
    start = time.perf_counter()
    size, rejected, translated = config.model.image_size, [], 0
    with ShardWriter(SCHEMA, config.row_group_rows) as writer:
        for ids, sources, x in _batches(config, partition, _transform(config, partition),
                                        rejected):
            translated += len(ids)
            rows, files = [], {}
            for target, fakes in zip(config.targets, model.translate(x, config.targets),
                                     strict=True):
                for image_id, source, pixels in zip(ids, sources, to_pixels(fakes),
                                                    strict=True):
                    # Each translation keeps its input's name and file type.
                    data = encode(Image.fromarray(pixels), posixpath.splitext(image_id)[1])
                    file = f"{target.slug}/{image_id}"
                    if config.writes_files:
                        files[join(base, file)] = data
                    keep = config.output_format != "files"
                    rows.append({"image": {"bytes": data if keep else None, "path": file},
                                 "image_id": image_id, "source": source, "target": target.text,
                                 "model_name": config.model.name,
                                 "model_version": config.model.version,
                                 "height": size, "width": size})
            write_files(fs, files)
            writer.add(rows)
        record = {"fingerprint": partition.fingerprint, "inputs": translated + len(rejected),
                  "rejected": [asdict(r) for r in rejected]}
        facts = writer.publish(fs, path, record)
    return PartitionResult(partition.path, record["inputs"], facts.rows, facts.row_groups,
                           facts.sha256, facts.bytes, rejected, written=True,
                           seconds=time.perf_counter() - start)


def finish_job(plan: BulkPlan, results: list[PartitionResult], sample_rows: int = 8
               ) -> dict[str, Any]:
    """Remove what the job no longer has, then write the rejected list, the contact sheet and
    last the manifest; returns the manifest."""
    config = plan.config
    fs, base = filesystem(config.output, config.storage_options)
    results = sorted(results, key=lambda r: r.path)
    keep = {MANIFEST, REJECTED, CONTACT_SHEET} | {r.path for r in results}
    if config.writes_files:
        for result in results:
            with fs.open(join(base, result.path), "rb") as f:
                table = pq.ParquetFile(f).read(columns=["image.path"])
            keep.update(image["path"] for image in table.column("image").to_pylist())
    prefix = base.rstrip("/") + "/"
    for path in fs.find(base):  # shards and files of an earlier job in this folder
        if path[len(prefix):] not in keep:
            fs.rm_file(path)
    remove_empty_folders(fs, base)
    rejected = plan.rejected + [r for result in results for r in result.rejected]
    write_table(fs, join(base, REJECTED),
                pa.Table.from_pylist([asdict(r) for r in rejected], schema=REJECTED_SCHEMA))
    write_bytes(fs, join(base, CONTACT_SHEET), contact_sheet(plan, sample_rows))
    model = config.model
    manifest = {
        "format_version": FORMAT_VERSION,
        "input": config.input_url,
        "model": {"name": model.name, "version": model.version, "uri": model.uri,
                  "requested": model.requested, "run_id": model.run_id},
        "targets": [t.text for t in config.targets],
        "output_format": config.output_format,
        "image": {"size": model.image_size, "encoding": "the input's file type"},
        "shards": [{"path": r.path, "inputs": r.inputs, "rows": r.rows,
                    "row_groups": r.row_groups, "sha256": r.sha256, "bytes": r.bytes}
                   for r in results],
        "inputs": plan.inputs,
        "rows": sum(r.rows for r in results),
        "rejected": {"count": len(rejected), "path": REJECTED,
                     "by_reason": dict(Counter(r.reason for r in rejected).most_common())},
        "contact_sheet": CONTACT_SHEET,
        "fingerprint": plan.fingerprint,
    }
    write_json(join(config.output, MANIFEST), manifest, config.storage_options)
    return manifest


def contact_sheet(plan: BulkPlan, rows: int = 8) -> bytes:
    """A PNG grid of the job's first `rows` translated inputs: each input, then one column per
    target, read back from the published shards."""
    config = plan.config
    fs, base = filesystem(config.output, config.storage_options)
    targets = [t.text for t in config.targets]
    cells: list[torch.Tensor] = []
    for partition in plan.partitions:
        need = rows - len(cells) // (len(targets) + 1)
        if need <= 0:
            break
        shard = join(base, partition.path)
        ids = pq.read_table(shard, columns=["image_id"], filesystem=fs).column("image_id")
        wanted = list(dict.fromkeys(ids.to_pylist()))[:need]  # in input order
        if not wanted:
            continue
        table = pq.read_table(shard, columns=["image", "image_id", "target"], filesystem=fs,
                              filters=[("image_id", "in", wanted)])
        outputs = {(r["image_id"], r["target"]): r["image"] for r in table.to_pylist()}
        transform = _transform(config, partition)
        for image_id, _, data in read_inputs(partition, config.batch_size,
                                             config.storage_options):
            if image_id not in wanted:
                continue
            cells.append(denorm(_decode(data, transform)))
            for target in targets:
                image = outputs[image_id, target]
                encoded = image["bytes"] or fs.cat_file(join(base, image["path"]))
                cells.append(pil_to_tensor(Image.open(io.BytesIO(encoded)).convert("RGB")) / 255)
            if image_id == wanted[-1]:
                break
    if not cells:  # nothing could be translated: a sheet that says so
        cells = [torch.ones(3, config.model.image_size, config.model.image_size)]
        targets = []
    grid = image_grid(torch.stack(cells), len(targets) + 1)
    return encode(labelled_grid(grid, ["input", *targets]), ".png")
