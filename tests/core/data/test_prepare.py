"""Preparation: shards + manifest + rejected list; idempotent, resumable, exact."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stargan_core.data.prepare import PrepareConfig, prepare_dataset
from stargan_core.io.images import ImageRule
from stargan_core.io.sample import DataFormatError
from stargan_core.preprocessing import prepare_image
from stargan_core.storage import StorageError

RULE = ImageRule(image_size=48)
BAD = {  # file -> the reason it must be rejected with
    "000003.jpg": "empty file",
    "000004.jpg": "truncated or corrupt",
    "000005.jpg": "not an image",
    "000006.jpg": "missing file",
    "000007.jpg": "too small",
}


@pytest.fixture(scope="module")
def messy_celeba(celeba_root, tmp_path_factory):
    """The synthetic CelebA set with one input of every bad kind, a greyscale one and one at
    twice the usual size."""
    root = tmp_path_factory.mktemp("messy") / "celeba"
    shutil.copytree(celeba_root, root)
    images = root / "img_align_celeba"
    (images / "000003.jpg").write_bytes(b"")
    data = (images / "000004.jpg").read_bytes()
    (images / "000004.jpg").write_bytes(data[: len(data) // 2])
    (images / "000005.jpg").write_text("not a picture")
    (images / "000006.jpg").unlink()
    Image.new("RGB", (20, 24)).save(images / "000007.jpg")
    Image.open(images / "000008.jpg").convert("L").save(images / "000008.jpg")
    Image.open(images / "000009.jpg").resize((356, 436)).save(images / "000009.jpg")
    return root


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*")) if p.is_file()}


def shard_ids(out: Path, manifest: dict) -> list[str]:
    return [i for s in manifest["shards"]
            for i in pq.read_table(out / s["path"], columns=["image_id"])["image_id"].to_pylist()]


def test_shards_manifest_and_rejected_list(messy_celeba, celeba_root, tmp_path):
    out = tmp_path / "datasets" / "celeba" / "v1"
    config = PrepareConfig(str(messy_celeba), str(out), rule=RULE, rows_per_shard=25,
                           row_group_size=10)
    manifest = prepare_dataset(config, workers=2)

    assert manifest["format"] == "celeba" and manifest["image"]["crop"] == 178
    assert manifest["inputs"] == 120
    assert manifest["rows"] == 120 - len(BAD) == sum(s["rows"] for s in manifest["shards"])
    assert sum(v["rows"] for v in manifest["splits"].values()) == manifest["rows"]
    assert manifest["rejected"] == {"count": len(BAD), "path": "rejected.parquet",
                                    "by_reason": {reason: 1 for reason in BAD.values()}}
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    assert {Path(r["source"]).name: r["reason"] for r in rejected} == BAD
    ids = shard_ids(out, manifest)
    assert len(ids) == len(set(ids)) == manifest["rows"]
    assert "img_align_celeba/000008.jpg" in ids  # greyscale: converted, not rejected
    assert not any(Path(i).name in BAD for i in ids)

    shard = manifest["shards"][0]
    meta = pq.read_metadata(out / shard["path"])
    assert shard["row_groups"] == [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert max(shard["row_groups"]) == 10
    table = pq.read_table(out / shard["path"])
    assert table.schema.field("image").type.names == ["bytes", "path"]
    assert len([c for c in table.column_names if table.schema.field(c).type == "int8"]) == 40
    row = table.slice(0, 1).to_pylist()[0]
    assert (row["height"], row["width"]) == (48, 48)
    # Stored exactly as the input rule makes it, with CelebA's framing at the image's scale:
    # the face at twice its usual size is stored as the face at its usual size would be.
    rows = [r for s in manifest["shards"] for r in pq.read_table(out / s["path"]).to_pylist()]
    big = next(r for r in rows if r["image_id"].endswith("000009.jpg"))
    raw = (messy_celeba / big["image_id"]).read_bytes()
    assert big["image"]["bytes"] == prepare_image(raw, RULE, framing="celeba")
    usual = prepare_image((celeba_root / "img_align_celeba" / "000009.jpg").read_bytes(), RULE,
                          framing="celeba")
    pixels = [np.asarray(Image.open(io.BytesIO(b)), dtype=float) for b in
              (big["image"]["bytes"], usual)]
    assert np.abs(pixels[0] - pixels[1]).mean() < 3  # resampling and JPEG only
    # Label counts in the manifest are the labels in the shards.
    males = sum(pq.read_table(out / s["path"], columns=["Male"])["Male"].to_numpy().sum()
                for s in manifest["shards"] if s["split"] == "train")
    assert manifest["splits"]["train"]["labels"]["Male"]["1"] == males


def test_shards_read_back_with_hugging_face_datasets(celeba_root, tmp_path):
    datasets = pytest.importorskip("datasets")
    manifest = prepare_dataset(PrepareConfig(str(celeba_root), str(tmp_path), rule=RULE))
    path = tmp_path / manifest["shards"][0]["path"]
    ds = datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "hf-cache"))
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds[0]["image"].size == (48, 48) and ds[0]["Male"] in (0, 1)
    assert len(ds) == manifest["shards"][0]["rows"]


def test_second_run_writes_nothing(celeba_root, tmp_path):
    config = PrepareConfig(str(celeba_root), str(tmp_path), rule=RULE, rows_per_shard=40)
    first = prepare_dataset(config)
    before = files(tmp_path)
    time.sleep(0.01)
    assert prepare_dataset(config, workers=2) == first
    assert files(tmp_path) == before


def test_killed_run_resumes_writing_only_the_missing_shards(celeba_root, tmp_path):
    out = tmp_path / "datasets" / "celeba" / "v1"
    args = [sys.executable, "-m", "stargan_core.cli", "preprocess", str(celeba_root),
            "--out", str(tmp_path), "--image-size", "256",
            "--rows-per-shard", "3", "--workers", "1"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*/part-*.parquet"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    survivors = {k: v for k, v in files(out).items() if k.endswith(".parquet")}
    assert 4 <= len(survivors) < 40

    config = PrepareConfig(str(celeba_root), str(out), rule=ImageRule(256), rows_per_shard=3)
    written = []
    manifest = prepare_dataset(config, on_shard=lambda r, done, total: written.append(r))
    after = files(out)
    assert all(after[name] == mtime for name, mtime in survivors.items()), "rewrote a shard"
    assert sum(r.written for r in written) == 40 - len(survivors)
    ids = shard_ids(out, manifest)
    assert len(ids) == len(set(ids)) == manifest["rows"] == 120


def test_partial_shard_left_by_a_crash_is_rewritten(celeba_root, tmp_path):
    config = PrepareConfig(str(celeba_root), str(tmp_path), rule=RULE, rows_per_shard=40)
    manifest = prepare_dataset(config)
    (tmp_path / "manifest.json").unlink()
    victim = tmp_path / manifest["shards"][1]["path"]
    victim.write_bytes(victim.read_bytes()[:1000])  # a writer killed mid-file on a plain disk
    again = prepare_dataset(config)
    assert again["shards"] == manifest["shards"]
    assert pq.read_metadata(victim).num_rows == manifest["shards"][1]["rows"]


def test_other_parameters_need_a_new_version_or_overwrite(celeba_root, tmp_path):
    config = PrepareConfig(str(celeba_root), str(tmp_path), rule=RULE, rows_per_shard=20)
    prepare_dataset(config)
    bigger = PrepareConfig(str(celeba_root), str(tmp_path), rule=RULE, rows_per_shard=50)
    with pytest.raises(DataFormatError, match="choose a new version"):
        prepare_dataset(bigger)
    manifest = prepare_dataset(PrepareConfig(str(celeba_root), str(tmp_path), rule=RULE,
                                             rows_per_shard=50, overwrite=True))
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/part-*.parquet"))
    assert on_disk == sorted(s["path"] for s in manifest["shards"])  # stale shards removed
    assert manifest["rows"] == 120


def test_files_that_are_not_inputs_are_listed_as_rejected(tmp_path, celeba_root):
    source = tmp_path / "faces"
    for domain in ("smiling", "neutral"):
        (source / domain).mkdir(parents=True)
        for i in range(3):
            shutil.copy(celeba_root / "img_align_celeba" / f"00001{i}.jpg",
                        source / domain / f"{i}.jpg")
    (source / "smiling" / "notes.txt").write_text("shot on 2024-05-01")
    (source / "neutral" / ".DS_Store").write_bytes(b"\0")
    (source / "smiling" / "more").mkdir()
    shutil.copy(source / "smiling" / "0.jpg", source / "smiling" / "more" / "3.jpg")
    (source / "README.md").write_text("faces")
    manifest = prepare_dataset(PrepareConfig(str(source), str(tmp_path / "out"), rule=RULE))
    assert manifest["format"] == "imagefolder" and manifest["rows"] == 6
    assert manifest["splits"]["train"]["labels"]["domain"] == {"neutral": 3, "smiling": 3}
    assert manifest["inputs"] == 6 + 3
    rejected = pq.read_table(tmp_path / "out" / "rejected.parquet").to_pylist()
    assert sorted((Path(r["source"]).name, r["reason"]) for r in rejected) == [
        ("3.jpg", "outside the <folder>/<image> layout"),
        ("README.md", "outside the <folder>/<image> layout"),
        ("notes.txt", "not an image file")]


def test_rafd_labels_come_from_folders_and_file_names(rafd_root, tmp_path):
    manifest = prepare_dataset(PrepareConfig(str(rafd_root), str(tmp_path), rule=RULE))
    assert manifest["format"] == "rafd"
    assert set(manifest["label_columns"]) == {"expression", "identity", "ethnicity", "gender",
                                              "gaze", "angle"}
    row = pq.read_table(tmp_path / manifest["shards"][0]["path"]).slice(0, 1).to_pylist()[0]
    assert row["expression"] in row["image_id"] and isinstance(row["identity"], int)
    counts = manifest["splits"]["train"]["labels"]["expression"]
    assert len(counts) == 8 and len(set(counts.values())) == 1


def test_missing_source_and_malformed_labels_fail_at_once(celeba_root, tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        prepare_dataset(PrepareConfig(str(tmp_path / "nowhere"), str(tmp_path / "out")))
    broken = tmp_path / "broken"
    shutil.copytree(celeba_root, broken)
    attr = broken / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    lines[5] = lines[5].replace(" 1", " 2", 1).replace("-1", "2", 1)
    attr.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"list_attr_celeba.txt:6: value of .* must be 1"):
        prepare_dataset(PrepareConfig(str(broken), str(tmp_path / "out")))
    assert not (tmp_path / "out").exists(), "nothing may be written before the inputs are valid"


def test_unreachable_bucket_fails_at_once_saying_what_to_check(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot reach s3://bucket/raw.*AWS_ENDPOINT_URL"):
        prepare_dataset(PrepareConfig("s3://bucket/raw", str(tmp_path)))
    assert time.monotonic() - started < 60


def test_credentials_are_refused_as_storage_options(celeba_root, tmp_path):
    with pytest.raises(StorageError, match="must not carry credentials"):
        prepare_dataset(PrepareConfig(str(celeba_root), "s3://b/x",
                                      storage_options={"secret": "hunter2"}))


def test_from_and_to_s3(s3, celeba_root):
    source = s3.upload(celeba_root, "raw/celeba")
    config = PrepareConfig(source, s3.url("store/datasets/celeba/v1"), rule=RULE,
                           rows_per_shard=50)
    manifest = prepare_dataset(config, workers=2)
    assert manifest["rows"] == 120 and manifest["source"] == source
    keys = s3.versions()
    assert "store/datasets/celeba/v1/manifest.json" in keys
    assert {f"store/datasets/celeba/v1/{s['path']}" for s in manifest["shards"]} <= set(keys)
    assert json.loads(s3.client.get_object(
        Bucket=s3.name, Key="store/datasets/celeba/v1/manifest.json")["Body"].read()) == manifest
    prepare_dataset(config)
    assert s3.versions() == keys, "a second run must not write any object again"


@pytest.mark.parametrize("workers", [1, 2])
def test_cli_preprocess(celeba_root, tmp_path, workers):
    result = subprocess.run(  # a relative source, as a user in the data folder types it
        [sys.executable, "-m", "stargan_core.cli", "preprocess", "celeba", "--out",
         str(tmp_path), "--image-size", "32", "--workers", str(workers)],
        capture_output=True, text=True, cwd=celeba_root.parent,
        env=os.environ | {"PYTHONPATH": os.getcwd()},
    )
    assert result.returncode == 0, result.stderr
    assert "120 images (test 12, train 108) of 120 inputs" in result.stdout
    out = tmp_path / "datasets" / "celeba" / "v1"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == str(celeba_root)
    assert all(i.startswith("img_align_celeba/") for i in shard_ids(out, manifest))
    assert manifest["image"]["crop"] == 178 and manifest["parameters"]["format"] == "celeba"
