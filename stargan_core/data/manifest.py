"""The manifest of a prepared data set: written last as the commit marker, read by training.

    <output>/manifest.json      shards (rows, row groups, SHA-256), counts per split and label,
                                image size and crop, inputs, rejections, parameters
    <output>/rejected.parquet   every input that was not stored, with its reason
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from stargan_core.data.celeba import CROP
from stargan_core.data.parquet import write_table
from stargan_core.data.sample import DataFormatError
from stargan_core.domains import DomainSpec
from stargan_core.preprocessing import Preprocessing
from stargan_core.storage import filesystem, join, read_json, write_json

if TYPE_CHECKING:
    from stargan_core.data.prepare import Plan, ShardResult

MANIFEST = "manifest.json"
REJECTED = "rejected.parquet"
SHARD_NAME = re.compile(r"^[^/]+/part-\d{5}\.parquet$")  # <split>/part-00000.parquet
REJECTED_SCHEMA = pa.schema([("source", pa.string()), ("split", pa.string()),
                             ("reason", pa.string()), ("detail", pa.string())])


def _sum_counts(results: Iterable[ShardResult]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter] = {}
    for r in results:
        for name, values in r.label_counts.items():
            total.setdefault(name, Counter()).update(values)
    return {name: dict(sorted(c.items())) for name, c in total.items()}


def finish(plan: Plan, results: list[ShardResult]) -> dict[str, Any]:
    """Remove shards that the plan no longer has, write rejected.parquet, then the manifest."""
    config = plan.config
    fs, base = filesystem(config.output, config.storage_options)
    results = sorted(results, key=lambda r: r.path)
    keep = {r.path for r in results}
    prefix = base.rstrip("/") + "/"
    for path in fs.find(base):  # find, not glob: the base path may hold [ ] * ?
        relative = path[len(prefix):]
        if SHARD_NAME.match(relative) and relative not in keep:
            fs.rm_file(path)  # a shard of an earlier, overwritten preparation
    rejected = plan.rejected + [x for r in results for x in r.rejected]
    write_table(fs, join(base, REJECTED),
                pa.Table.from_pylist([asdict(r) for r in rejected], schema=REJECTED_SCHEMA))
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
        "shards": [{"path": r.path, "split": r.split, "rows": r.rows,
                    "row_groups": r.row_groups, "sha256": r.sha256, "bytes": r.bytes}
                   for r in results],
        "inputs": plan.inputs,
        "rows": sum(r.rows for r in results),
        "rejected": {"count": len(rejected), "path": REJECTED,
                     "by_reason": dict(Counter(r.reason for r in rejected).most_common())},
        "parameters": config.parameters(),
        "fingerprint": plan.fingerprint,
    }
    write_json(join(config.output, MANIFEST), manifest, config.storage_options)
    return manifest


def committed(plan: Plan) -> dict[str, Any] | None:
    """The manifest of this exact preparation when it is already complete, else None.

    A version that was completed with other inputs or parameters is an error unless the
    configuration says to overwrite it: models trained on it name it.
    """
    manifest = read_json(join(plan.config.output, MANIFEST), plan.config.storage_options)
    if manifest is None or manifest.get("fingerprint") == plan.fingerprint:
        return manifest
    if plan.config.overwrite:
        # Unmark the old version before any shard changes: a run killed midway must not
        # leave a manifest that names shards that are no longer there.
        fs, path = filesystem(join(plan.config.output, MANIFEST), plan.config.storage_options)
        fs.rm_file(path)
        return None
    raise DataFormatError(
        f"{plan.config.output} already holds a data set prepared from other inputs or with "
        "other parameters: choose a new version (--version), or replace it on purpose "
        "(--overwrite; in the flow, overwrite=True)"
    )


def manifest_url(url: str) -> str:
    """The manifest of a prepared data set, given its folder or the manifest itself."""
    return url if url.rstrip("/").endswith(MANIFEST) else join(url, MANIFEST)


def is_prepared(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether `url` names a prepared data set (a manifest or a folder holding one)."""
    fs, path = filesystem(manifest_url(str(url)), storage_options)
    return fs.isfile(path)


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    manifest = read_json(manifest_url(str(url)), storage_options)
    if manifest is None:
        raise DataFormatError(
            f"no {MANIFEST} at {url}: prepare the data set first (`stargan preprocess` or the "
            "preprocess-dataset flow), or give the folder that holds the manifest"
        )
    return manifest


def manifest_spec(manifest: dict[str, Any], domains: list[str] | None = None) -> DomainSpec:
    """The label space a prepared data set offers; `domains` selects CelebA attributes."""
    format = manifest["format"]
    if domains and format != "celeba":
        raise DataFormatError(f"choosing domains works for CelebA only, not for {format}")
    if format == "celeba":
        return DomainSpec.celeba(domains) if domains else DomainSpec.celeba()
    if format == "rafd":
        return DomainSpec.rafd()
    names = sorted({value for split in manifest["splits"].values()
                    for value in split["labels"].get("domain", {})})
    name = manifest["source"].rstrip("/").rsplit("/", 1)[-1] or "custom"
    return DomainSpec.categorical(name, names)
