"""One job at a time writes a folder: preparations of other parameters started together into one
version, locally and on S3; holders that are gone; the lease given back when a job ends."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from stargan_core.data.prepare import PrepareConfig, plan, prepare_dataset
from stargan_core.io.images import ImageRule
from stargan_core.io.sample import DataFormatError
from stargan_core.lease import LEASES, OutputBusy, acquire
from stargan_core.storage import Location


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path, celeba_root):
    """(source, version URL) on a local disk or on the loopback S3 server."""
    if request.param == "local":
        return str(celeba_root), str(tmp_path / "datasets" / "celeba" / "v1")
    s3 = request.getfixturevalue("s3")
    return s3.upload(celeba_root, "raw/celeba"), s3.url("store/datasets/celeba/v1")


def config(source: str, output: str, size: int, **options) -> PrepareConfig:
    return PrepareConfig(source, output, rule=ImageRule(image_size=size), rows_per_shard=40,
                         **options)


def leases(output: str) -> list[str]:
    out = Location.of(output)
    out.fs.invalidate_cache()
    return out.fs.find(out.join(LEASES))


def stored_sizes(output: str) -> set[int]:
    """The pixel sizes of every image in the version's shards."""
    out = Location.of(output)
    sizes = set()
    for shard in out.fs.find(output):
        if shard.endswith(".parquet") and "/part-" in shard:
            with out.fs.open(shard, "rb") as f:
                for image in pq.read_table(f, columns=["image"]).column("image").to_pylist():
                    sizes.add(Image.open(io.BytesIO(image["bytes"])).size[0])
    return sizes


def plant(output: str, fingerprint: str, host: str, pid: int, expires: float) -> None:
    """A lease as another job leaves it: generation 1, held by `pid` on `host`."""
    out = Location.of(output)
    document = {"fingerprint": fingerprint, "about": "preparing elsewhere at 99 px (jpeg)",
                "ttl": 60.0, "holder": {"host": host, "pid": pid},
                "since": "2026-01-01T00:00:00+00:00", "heartbeat": expires - 60, "expires": expires}
    out.fs.makedirs(out.join(LEASES), exist_ok=True)
    out.fs.pipe_file(out.join(LEASES, "0000000001.json"), json.dumps(document).encode())


def test_a_preparation_of_other_parameters_is_refused_while_one_runs(where):
    source, output = where
    holding, go = threading.Event(), threading.Event()
    outcome = {}

    def first_shard_waits(result, done, total):  # the first job holds the version meanwhile
        holding.set()
        assert go.wait(60)

    def first() -> None:
        outcome["manifest"] = prepare_dataset(config(source, output, 32),
                                              on_shard=first_shard_waits)

    runner = threading.Thread(target=first)
    runner.start()
    try:
        assert holding.wait(120)
        with pytest.raises(OutputBusy, match=r"is being written by another job: preparing .* at "
                                             r"32 px \(jpeg\) \(process \d+ on .*Wait for it to "
                                             r"end .* or prepare into another version"):
            prepare_dataset(config(source, output, 48))
    finally:
        go.set()
        runner.join()
    assert outcome["manifest"]["image"]["size"] == 32 and outcome["manifest"]["rows"] == 120
    assert stored_sizes(output) == {32}
    assert leases(output) == []  # given back at the end
    with pytest.raises(DataFormatError, match="choose a new version"):  # one after the other
        prepare_dataset(config(source, output, 48))


def test_the_issue_command_twice_at_once_with_two_sizes(celeba_root, tmp_path):
    """`for s in 32 48; do stargan preprocess ... --image-size $s & done; wait`."""
    runs = [subprocess.Popen(
        [sys.executable, "-m", "stargan_core.cli", "preprocess", str(celeba_root), "--out",
         str(tmp_path), "--image-size", str(size), "--rows-per-shard", "20", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"})
        for size in (32, 48)]
    ended = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        ended.append((run.returncode, out, err))
    assert sorted(code for code, _, _ in ended) == [0, 2], ended
    (_, won, _), = [e for e in ended if e[0] == 0]
    (_, _, refused), = [e for e in ended if e[0] == 2]
    assert "120 images" in won
    # Refused while the other runs, or, had it started after that one ended, by its manifest.
    assert ("is being written by another job" in refused
            or "already holds a data set prepared" in refused), refused
    output = tmp_path / "datasets" / "celeba" / "v1"
    size = json.loads((output / "manifest.json").read_text())["image"]["size"]
    assert stored_sizes(str(output)) == {size}
    assert not (output / LEASES).exists()


def test_a_lease_whose_holder_is_gone_is_taken_over(where):
    source, output = where
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    plant(output, "another job", socket.gethostname(), int(ended.stdout), time.time() + 3600)
    assert prepare_dataset(config(source, output, 32))["rows"] == 120  # a process gone here

    version = output.replace("/v1", "/v2")
    plant(version, "another job", "elsewhere", 4242, time.time() - 1)
    assert prepare_dataset(config(source, version, 32))["rows"] == 120  # no heartbeat for long
    assert leases(output) == leases(version) == []


def test_a_live_holder_elsewhere_is_not_taken_over_and_the_same_job_waits_for_it(celeba_root,
                                                                                   tmp_path):
    output = str(tmp_path / "v1")
    plant(output, "another job", "elsewhere", 4242, time.time() + 3600)
    with pytest.raises(OutputBusy, match=r"preparing elsewhere at 99 px \(jpeg\) \(process "
                                         r"4242 on elsewhere"):
        prepare_dataset(config(str(celeba_root), output, 32))

    same = config(str(celeba_root), str(tmp_path / "v2"), 32)
    plant(same.output, plan(same).fingerprint, "elsewhere", 4242, time.time() + 3)
    start = time.monotonic()
    assert prepare_dataset(same)["rows"] == 120  # waited, then took over when it lapsed
    assert time.monotonic() - start > 2.5
    assert leases(same.output) == []


def test_the_lease_is_given_back_when_a_job_fails(celeba_root, tmp_path):
    output = str(tmp_path / "v1")

    def fail(result, done, total):
        assert len(leases(output)) == 1  # held while the job runs
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(config(str(celeba_root), output, 32), on_shard=fail)
    assert leases(output) == [] and not (Path(output) / LEASES).exists()
    assert prepare_dataset(config(str(celeba_root), output, 48))["image"]["size"] == 48


def test_a_heartbeat_keeps_a_long_job_s_lease(tmp_path):
    out = Location.of(str(tmp_path / "job"))
    lease = acquire(out, "job-1", "a long job", "wait", ttl=0.8)
    time.sleep(1.5)  # twice its time to live, renewed meanwhile
    with pytest.raises(OutputBusy, match="a long job .* or wait"):
        acquire(out, "job-2", "another job", "wait")
    lease.check()
    lease.release()
    acquire(out, "job-2", "another job", "wait").release()
    assert list((tmp_path / "job").iterdir()) == []
