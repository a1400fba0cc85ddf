"""Sharded, exactly-once jobs (docs/design.md, "Sharded exactly-once jobs").

A job is a sorted list of inputs cut into fixed chunks, each chunk one Parquet shard whose
footer records the fingerprint of its inputs and parameters. A shard already there with the
same fingerprint is not written again, so tasks run in any order, in parallel and again after
a crash; inputs that cannot be used become rows of `rejected.parquet` with their reason; the
manifest is written last and marks the job complete. Preparing a data set (`data.prepare`)
and translating a collection (`bulk`) are such jobs: a new one brings its plan (the chunks
and their fingerprints), its per-shard function and what its manifest says. One job at a time
writes a folder: `committed` takes the folder's lease (`lease`), `publish` gives it back.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from stargan_core.io.parquet import ShardFile, read_record, write_table
from stargan_core.lease import LEASES, acquire, holding, release
from stargan_core.storage import Location, remove_empty_folders, write_bytes

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


@dataclass(frozen=True, kw_only=True)
class ShardOutcome:
    """What a shard's task wrote, or found written already: the shard as the manifest lists
    it (`shard_entry`), the inputs it could not use, and whether this run wrote it. Each job's
    task returns it with what that job adds (`data.prepare.ShardResult`,
    `bulk.partition.PartitionResult`)."""

    path: str  # relative to the job's folder
    rows: int
    row_groups: list[int]
    sha256: str
    bytes: int
    rejected: list[Rejection]
    written: bool


def digest(document: object) -> str:
    """The SHA-256 of a JSON-able document: the fingerprint of a piece of work."""
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def finished_shard(out: Location, path: str, fingerprint: str
                   ) -> tuple[dict[str, Any], ShardFile] | None:
    """The footer record and facts of the shard `path` of the job at `out` when it is
    complete and was written for `fingerprint`: that task's work is done."""
    found = read_record(out.fs, out.join(path))
    return found if found is not None and found[0].get("fingerprint") == fingerprint else None


def committed(out: Location, fingerprint: str, *,
              replaceable: Callable[[dict[str, Any]], bool],
              clash: Callable[[dict[str, Any]], Exception],
              about: str = "a sharded job", hint: str = "write to another folder"
              ) -> dict[str, Any] | None:
    """The manifest when the job at `out` is complete with `fingerprint`; else None, after
    unmarking a finished job there that `replaceable` allows to be replaced (before any shard
    changes: a run killed midway must not leave a manifest naming shards that are gone).
    A finished job that may not be replaced raises the error `clash` makes of its manifest.

    Unless it is complete, first takes the folder's lease (`lease.acquire`, with `about` and
    `hint`): waits while this same job runs elsewhere, refuses while another does. When the job
    is to run (None), the lease is held until `publish`, or `release` after a failure."""
    manifest = out.read_json(MANIFEST)
    if manifest is not None and manifest.get("fingerprint") == fingerprint:
        return manifest  # a re-run writes nothing, not even a lease
    lease = acquire(out, fingerprint, about, hint)
    try:
        out.fs.invalidate_cache(out.path)  # the job may have ended elsewhere while we waited
        manifest = out.read_json(MANIFEST)
        if manifest is not None and manifest.get("fingerprint") == fingerprint:
            lease.release()  # complete: nothing to write
            return manifest
        if manifest is not None:
            if not replaceable(manifest):
                raise clash(manifest)
            out.fs.rm_file(out.join(MANIFEST))
        return None
    except BaseException:
        lease.release()
        raise


def shard_entry(outcome: ShardOutcome, **extra: object) -> dict[str, Any]:
    """A finished shard as the manifest lists it (`outcome`: what its task returned)."""
    return {"path": outcome.path, "rows": outcome.rows, "row_groups": outcome.row_groups,
            "sha256": outcome.sha256, "bytes": outcome.bytes, **extra}


def publish(out: Location, *, about: dict[str, Any], shards: list[dict[str, Any]],
            inputs: int, rejected: list[Rejection], fingerprint: str,
            stale: Callable[[str], bool], files: dict[str, bytes] | None = None
            ) -> dict[str, Any]:
    """Finish a job: remove what it no longer has (every path under `out` whose relative
    name `stale` accepts), write the rejected list and `files` (name: bytes), then the
    manifest, last: what the job says `about` itself, its shards (`shard_entry`), counts and
    fingerprint. Returns the manifest, and gives back the folder's lease (even on failure)."""
    manifest = about | {
        "shards": shards, "inputs": inputs, "rows": sum(s["rows"] for s in shards),
        "rejected": {"count": len(rejected), "path": REJECTED,
                     "by_reason": dict(Counter(r.reason for r in rejected).most_common())},
        "fingerprint": fingerprint}
    lease = holding(out)
    try:
        if lease is not None:
            lease.check()  # before anything is removed: the folder may be another job's now
        prefix = out.path.rstrip("/") + "/"
        names = {p: p[len(prefix):] for p in out.fs.find(out.path)}  # find: no globbing
        old = [p for p, name in names.items()
               if stale(name) and not name.startswith(f"{LEASES}/")]  # the lease is not stale
        if old:
            out.fs.rm(old)  # batched deletes on S3
            remove_empty_folders(out.fs, out.path)
        write_table(out.fs, out.join(REJECTED),
                    pa.Table.from_pylist([asdict(r) for r in rejected], schema=REJECTED_SCHEMA))
        for name, data in (files or {}).items():
            write_bytes(out.fs, out.join(name), data)
        out.write_json(manifest, MANIFEST)
    finally:
        release(out)
    return manifest
