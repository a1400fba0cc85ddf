"""The engine of sharded, exactly-once jobs, without a job around it: a finished shard is
recognised by its fingerprint, the manifest is written last, and a finished job is replaced
only when the job says it may be."""

import pyarrow as pa
import pytest

from stargan_core.io.parquet import ShardWriter
from stargan_core.sharded import (
    Rejection,
    ShardOutcome,
    committed,
    finished_shard,
    publish,
    shard_entry,
)
from stargan_core.storage import Location


def test_a_job_is_published_once_and_replaced_only_when_allowed(tmp_path):
    out = Location.of(str(tmp_path / "job"))
    with ShardWriter(pa.schema([("x", pa.int32())]), 2) as writer:
        writer.add([{"x": i} for i in range(5)])
        facts = writer.publish(out.fs, out.join("part-00000.parquet"), {"fingerprint": "a"})
    assert finished_shard(out, "part-00000.parquet", "a")[1].rows == 5
    assert finished_shard(out, "part-00000.parquet", "b") is None  # other work: do it again
    (tmp_path / "job" / "part-00009.parquet").write_bytes(b"left by an earlier plan")
    done = ShardOutcome(path="part-00000.parquet", **vars(facts), rejected=[],
                        written=True)  # what a task returns
    manifest = publish(out, about={"job": "test"}, shards=[shard_entry(done)], inputs=6,
                       rejected=[Rejection("bad.jpg", "", "not an image")], fingerprint="job-1",
                       stale=lambda name: name.startswith("part-") and name != done.path)
    assert (manifest["rows"], manifest["inputs"], manifest["rejected"]["by_reason"]) == (
        5, 6, {"not an image": 1})
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == [
        "manifest.json", "part-00000.parquet", "rejected.parquet"]
    assert committed(out, "job-1", replaceable=lambda m: False, clash=ValueError) == manifest
    with pytest.raises(ValueError, match="job-1"):
        committed(out, "job-2", replaceable=lambda m: False,
                  clash=lambda m: ValueError(f"folder holds {m['fingerprint']}"))
    assert committed(out, "job-2", replaceable=lambda m: m["job"] == "test",
                     clash=ValueError) is None
    assert not (tmp_path / "job" / "manifest.json").exists()  # unmarked before any change
