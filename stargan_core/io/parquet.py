"""Our Parquet files on object storage: image rows in the Hugging Face layout, a JSON record in
the footer, and publishing that no reader ever sees half of.

A shard's footer records what it was made from (its fingerprint) and what it holds, so that a
resumed job recognises a complete shard without any side file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from stargan_core.storage import file_sha256, filesystem, put_file, write_bytes

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
RECORD_KEY = b"stargan"


def image_schema(fields: list[tuple[str, pa.DataType]]) -> pa.Schema:
    """`image: struct<bytes, path>` then `fields`, with the metadata that lets the `datasets`
    library read the image column back as an Image."""
    schema = pa.schema([("image", IMAGE), *fields])
    features = {"image": {"_type": "Image"}} | {
        f.name: {"dtype": str(f.type), "_type": "Value"} for f in schema if f.name != "image"
    }
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})


@dataclass(frozen=True)
class ShardFile:
    """The facts of a published shard that a manifest lists."""

    rows: int
    row_groups: list[int]
    sha256: str
    bytes: int


def _facts(meta: pq.FileMetaData, sha256: str, size: int) -> ShardFile:
    return ShardFile(meta.num_rows, [meta.row_group(i).num_rows
                                     for i in range(meta.num_row_groups)], sha256, size)


def _footer(fs: AbstractFileSystem, path: str) -> pq.FileMetaData | None:
    try:
        with fs.open(path, "rb") as f:
            return pq.read_metadata(f)
    except (FileNotFoundError, pa.ArrowInvalid):
        return None  # no file, or not a complete Parquet file; other errors are raised


def _record(meta: pq.FileMetaData) -> dict[str, Any]:
    return json.loads((meta.metadata or {}).get(RECORD_KEY, b"{}"))


def read_footer(fs: AbstractFileSystem, path: str) -> dict[str, Any] | None:
    """The record in the footer of the shard at `path`, or None when there is no complete one."""
    meta = _footer(fs, path)
    return None if meta is None else _record(meta)


def read_record(fs: AbstractFileSystem, path: str) -> tuple[dict[str, Any], ShardFile] | None:
    """The footer record of the complete shard at `path` and its facts (its SHA-256 read from
    the whole file); None when there is no complete shard."""
    meta = _footer(fs, path)
    if meta is None:
        return None
    return _record(meta), _facts(meta, file_sha256(fs, path), fs.size(path))


class ShardWriter:
    """Rows into a local temporary Parquet file in row groups of `row_group_rows`; `publish`
    puts the finished file at its destination in one piece, with a record in its footer."""

    def __init__(self, schema: pa.Schema, row_group_rows: int) -> None:
        self.schema, self.row_group_rows = schema, row_group_rows
        fd, self.tmp = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        # Images are compressed already: zstd is for the other columns.
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.pending: list[dict[str, Any]] = []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.pending += rows
        while len(self.pending) >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _flush(self, count: int) -> None:
        rows, self.pending = self.pending[:count], self.pending[count:]
        self.writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def publish(self, fs: AbstractFileSystem, path: str, record: dict[str, Any]) -> ShardFile:
        if self.pending:
            self._flush(len(self.pending))
        self.writer.add_key_value_metadata({RECORD_KEY: json.dumps(record).encode()})
        self.writer.close()
        meta = pq.read_metadata(self.tmp)
        sha256 = file_sha256(filesystem(self.tmp)[0], self.tmp)
        put_file(fs, self.tmp, path)
        return _facts(meta, sha256, os.path.getsize(self.tmp))


def table_bytes(table: pa.Table) -> bytes:
    """A small table as the bytes of a Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_table(fs: AbstractFileSystem, path: str, table: pa.Table) -> None:
    """A small table (a rejected list) written in one piece."""
    write_bytes(fs, path, table_bytes(table))
