"""Bulk translation without a server: partitions, output shards and files, the rejected list,
re-runs, and partition retries on an in-process Dask cluster."""

from __future__ import annotations

import dataclasses
import io
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import stargan_core.bulk.partition
from stargan_core.bulk import (
    BulkConfig,
    committed_job,
    default_job,
    finish_job,
    job_url,
    parse_targets,
    plan_job,
    translate_partition,
)
from stargan_core.bulk.job import JobClash
from stargan_core.bulk.plan import input_framing
from stargan_core.data.prepare import PrepareConfig, prepare_dataset
from stargan_core.domains import DomainError
from stargan_core.io.images import ImageRule
from stargan_core.io.sample import DataFormatError
from stargan_core.lease import LEASES, OutputBusy
from stargan_core.registry import resolve_model
from stargan_core.serving import load_registered
from stargan_core.targets import single_targets


@pytest.fixture
def photos(celeba_root, tmp_path):
    """31 JPEGs (one named like a glob pattern), 2 PNGs in a subfolder, a corrupt JPEG and a
    text file."""
    folder = tmp_path / "photos"
    shutil.copytree(celeba_root / "img_align_celeba", folder,
                    ignore=lambda d, names: sorted(names)[30:])
    shutil.copy(folder / "000001.jpg", folder / "x [1] *.jpg")
    (folder / "png").mkdir()
    for i in (1, 2):
        Image.new("RGB", (178, 218), (40 * i, 90, 160)).save(folder / "png" / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    (folder / "notes.txt").write_text("not an image")
    return folder


def job(model, input_url, output_root, targets=("Blond_Hair", "Male=0"), **options):
    return BulkConfig(str(input_url), job_url(str(output_root), "faces", model), model,
                      parse_targets(model, targets), **options)


def translated(config, partition, model):
    """A partition translated with the model's editor of its framing, as a worker does."""
    return translate_partition(config, partition, model.framed(input_framing(config, partition)),
                               model.judge)


def run(config, model):
    plan = plan_job(config)
    results = [translated(config, p, model) for p in plan.partitions]
    return plan, results, finish_job(plan, results, sample_rows=4)


def rows_of(output):
    tables = [pq.read_table(p) for p in sorted(output.glob("part-*.parquet"))]
    return [row for t in tables for row in t.to_pylist()]


def test_every_input_into_every_target_once_with_files_named_after_the_inputs(
        registered_model, photos, tmp_path):
    model = resolve_model("models:/stargan-celeba@champion")
    assert model.version == "1" and model.requested == "models:/stargan-celeba@champion"
    config = job(model, photos, tmp_path / "out", output_format="both", batch_size=8,
                 files_per_partition=10)
    plan, results, manifest = run(config, load_registered(model.uri, "cpu"))
    output = tmp_path / "out" / "translations" / "faces" / "stargan-celeba-v1"

    assert len(plan.partitions) == 4  # 34 image files in chunks of 10
    rows = rows_of(output)
    pairs = Counter((r["image_id"], r["target"]) for r in rows)
    assert len(pairs) == 33 * 2 and set(pairs.values()) == {1}  # every pair exactly once
    assert ("x [1] *.jpg", "Blond_Hair") in pairs  # a name is never a glob pattern
    assert {r["model_name"] for r in rows} == {"stargan-celeba"}
    assert {r["model_version"] for r in rows} == {"1"}
    row = next(r for r in rows if r["image_id"] == "png/1.png" and r["target"] == "Male=0")
    assert row["image"]["path"] == "Male=0/png/1.png"
    assert row["source"] == f"{photos}/png/1.png"
    # Each translation keeps its input's name and file type, in the shard and as a file.
    assert Image.open(io.BytesIO(row["image"]["bytes"])).format == "PNG"
    assert (output / "Male=0" / "png" / "1.png").read_bytes() == row["image"]["bytes"]
    with Image.open(output / "Blond_Hair" / "000001.jpg") as image:  # at the input's size
        assert image.format == "JPEG" and image.size == (178, 218)
    assert (row["height"], row["width"]) == Image.open(photos / "png" / "1.png").size[::-1]
    assert len(list((output / "Blond_Hair").rglob("*.*"))) == 33

    assert manifest["inputs"] == 35 and manifest["rows"] == 66
    assert manifest["model"] == {"name": "stargan-celeba", "version": "1",
                                 "uri": "models:/stargan-celeba/1",
                                 "requested": "models:/stargan-celeba@champion",
                                 "run_id": model.run_id}
    assert manifest["rejected"]["by_reason"] == {"not an image file": 1, "not an image": 1}
    rejected = pq.read_table(output / "rejected.parquet").to_pylist()
    assert sorted(r["source"].rsplit("/", 1)[-1] for r in rejected) == ["broken.jpg", "notes.txt"]
    assert [s["path"] for s in manifest["shards"]] == [f"part-0000{i}.parquet" for i in range(4)]
    # Other tools read the shards: `datasets` sees the image column as images.
    shard = datasets.Dataset.from_parquet(str(output / "part-00003.parquet"),
                                          cache_dir=str(tmp_path / "hf-cache"))
    assert shard.features["image"] == datasets.Image() and shard[0]["image"].size == (178, 218)
    with Image.open(output / "contact-sheet.png") as sheet:  # 4 rows x (input + 2 targets)
        assert sheet.size == (2 + 3 * (160 + 2), 16 + 2 + 4 * (160 + 2))


def test_bad_inputs_are_listed_with_their_reason_and_every_photo_is_translated(
        registered_model, bad_photos, tmp_path):
    folder, expected = bad_photos
    model = resolve_model("models:/stargan-celeba@champion")
    config = job(model, folder, tmp_path / "out", targets=["Male"], output_format="both",
                 framing="celeba")  # noise photos, not faces
    plan, _, manifest = run(config, load_registered(model.uri, "cpu"))
    output = Path(config.output)
    rejected = {r["source"].rsplit("/", 1)[-1]: r["reason"]
                for r in pq.read_table(output / "rejected.parquet").to_pylist()}
    assert rejected == {name: reason for name, reason in expected.items() if reason}
    # BMP, GIF and TIFF are translated (GIF and TIFF written as PNG), the phone photo upright,
    # and the contact sheet, which decodes them again, is written with the manifest.
    rows = {r["image_id"]: r for r in rows_of(output)}
    assert rows.keys() == {name for name, reason in expected.items() if reason is None}
    assert rows["face.gif"]["image"]["path"] == "Male/face.gif.png"
    assert Image.open(io.BytesIO(rows["face.tiff"]["image"]["bytes"])).format == "PNG"
    assert Image.open(output / "Male" / "face.bmp").format == "BMP"
    assert (rows["phone.jpg"]["width"], rows["phone.jpg"]["height"]) == (40, 60)
    assert manifest["inputs"] == len(expected) and manifest["rows"] == len(rows)
    assert (output / "contact-sheet.png").exists()


def test_image_files_in_the_type_asked_for(registered_model, photos, tmp_path):
    model = resolve_model("models:/stargan-celeba@champion")
    config = job(model, photos / "png", tmp_path / "out", targets=["Male"],
                 output_format="both", file_format="jpeg", quality=90)
    run(config, load_registered(model.uri, "cpu"))
    output = Path(config.output)
    row = next(r for r in rows_of(output) if r["image_id"] == "1.png")
    assert row["image"]["path"] == "Male/1.png.jpg"
    with Image.open(output / "Male" / "1.png.jpg") as image:
        assert image.format == "JPEG" and image.size == (178, 218)
    # Another type is another job: the folder's job is not silently replaced.
    with pytest.raises(JobClash):
        committed_job(plan_job(job(model, photos / "png", tmp_path / "out", targets=["Male"],
                                   output_format="both", file_format="png")))


def test_a_rerun_writes_nothing_and_changed_inputs_rewrite_only_their_partitions(
        registered_model, photos, tmp_path):
    model = resolve_model("models:/stargan-celeba/1")
    generator = load_registered(model.uri, "cpu")
    config = job(model, photos, tmp_path / "out", output_format="both", files_per_partition=10)
    first = run(config, generator)[2]
    output = tmp_path / "out" / "translations" / "faces" / "stargan-celeba-v1"
    stamps = {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()}

    again = plan_job(config)
    assert committed_job(again) == first  # complete: the flow stops here
    results = [translated(config, p, generator) for p in again.partitions]
    assert not any(r.written for r in results)
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()} == stamps

    # A landing folder that changed: only the partition whose files changed is written again.
    (photos / "png" / "2.png").unlink()
    changed = plan_job(config)
    assert committed_job(changed) is None and not (output / "manifest.json").exists()
    results = [translated(config, p, generator) for p in changed.partitions]
    assert [r.written for r in results] == [False, False, False, True]
    manifest = finish_job(changed, results)
    assert manifest["rows"] == 64 and len(rows_of(output)) == 64
    assert (output / "part-00000.parquet").stat().st_mtime_ns == stamps[
        output / "part-00000.parquet"]


