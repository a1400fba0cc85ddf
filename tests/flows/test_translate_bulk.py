"""The translate-bulk flow under a real Prefect server, with the model in a SQLite MLflow
store, the data on the loopback S3 server and a 2-worker Dask LocalCluster."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
from PIL import Image

from flows.translate_bulk import translate_bulk
from stargan_core.data.prepare import PrepareConfig, prepare_dataset
from stargan_core.io.images import ImageRule
from stargan_core.storage import filesystem
from tests.flows.conftest import flow_artifacts

TARGETS = ["Blond_Hair", "Male=0", "Young,Black_Hair"]


@pytest.fixture
def prepared(s3, celeba_root):
    url = s3.url("store/datasets/celeba/v1")
    prepare_dataset(PrepareConfig(s3.upload(celeba_root, "raw"), url, rule=ImageRule(64),
                                  rows_per_shard=30))
    return url


def output_rows(url: str) -> list[dict]:
    fs, base = filesystem(url)
    rows = []
    for path in sorted(fs.glob(f"{base}/part-*.parquet")):
        with fs.open(path, "rb") as f:
            rows += pq.read_table(f).to_pylist()
    return rows


def test_translates_a_prepared_set_on_two_workers_and_a_rerun_writes_nothing(
        prefect_server, registered_model, prepared, s3):
    state = translate_bulk(input_url=prepared, targets=TARGETS, output_root=s3.url("store"),
                           output_format="both", workers=2, batch_size=16, device="cpu",
                           return_state=True)
    manifest = state.result()
    output = s3.url("store/translations/celeba-v1/stargan-celeba-v1")
    assert manifest["output"] == output
    assert manifest["model"]["version"] == "1" and manifest["targets"] == TARGETS
    assert manifest["inputs"] == 120 and manifest["rows"] == 360
    assert manifest["rejected"]["count"] == 0 and len(manifest["shards"]) == 5

    rows = output_rows(output)
    assert Counter(Counter((r["image_id"], r["target"]) for r in rows).values()) == {1: 360}
    assert {(r["model_name"], r["model_version"]) for r in rows} == {("stargan-celeba", "1")}
    files = {k for k in s3.versions() if "/stargan-celeba-v1/" in k and k.endswith(".jpg")}
    assert len(files) == 360 and any(k.endswith("/Young+Black_Hair/img_align_celeba/000007.jpg")
                                     for k in files)
    assert all(r["image"]["bytes"] for r in rows)
    image = Image.open(io.BytesIO(rows[0]["image"]["bytes"]))
    assert image.format == "JPEG" and image.size == (64, 64)  # the prepared set's squares

    artifacts = {a.type: a for a in flow_artifacts(state.state_details.flow_run_id)}
    assert artifacts["image"].data.startswith("data:image/jpeg;base64,")
    assert artifacts["image"].key == "contact-sheet-celeba-v1-stargan-celeba-v1"
    table = {row["measure"]: row["value"] for row in json.loads(artifacts["table"].data)}
    assert table["translations written by this run"] == 360
    assert table["partitions written by this run"] == 5 and table["translations per second"] > 0
    assert sum(v for k, v in table.items() if k.startswith("translations on tcp://")) == 360
    assert len([k for k in table if k.startswith("translations on ")]) == 2  # both workers
    assert artifacts["progress"].data == 100.0
    assert table["doubtful translations (doubtful.parquet)"] == 0  # a version with no judge
    assert table[f"{TARGETS[0]}: pixels changed (no judge)"].endswith("%")
    assert manifest["verdicts"]["by_target"][TARGETS[0]]["outputs"] == 120

    versions = s3.versions()
    again = translate_bulk(input_url=prepared, targets=TARGETS, output_root=s3.url("store"),
                           output_format="both", workers=2, device="cpu")
    assert again == manifest
    assert s3.versions() == versions  # no object written again
    assert {v for k, v in versions.items() if "/.job-lease/" not in k} == {1}  # lease: renewed


def test_a_killed_worker_still_ends_with_every_pair_once_and_bad_files_are_listed(
        prefect_server, registered_model, celeba_root, s3):
    from distributed import Client, LocalCluster

    raw = s3.upload(celeba_root / "img_align_celeba", "landing")
    s3.client.put_object(Bucket=s3.name, Key="landing/broken.jpg", Body=b"\xff\xd8 garbage")
    s3.client.put_object(Bucket=s3.name, Key="landing/readme.txt", Body=b"not an image")
    s3.client.copy_object(Bucket=s3.name, Key="landing/odd [1].jpg",  # not a glob pattern
                          CopySource={"Bucket": s3.name, "Key": "landing/000001.jpg"})
    killed = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:

        def kill_a_busy_worker():  # SIGKILL a worker process in the middle of a partition
            try:
                pids = client.run(os.getpid)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not killed:
                    busy = [w for w, tasks in client.processing().items()
                            if any(str(t).startswith("translate-partition") for t in tasks)]
                    if busy:
                        time.sleep(0.3)  # well into the partition
                        tasks = client.processing().get(busy[0])
                        if tasks:
                            killed["tasks"] = tasks
                            os.kill(pids[busy[0]], signal.SIGKILL)
                    time.sleep(0.05)
            except Exception as error:  # reported by the test, not lost in this thread
                killed["error"] = error

        watcher = threading.Thread(target=kill_a_busy_worker, daemon=True)
        watcher.start()
        manifest = translate_bulk(input_url=raw, targets=TARGETS, output_root=s3.url("out"),
                                  job="landing", output_format="both", batch_size=4,
                                  files_per_partition=20, device="cpu",
                                  cluster_address=cluster.scheduler_address)
        watcher.join()
    assert "error" not in killed, killed.get("error")
    assert killed, "no worker was killed while it translated a partition"
    assert any(str(t).startswith("translate-partition") for t in killed["tasks"])
    rows = output_rows(manifest["output"])
    pairs = Counter((r["image_id"], r["target"]) for r in rows)
    assert len(pairs) == 121 * 3 and set(pairs.values()) == {1}
    assert manifest["rows"] == 363 and manifest["inputs"] == 123
    assert manifest["rejected"]["by_reason"] == {"not an image file": 1, "not an image": 1}
    fs, base = filesystem(manifest["output"])
    with fs.open(f"{base}/rejected.parquet", "rb") as f:
        rejected = pq.read_table(f).to_pylist()
    assert sorted(r["source"] for r in rejected) == [s3.url("landing/broken.jpg"),
                                                     s3.url("landing/readme.txt")]
    with fs.open(f"{base}/contact-sheet.png", "rb") as f:
        assert Image.open(f).size == (2 + 4 * (160 + 2), 16 + 2 + 8 * (160 + 2))


def test_bad_input_fails_before_any_work(prefect_server, registered_model, prepared, s3,
                                        monkeypatch):
    import torch
    from prefect.exceptions import ParameterTypeError

    from stargan_core.domains import DomainError
    from stargan_core.storage import StorageError

    with pytest.raises(DomainError, match="unknown domain 'Red_Hair' .known: Black_Hair"):
        translate_bulk(input_url=prepared, targets=["Red_Hair"], output_root=s3.url("x"))
    with pytest.raises(LookupError, match="no alias 'best'.*stargan promote"):
        translate_bulk(input_url=prepared, model_uri="models:/stargan-celeba@best",
                       output_root=s3.url("x"))
    with pytest.raises(LookupError, match="no registered model 'stargan-rafd' in the registry at "
                                          "sqlite:////"):
        translate_bulk(input_url=prepared, model_uri="models:/stargan-rafd@champion",
                       output_root=s3.url("x"))
    with pytest.raises(StorageError, match="nowhere/in .* does not exist: check the URL"):
        translate_bulk(input_url=s3.url("nowhere/in"), output_root=s3.url("x"))
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' .* does not exist"):
        translate_bulk(input_url="s3://no-such-bucket/in", output_root=s3.url("x"))
    with pytest.raises(ParameterTypeError, match="output_format"):
        translate_bulk(input_url=prepared, output_format="zip")
    with pytest.raises(ParameterTypeError, match="strength"):
        translate_bulk(input_url=prepared, strength=2.5)
    with pytest.raises(ValueError, match="strength 0.5: models:/stargan-celeba/1 is conditioned "
                                         "on target labels"):
        translate_bulk(input_url=prepared, strength=0.5, output_root=s3.url("x"))
    with pytest.raises(ParameterTypeError, match="min_confidence"):
        translate_bulk(input_url=prepared, min_confidence=1.5)
    with pytest.raises(ValueError, match="min_confidence 0.5: models:/stargan-celeba/1 was "
                                         "registered without a judge"):
        translate_bulk(input_url=prepared, min_confidence=0.5, output_root=s3.url("x"))
    with pytest.raises(ValueError, match="device 'cuda' was asked for, but there is no GPU"):
        translate_bulk(input_url=prepared, device="cuda", output_root=s3.url("x"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with 2 GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="3 workers were asked for on 2 GPUs.*workers <= 2"):
        translate_bulk(input_url=prepared, workers=3, output_root=s3.url("x"))
    assert not [k for k in s3.versions() if k.startswith("x/")]  # nothing written
