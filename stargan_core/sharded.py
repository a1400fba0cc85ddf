"""Sharded, exactly-once jobs (DESIGN.md, "Storage").

A job is a sorted list of inputs cut into fixed chunks, each chunk one Parquet shard whose
footer records the fingerprint of its inputs and parameters. A shard already there with the
same fingerprint is not written again, so tasks run in any order, in parallel and again after
a crash; inputs that cannot be used become rows of `rejected.parquet` with their reason; the
manifest is written last and marks the job complete. Preparing a data set (`data.prepare`)
and translating a collection (`bulk`) are such jobs: a new one brings its plan (the chunks
and their fingerprints), its per-shard function and what its manifest says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from stargan_core.data.parquet import ShardFile, read_record, write_table
from stargan_core.storage import (
    filesystem,
    join,
    read_json,
    remove_empty_folders,
    write_bytes,
    write_json,
)

MANIFEST = "manifest.json"
REJECTED = "rejected.parquet"
REJECTED_SCHEMA = pa.schema([("source", pa.string()), ("split", pa.string()),
                             ("reason", pa.string()), ("detail", pa.string())])


@dataclass(frozen=True)
class Rejection:
    """An input that could not be used, and why."""

    source: str
    split: str
    reason: str
    detail: str = ""


def digest(document: object) -> str:
    """The SHA-256 of a JSON-able document: the fingerprint of a piece of work."""
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def finished_shard(output: str, path: str, fingerprint: str,
                   storage_options: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], ShardFile] | None:
    """The footer record and facts of the shard `path` of the job at `output` when it is
    complete and was written for `fingerprint`: that task's work is done."""
    fs, base = filesystem(output, storage_options)
    found = read_record(fs, join(base, path))
    return found if found is not None and found[0].get("fingerprint") == fingerprint else None


def committed(output: str, fingerprint: str, storage_options: dict[str, Any] | None, *,
              replaceable: Callable[[dict[str, Any]], bool],
              clash: Callable[[dict[str, Any]], Exception]) -> dict[str, Any] | None:
    """The manifest when the job at `output` is complete with `fingerprint`; else None, after
    unmarking a finished job there that `replaceable` allows to be replaced (before any shard
    changes: a run killed midway must not leave a manifest naming shards that are gone).
    A finished job that may not be replaced raises the error `clash` makes of its manifest."""
    url = join(output, MANIFEST)
    manifest = read_json(url, storage_options)
    if manifest is None or manifest.get("fingerprint") == fingerprint:
        return manifest
    if not replaceable(manifest):
        raise clash(manifest)
    fs, path = filesystem(url, storage_options)
    fs.rm_file(path)
    return None


def publish(output: str, storage_options: dict[str, Any] | None, *,
            stale: Callable[[str], bool], rejected: list[Rejection],
            manifest: dict[str, Any], files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Finish a job: remove what it no longer has (every path under `output` whose relative
    name `stale` accepts), write the rejected list and `files` (name: bytes), then the
    manifest, last; returns the manifest."""
    fs, base = filesystem(output, storage_options)
    prefix = base.rstrip("/") + "/"
    old = [path for path in fs.find(base) if stale(path[len(prefix):])]  # find: no globbing
    if old:
        fs.rm(old)  # batched deletes on S3
        remove_empty_folders(fs, base)
    write_table(fs, join(base, REJECTED),
                pa.Table.from_pylist([asdict(r) for r in rejected], schema=REJECTED_SCHEMA))
    for name, data in (files or {}).items():
        write_bytes(fs, join(base, name), data)
    write_json(join(output, MANIFEST), manifest, storage_options)
    return manifest