def test_another_job_in_the_same_folder_is_refused_unless_it_overwrites(
        registered_model, photos, tmp_path):
    model = resolve_model("models:/stargan-celeba@champion")
    generator = load_registered(model.uri, "cpu")
    run(job(model, photos, tmp_path / "out", output_format="both", files_per_partition=10),
        generator)
    output = tmp_path / "out" / "translations" / "faces" / "stargan-celeba-v1"
    other = job(model, photos, tmp_path / "out", targets=["Blond_Hair"], output_format="both",
                files_per_partition=10)
    with pytest.raises(JobClash, match="holds translations of .*photos into Blond_Hair, "
                                       "Male=0 .both.: choose another job name"):
        committed_job(plan_job(other))
    assert (output / "manifest.json").exists() and (output / "Male=0").is_dir()

    replacing = dataclasses.replace(other, overwrite=True)
    plan = plan_job(replacing)
    assert committed_job(plan) is None and not (output / "manifest.json").exists()
    manifest = finish_job(plan, [translated(replacing, p, generator)
                                 for p in plan.partitions])
    assert manifest["targets"] == ["Blond_Hair"] and manifest["rows"] == 33
    assert not (output / "Male=0").exists()  # what the new job does not have is gone
    assert len(list((output / "Blond_Hair").rglob("*.*"))) == 33


