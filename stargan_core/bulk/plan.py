"""A bulk translation job and its partitions, and reading a partition's inputs."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

import pyarrow.parquet as pq
from pydantic import ConfigDict, Field, InstanceOf, PositiveInt
from pydantic.dataclasses import dataclass as checked_dataclass

from stargan_core.data.folders import Listing
from stargan_core.data.manifest import is_prepared, manifest_location, read_manifest
from stargan_core.domains import DomainError
from stargan_core.editing import OUTPUT_SIZES, STRENGTHS
from stargan_core.io.images import FILE_FORMATS
from stargan_core.io.sample import IMAGE_SUFFIXES, DataFormatError
from stargan_core.preprocessing import FRAMINGS
from stargan_core.registry import RegisteredModel
from stargan_core.sharded import MANIFEST, Rejection, digest
from stargan_core.storage import Location, check_reachable, join
from stargan_core.targets import Target, parse_target, single_targets

# Part of every fingerprint: bump it when a change to the code changes the bytes written.
FORMAT_VERSION = 3  # 2: outputs at the input's own size; 3: a verdict on each


# The job's choices, typed once: BulkConfig's fields and the translate-bulk flow's parameters.
OutputFormat = Literal["parquet", "files", "both"]
OutputSize = Literal[OUTPUT_SIZES]  # type: ignore[valid-type]
Framing = Literal[FRAMINGS]  # type: ignore[valid-type]
FileFormat = Literal[tuple(FILE_FORMATS)]  # type: ignore[valid-type]
Quality = Annotated[int, Field(ge=1, le=100)]
BatchSize = Annotated[int, Field(ge=1, le=4096)]
Strength = Annotated[float, Field(ge=STRENGTHS[0], le=STRENGTHS[1])]
Confidence = Annotated[float, Field(ge=0, le=1)]


@checked_dataclass(frozen=True, config=ConfigDict(arbitrary_types_allowed=True))
class BulkConfig:
    """One job: what to translate, with which model version, into which targets, where;
    checked when made (a bad value names the field)."""

    input_url: str  # a prepared data set (its folder or manifest) or a folder of images
    output: str  # the job's folder: see `job_url`
    model: InstanceOf[RegisteredModel]
    targets: tuple[InstanceOf[Target], ...]
    output_format: OutputFormat = "parquet"
    batch_size: BatchSize = 32
    files_per_partition: PositiveInt = 1000
    row_group_rows: PositiveInt = 1000
    storage_options: dict[str, Any] | None = None
    overwrite: bool = False  # replace a job of other inputs, targets or format in the folder
    split: str | None = None  # of a prepared data set: translate this split only
    output_size: OutputSize = "input"  # the input's own size, or the model's square
    framing: Framing = "auto"  # where the model looks in a photo
    file_format: FileFormat = "auto"  # files: the input's type, or one
    quality: Quality = 95  # of JPEG and WebP files
    strength: Strength = 1.0  # of the edit: 0 nothing, 1 as trained, up to 2
    # Outputs whose verdict's confidence is lower are listed apart (`job.DOUBTFUL`).
    min_confidence: Confidence = 0.0

    def __post_init__(self) -> None:
        if self.min_confidence and not self.model.judged:
            raise ValueError(
                f"min_confidence {self.min_confidence:g}: {self.model.uri} was registered "
                "without a judge (before verdicts were logged), so its outputs have no "
                "confidence; leave min_confidence at 0, or use a version registered since")
        if self.strength != 1 and self.model.conditioning != "difference":
            raise ValueError(
                f"strength {self.strength:g}: {self.model.uri} is conditioned on target labels "
                "(the paper's generator), whose edit has no size to scale; give strength 1, or "
                "a version trained with label differences (the edit-32 and edit-128 presets)")

    @cached_property
    def source(self) -> Location:
        """The input, resolved once (and sent to the workers resolved)."""
        return Location.of(self.input_url, self.storage_options)

    @cached_property
    def out(self) -> Location:
        """The job's folder, resolved once (and sent to the workers resolved)."""
        return Location.of(self.output, self.storage_options)

    @property
    def writes_files(self) -> bool:
        return self.output_format in ("files", "both")

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same job (the model version is in the folder's name)."""
        return {"input": self.input_url, "split": self.split,
                "targets": [t.text for t in self.targets], "output_format": self.output_format,
                "output_size": self.output_size, "framing": self.framing,
                "file_format": self.file_format,
                "quality": self.quality} | (  # jobs made before these stay complete
            {"strength": self.strength} if self.strength != 1 else {}) | (
            {"min_confidence": self.min_confidence} if self.min_confidence else {})


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
    single-domain target of the model. Two names for one translation are an error."""
    if not texts:
        return tuple(single_targets(model.spec))
    targets = tuple(parse_target(model.spec, t) for t in texts)
    seen: dict[tuple, str] = {}
    for t in targets:
        key = (t.label_set, tuple(sorted(t.values)))
        if key in seen:
            raise DomainError(f"targets '{seen[key]}' and '{t.text}' are the same translation: "
                              "name it once")
        seen[key] = t.text
    return targets


@dataclass(frozen=True)
class Partition:
    """A fixed, ordered part of the input: one prepared shard, or a chunk of image files."""

    index: int
    root: str  # image ids are paths relative to it (for a shard: the raw data set's folder)
    fingerprint: str
    shard: str = ""  # a prepared data set's shard (its path on the input's file system)...
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


def plan_job(config: BulkConfig) -> BulkPlan:
    """Partition the input; fails at once when input or output storage cannot be reached, or
    when the input holds no images."""
    source = config.source
    check_reachable(source, must_exist=True)
    check_reachable(config.out)
    identity = [FORMAT_VERSION, config.model.uri, config.identity()]
    if is_prepared(source):
        manifest = read_manifest(source)
        if config.split and config.split not in manifest["splits"]:
            raise DataFormatError(f"{config.input_url} has no '{config.split}' split (it has: "
                                  f"{', '.join(manifest['splits'])})")
        base = posixpath.dirname(manifest_location(source).path)
        shards = [s for s in manifest["shards"] if config.split in (None, s["split"])]
        partitions = [Partition(i, manifest["source"], digest([identity, s["sha256"]]),
                                shard=join(base, s["path"]), split=s["split"])
                      for i, s in enumerate(shards)]
        rejected, inputs = [], sum(s["rows"] for s in shards)
    else:
        if config.split:
            raise DataFormatError(f"split '{config.split}' was given, but {config.input_url} "
                                  "is a folder of images, not a prepared data set")
        listing = Listing.of(source)
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
            # The files' sizes and ETags (S3) or mtimes: a replaced file changes its partition.
            Partition(i, root, digest([identity, [(f, listing.stamps[f]) for f in chunk]]),
                      files=tuple(chunk))
            for i, chunk in enumerate(images[s:s + size] for s in range(0, len(images), size))
        ]
        inputs = len(listing.files)
    fingerprint = digest([identity, [p.fingerprint for p in partitions],
                          [asdict(r) for r in rejected]])
    return BulkPlan(config, partitions, rejected, inputs, fingerprint)


def read_inputs(partition: Partition, batch_size: int, source: Location
                ) -> Iterator[tuple[str, str, bytes]]:
    """(image id, source URL, encoded image) for each input of a partition of the job whose
    input is `source`, in order."""
    if partition.shard:
        with source.fs.open(partition.shard, "rb") as f:
            reader = pq.ParquetFile(f)
            for group in range(reader.num_row_groups):
                for row in reader.read_row_group(group, ["image", "image_id"]).to_pylist():
                    yield (row["image_id"], join(partition.root, row["image_id"]),
                           row["image"]["bytes"])
        return
    for start in range(0, len(partition.files), batch_size):
        names = partition.files[start:start + batch_size]
        paths = [source.join(name) for name in names]
        # Concurrent requests on S3; unlike cat(), no glob expansion of [ ] * ? in names.
        found = source.fs.cat_ranges(paths, None, None, on_error="return")
        for name, data in zip(names, found, strict=True):
            if isinstance(data, FileNotFoundError):
                raise FileNotFoundError(
                    f"{join(partition.root, name)} was listed but cannot be found now. If the "
                    "Dask workers run on other machines, give an s3:// URL; if the file was "
                    "moved, run the job again") from None
            if isinstance(data, Exception):
                raise data  # a network error or throttling: the task is retried
            yield name, join(partition.root, name), data


def input_framing(config: BulkConfig, partition: Partition) -> str:
    """How the partition's images are framed: a prepared shard's images are the model's square
    already (`center`); raw files as the job asks."""
    return "center" if partition.shard else config.framing