def test_another_job_is_refused_while_one_writes_the_folder(registered_model, photos, tmp_path):
    model = resolve_model("models:/stargan-celeba@champion")
    first = job(model, photos / "png", tmp_path / "out", targets=["Male"])
    plan = plan_job(first)
    assert committed_job(plan) is None  # to run: the folder's lease is this run's
    other = plan_job(job(model, photos / "png", tmp_path / "out", targets=["Blond_Hair"]))
    with pytest.raises(OutputBusy, match=r"being written by another job: translating .*png into "
                                         r"Male with .* \(parquet\).* choose another job name"):
        committed_job(other)
    generator = load_registered(model.uri, "cpu")
    manifest = finish_job(plan, [translated(first, p, generator)
                                 for p in plan.partitions])
    assert manifest["targets"] == ["Male"] and manifest["rows"] == 2
    assert not (Path(first.output) / LEASES).exists()  # given back
    with pytest.raises(JobClash):  # one after the other: the folder holds the finished job
        committed_job(other)


def test_a_prepared_data_set_is_translated_shard_by_shard(registered_model, celeba_root,
                                                          tmp_path):
    prepared = tmp_path / "store" / "datasets" / "celeba" / "v1"
    source = prepare_dataset(PrepareConfig(str(celeba_root), str(prepared), rule=ImageRule(64),
                                           rows_per_shard=50))
    model = resolve_model("models:/stargan-celeba@champion")
    assert default_job(str(prepared / "manifest.json")) == "celeba-v1"
    config = job(model, prepared, tmp_path / "out", targets=None)  # every single target
    plan, results, manifest = run(config, load_registered(model.uri, "cpu"))
    assert len(plan.partitions) == len(manifest["shards"]) == len(source["shards"]) > 1
    assert [s["inputs"] for s in manifest["shards"]] == [s["rows"] for s in source["shards"]]
    targets = [t.text for t in single_targets(model.spec)]
    assert manifest["targets"] == targets and manifest["rows"] == 120 * len(targets)
    rows = rows_of(tmp_path / "out" / "translations" / "faces" / "stargan-celeba-v1")
    assert Counter(Counter((r["image_id"], r["target"]) for r in rows).values()) == {1: 840}
    assert rows[0]["source"].startswith(str(celeba_root))  # the raw file it came from
    assert not list((tmp_path / "out").rglob("*.jpg"))  # parquet only: no files

    held_out = plan_job(dataclasses.replace(config, split="test"))
    assert [p.split for p in held_out.partitions] == ["test"] * len(held_out.partitions)
    assert held_out.inputs == source["splits"]["test"]["rows"] < 120
    with pytest.raises(DataFormatError, match="has no 'val' split .it has: test, train"):
        plan_job(dataclasses.replace(config, split="val"))


def test_unknown_targets_and_missing_models_say_what_exists(registered_model):
    model = resolve_model("models:/stargan-celeba@champion")
    with pytest.raises(DomainError, match="unknown domain 'Blond' .known: Black_Hair, Blond"):
        parse_targets(model, ["Blond"])
    with pytest.raises(DomainError, match="'Young,Male=0' and 'Male = 0, Young' are the same"):
        parse_targets(model, ["Young,Male=0", "Blond_Hair", "Male = 0, Young"])
    with pytest.raises(LookupError, match="no registered model 'stargan-rafd'.*train-stargan"):
        resolve_model("models:/stargan-rafd@champion")
    with pytest.raises(LookupError, match="no alias 'best' .aliases: challenger -> 1, "
                                          "champion -> 1.*stargan promote"):
        resolve_model("models:/stargan-celeba@best")
    with pytest.raises(LookupError, match="no version 7 .versions: 1"):
        resolve_model("models:/stargan-celeba/7")
    with pytest.raises(ValueError, match="models:/<name>@<alias>"):
        resolve_model("runs:/abc/generator")


def test_a_partition_that_fails_once_is_retried_on_the_cluster(registered_model, photos,
                                                              tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from stargan_core.bulk.cluster import load_model, run_partitions

    real, failures = stargan_core.bulk.partition.write_files, []

    def flaky(fs, files):  # the first upload fails, as a dropped connection would
        if not failures:
            failures.append(len(files))
            raise ConnectionError("connection reset by peer")
        return real(fs, files)

    monkeypatch.setattr(stargan_core.bulk.partition, "write_files", flaky)
    model = resolve_model("models:/stargan-celeba@champion")
    config = job(model, photos, tmp_path / "out", output_format="files", files_per_partition=10)
    plan = plan_job(config)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        results = run_partitions(client, plan, load_model(client, config, "cpu"), retries=1)
    assert failures and sorted(r.path for r in results) == [p.path for p in plan.partitions]
    assert sum(r.rows for r in results) == 66 and all(r.worker for r in results)
    # Files only: the shards hold no image bytes, and the contact sheet reads the files.
    assert all(r["image"]["bytes"] is None for r in rows_of(Path(config.output)))
    finish_job(plan, results, sample_rows=2)
    with Image.open(Path(config.output) / "contact-sheet.png") as sheet:
        assert sheet.size == (2 + 3 * (160 + 2), 16 + 2 + 2 * (160 + 2))


def register_another_version(tmp_path: Path) -> str:
    """Version 2 of stargan-celeba: another untrained generator, with other weights."""
    import mlflow
    import torch

    from stargan_core.checkpoint import load_checkpoint, save_checkpoint
    from stargan_core.registry import register
    from stargan_core.serving import log_generator

    state = load_checkpoint(tmp_path / "generator.ckpt")  # version 1's (the fixture's)
    torch.manual_seed(1)
    state["G"] = {k: torch.randn_like(v) * 0.1 if v.is_floating_point() else v
                  for k, v in state["G"].items()}
    checkpoint = save_checkpoint(tmp_path / "other.ckpt", state)
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("models").experiment_id):
        info = log_generator(checkpoint)
    return register(info.model_uri, "stargan-celeba", "other weights")


def test_the_edit_strength_is_part_of_the_job(registered_model, photos, tmp_path):
    """A version trained with label differences translates at a strength: the manifest says
    which, the translations are not strength 1's, and a job at another strength in the same
    folder is refused. The paper's generator has no strength to scale."""
    import mlflow
    import torch

    from stargan_core.checkpoint import build_discriminator, build_generator, save_checkpoint
    from stargan_core.config import TrainConfig
    from stargan_core.registry import register
    from stargan_core.serving import log_generator

    paper = resolve_model("models:/stargan-celeba/1")
    with pytest.raises(ValueError, match="strength 0.5: models:/stargan-celeba/1 is conditioned "
                                         "on target labels"):
        job(paper, photos, tmp_path / "out", strength=0.5)
    spec = paper.spec
    config = TrainConfig(image_size=32, g_conv_dim=8, d_conv_dim=8, g_repeat_num=1,
                         d_repeat_num=5, g_output="masked", g_conditioning="difference")
    torch.manual_seed(2)
    state = {"G": build_generator(spec, config).state_dict(),
             "D": build_discriminator(spec, config).state_dict(),
             "spec": spec.to_json(), "config": config.to_dict(), "data_format": "celeba"}
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("models").experiment_id):
        info = log_generator(save_checkpoint(tmp_path / "difference.ckpt", state))
    version = register(info.model_uri, "stargan-celeba", "label differences")
    model = resolve_model(f"models:/stargan-celeba/{version}")
    assert model.conditioning == "difference"
    generator = load_registered(model.uri, "cpu")
    output = tmp_path / "out" / "translations" / "faces" / f"stargan-celeba-v{model.version}"
    *_, full = run(job(model, photos, tmp_path / "out", files_per_partition=40), generator)
    images = {(r["image_id"], r["target"]): r["image"]["bytes"] for r in rows_of(output)}
    half = job(model, photos, tmp_path / "out", files_per_partition=40, strength=0.5)
    with pytest.raises(JobClash, match="choose another job name"):
        committed_job(plan_job(half))
    *_, manifest = run(dataclasses.replace(half, overwrite=True), generator)
    assert full["strength"] == 1.0 and manifest["strength"] == 0.5
    halved = {(r["image_id"], r["target"]): r["image"]["bytes"] for r in rows_of(output)}
    assert halved.keys() == images.keys() and len(images) == 33 * 2
    assert sum(halved[k] != images[k] for k in images) > len(images) // 2


def register_judged_version(tmp_path: Path) -> str:
    """Another version of stargan-celeba, registered with a judge (an untrained classifier:
    confidences spread over (0, 1))."""
    import mlflow
    import torch

    from stargan_core.evaluation import AttributeClassifier
    from stargan_core.evaluation.verdicts import Judge
    from stargan_core.registry import register
    from stargan_core.serving import log_generator

    spec = resolve_model("models:/stargan-celeba/1").spec
    torch.manual_seed(3)
    judge = Judge(spec, 32, {0: AttributeClassifier(spec.cls_dim).eval()})
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("models").experiment_id):
        info = log_generator(tmp_path / "generator.ckpt", judge.save(tmp_path / "judge.pt"))
    return register(info.model_uri, "stargan-celeba", "with a judge")


def test_every_output_has_a_verdict_and_doubtful_ones_are_listed_apart(registered_model,
                                                                       photos, tmp_path):
    """Each row carries its verdict; under min_confidence an output is flagged, listed in
    doubtful.parquet and its file goes to doubtful/<target>/; the manifest counts them per
    target. A version without a judge gets the changed share alone, and no min_confidence."""
    unjudged = resolve_model("models:/stargan-celeba/1")
    assert not unjudged.judged
    with pytest.raises(ValueError, match="registered without a judge"):
        job(unjudged, photos, tmp_path / "out", min_confidence=0.5)
    *_, manifest = run(job(unjudged, photos, tmp_path / "plain"), load_registered(
        unjudged.uri, "cpu"))
    plain = rows_of(tmp_path / "plain" / "translations" / "faces" / "stargan-celeba-v1")
    assert all(r["confidence"] is None and r["target_probability"] is None
               and 0 <= r["changed_share"] <= 1 and not r["doubtful"] for r in plain)
    assert manifest["verdicts"]["judge"] is False
    assert manifest["verdicts"]["by_target"]["Male=0"]["mean_confidence"] is None

    model = resolve_model(f"models:/stargan-celeba/{register_judged_version(tmp_path)}")
    assert model.judged
    generator = load_registered(model.uri, "cpu")
    assert generator.judge is not None
    probe = run(job(model, photos, tmp_path / "probe"), generator)[2]
    output = tmp_path / "probe" / "translations" / "faces" / f"stargan-celeba-v{model.version}"
    confidence = sorted(r["confidence"] for r in rows_of(output))
    middle = confidence[len(confidence) // 2]
    *_, manifest = run(job(model, photos, tmp_path / "out", output_format="both",
                           min_confidence=middle), generator)
    output = tmp_path / "out" / "translations" / "faces" / f"stargan-celeba-v{model.version}"
    rows = rows_of(output)
    assert len(rows) == 33 * 2 and probe["rows"] == len(rows)
    for r in rows:
        assert 0 <= r["target_probability"] <= 1 and 0 <= r["kept_probability"] <= 1
        assert r["confidence"] == pytest.approx(r["target_probability"] * r["kept_probability"],
                                                rel=1e-5)
        assert r["doubtful"] == (r["confidence"] < middle)
        folder = "doubtful/" if r["doubtful"] else ""
        assert r["image"]["path"].startswith(folder + r["target"])
        assert (output / r["image"]["path"]).is_file()
    doubtful = pq.read_table(output / "doubtful.parquet").to_pylist()
    assert sorted((d["image_id"], d["target"]) for d in doubtful) == sorted(
        (r["image_id"], r["target"]) for r in rows if r["doubtful"])
    assert 0 < len(doubtful) < len(rows)
    assert {d["path"] for d in doubtful} == {r["image"]["path"] for r in rows if r["doubtful"]}
    judged = manifest["verdicts"]
    assert judged["doubtful"]["count"] == len(doubtful) and judged["min_confidence"] == middle
    assert sum(t["doubtful"] for t in judged["by_target"].values()) == len(doubtful)
    assert judged["by_target"]["Male=0"]["outputs"] == 33
    assert judged["by_target"]["Male=0"]["not_taken"] == sum(
        r["confidence"] < 0.5 for r in rows if r["target"] == "Male=0")


def test_two_jobs_with_different_versions_run_at_once_on_one_cluster(registered_model, photos,
                                                                     tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from distributed import Client, LocalCluster

    from stargan_core.bulk.cluster import PLUGIN, load_model, run_partitions

    assert register_another_version(tmp_path) == "2"
    models = [resolve_model(f"models:/stargan-celeba/{v}") for v in ("1", "2")]
    configs = [job(m, photos, tmp_path / "out", files_per_partition=4) for m in models]
    plans = [plan_job(c) for c in configs]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        # Both versions are loaded before either job runs, on the one worker, and their tasks
        # interleave on it.
        sources = [load_model(client, c, "cpu") for c in configs]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(run_partitions, [client] * 2, plans, sources))
        loaded = client.run(lambda dask_worker: len(dask_worker.plugins[PLUGIN].models))
    assert list(loaded.values()) == [2]
    pictures = []
    for plan, result, model in zip(plans, results, models, strict=True):
        finish_job(plan, result, sample_rows=1)
        rows = rows_of(Path(plan.config.output))
        assert len(rows) == 33 * 2 and {r["model_version"] for r in rows} == {model.version}
        pictures.append({(r["image_id"], r["target"]): r["image"]["bytes"] for r in rows})
    assert all(pictures[0][k] != pictures[1][k] for k in pictures[0])  # each its own weights
    # Version 1's job made exactly what it makes alone.
    alone = job(models[0], photos, tmp_path / "alone", files_per_partition=4)
    run(alone, load_registered(models[0].uri, "cpu"))
    assert {(r["image_id"], r["target"]): r["image"]["bytes"]
            for r in rows_of(Path(alone.output))} == pictures[0]


def test_a_worker_keeps_a_bounded_number_of_versions_and_never_drops_one_in_use(
        registered_model, tmp_path):
    import mlflow

    from stargan_core.bulk.cluster import ModelCache, ModelSource

    register_another_version(tmp_path)
    store = mlflow.get_tracking_uri()
    v1, v2 = (ModelSource(f"models:/stargan-celeba/{v}", "cpu", store, store) for v in "12")
    cache = ModelCache(capacity=1)
    cache.setup(worker=None)
    with cache.use(v1) as first:
        with cache.use(v2):  # over capacity, but both are in use: both stay
            assert list(cache.models) == [v1, v2]
        assert list(cache.models) == [v1]  # v2 is idle and the least recently used
        with cache.use(v1) as again:
            assert again is first  # loaded once
    with cache.use(v2):
        assert list(cache.models) == [v2]


def test_face_framing_edits_the_faces_of_photos_and_lists_photos_without_one(
        registered_model, tmp_path):
    from skimage import data

    folder = tmp_path / "wild"
    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "astronaut.jpg", quality=95)
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    model = resolve_model("models:/stargan-celeba@champion")
    config = job(model, folder, tmp_path / "out", targets=["Male"], output_format="both",
                 framing="face")
    _, _, manifest = run(config, load_registered(model.uri, "cpu"))
    output = Path(config.output)
    rows = rows_of(output)
    assert [r["image_id"] for r in rows] == ["astronaut.jpg"]
    rejected = pq.read_table(output / "rejected.parquet").to_pylist()
    assert [(r["source"].rsplit("/", 1)[-1], r["reason"]) for r in rejected] == [
        ("coffee.png", "no face")]
    with Image.open(output / "Male" / "astronaut.jpg") as image:
        out = np.asarray(image.convert("RGB"), dtype=int)
    original = np.asarray(Image.open(folder / "astronaut.jpg").convert("RGB"), dtype=int)
    assert out.shape == original.shape  # the whole photo, at its size
    assert np.abs(out[320:] - original[320:]).mean() < 2  # far from the face: as it was
    assert manifest["framing"] == "face"


def test_the_workers_of_a_local_cluster_compute_with_their_share_of_the_cores(monkeypatch):
    import torch

    from stargan_core.bulk.cluster import connect, worker_threads
    from stargan_core.threads import threads_for

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the workers would inherit it
    with connect(workers=1, device="cpu") as client:
        assert list(client.run(torch.get_num_threads).values()) == [threads_for(1)]
        assert worker_threads(client) == f"{threads_for(1)} in 1 worker"
