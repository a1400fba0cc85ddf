"""The `stargan` command as a user runs it: a real subprocess, real files."""

import json
import subprocess
import sys

import pytest

from stargan_core.cli import main


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "stargan_core.cli", *args],
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("command",
                         ["synth", "preprocess", "train", "translate", "evaluate", "promote"])
def test_every_command_explains_its_options(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in {"synth": ["--num-images", "--seed"],
                   "preprocess": ["--image-size", "--rows-per-shard", "rejected.parquet",
                                  "AWS_ENDPOINT_URL", "--workers"],
                   "train": ["--preset", "--domains", "--set", "--no-resume", "tiny:", "edit-32:",
                             "manifest.json"],
                   "translate": ["--checkpoint", "--target", "Blond_Hair,Young=0",
                                 "--output-size", "--quality"],
                   "evaluate": ["--classifier-steps", "ground truth", "preservation"],
                   "promote": ["champion", "MLFLOW_TRACKING_URI"]}[command]:
        assert option in out


def test_synth_train_translate_evaluate(tmp_path):
    run("synth", "--out", str(tmp_path / "data"), "--num-images", "64", "--rafd-identities", "2")
    assert (tmp_path / "data" / "celeba" / "list_attr_celeba.txt").is_file()
    assert len(list((tmp_path / "data" / "rafd").rglob("*.jpg"))) == 2 * 8 * 3

    small = ["--set", "image_size=16", "--set", "g_conv_dim=4", "--set", "d_conv_dim=4",
             "--set", "g_repeat_num=1", "--set", "d_repeat_num=4", "--set", "num_workers=0",
             "--set", "sample_every=2", "--set", "checkpoint_every=2", "--batch-size", "4"]
    out = run("train", "--data", str(tmp_path / "data" / "celeba"), "--iters", "4", *small,
              "--out", str(tmp_path / "run")).stdout
    assert "step-0000004.ckpt" in out
    assert (tmp_path / "run" / "samples" / "step-0000004.png").is_file()

    # Running it again with more steps resumes from step 4, and says so.
    out = run("train", "--data", str(tmp_path / "data" / "celeba"), "--iters", "6", *small,
              "--set", "num_iters_decay=1", "--out", str(tmp_path / "run")).stdout
    assert "resuming at step 4 from" in out
    assert (tmp_path / "run" / "checkpoints" / "step-0000006.ckpt").is_file()

    images = tmp_path / "data" / "celeba" / "img_align_celeba"
    out = run("translate", "--checkpoint", str(tmp_path / "run"), "--input",
              str(images / "000001.jpg"), str(images / "000002.jpg"), "--target", "Blond_Hair",
              "--target", "Male=0", "--out", str(tmp_path / "out")).stdout
    assert "wrote 4 images" in out and "grid.png" in out
    assert sorted(p.name for p in (tmp_path / "out" / "Male=0").iterdir()) == [
        "000001.jpg", "000002.jpg"]

    proc = run("evaluate", "--checkpoint", str(tmp_path / "run"), "--data",
               str(tmp_path / "data" / "celeba"), "--classifier-steps", "5")
    metrics = json.loads(proc.stdout)
    assert {"eval/translation_accuracy", "eval/preservation", "eval/psnr",
            "eval/psnr_do_nothing", "eval/psnr_full", "eval/l1"} <= set(metrics)


def test_user_errors_are_one_line_messages(tmp_path):
    proc = run("translate", "--checkpoint", str(tmp_path), "--input", str(tmp_path),
               "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    assert "stargan translate: error: no checkpoint at" in proc.stderr
    assert "Traceback" not in proc.stderr
    for name, data in (("notes.ckpt", b"not a checkpoint"), ("empty.ckpt", b""),
                       ("a.jpg", b"\xff\xd8\xff\xe0 a photo given by mistake")):
        (tmp_path / name).write_bytes(data)
        proc = run("translate", "--checkpoint", str(tmp_path / name), "--input", str(tmp_path),
                   "--out", str(tmp_path / "o"), check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{name} is not a checkpoint" in proc.stderr and "stargan train" in proc.stderr
    proc = run("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"),
               check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = run("train", "--data", str(tmp_path), "--set", "lr=1", "--out", str(tmp_path / "r"),
               check=False)
    assert proc.returncode == 2 and "unknown training option ['lr']" in proc.stderr
    proc = run("train", "--data", str(tmp_path), "--set", "batch_size=many", "--out",
               str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "batch_size: input should be a valid integer" in proc.stderr


def test_joint_training_and_evaluating_either_data_set(celeba_root, rafd_root, tmp_path):
    small = ["--set", "image_size=16", "--set", "g_conv_dim=4", "--set", "d_conv_dim=4",
             "--set", "g_repeat_num=1", "--set", "d_repeat_num=4", "--batch-size", "4"]
    run("train", "--data", str(celeba_root), "--data", str(rafd_root), "--iters", "2", *small,
        "--out", str(tmp_path / "joint"))
    rafd = run("evaluate", "--checkpoint", str(tmp_path / "joint"), "--data", str(rafd_root),
               "--classifier-steps", "2")
    assert '"eval/translation_accuracy/happy"' in rafd.stdout
    assert '"eval/translation_accuracy/Blond_Hair"' not in rafd.stdout  # the judge knows RaFD
    # ... but the truth knows a RaFD face with blond hair: the joint model's edits across sets.
    assert '"eval/cross/change_share_full/Blond_Hair"' in rafd.stdout
    celeba = run("evaluate", "--checkpoint", str(tmp_path / "joint"), "--data",
                 str(celeba_root), "--classifier-steps", "2")
    assert '"eval/translation_accuracy/Blond_Hair"' in celeba.stdout
    # Both synthetic sets have ground truth (fidelity against doing nothing).
    assert "target accuracy" in celeba.stderr and "PSNR to the truth" in celeba.stderr
    assert '"eval/psnr_full_do_nothing/Male:0"' in celeba.stdout
    assert '"eval/cross/change_share_full/happy"' in celeba.stdout
    assert "share of the true change" in rafd.stderr and "PSNR to the truth" in rafd.stderr


def test_train_from_prepared_shards(celeba_root, tmp_path):
    out = run("preprocess", str(celeba_root), "--out", str(tmp_path / "storage"), "--name",
              "faces", "--image-size", "32", "--rows-per-shard", "50").stdout
    manifest = tmp_path / "storage" / "datasets" / "faces" / "v1" / "manifest.json"
    assert f"manifest: {manifest}" in out
    small = ["--set", "image_size=16", "--set", "g_conv_dim=4", "--set", "d_conv_dim=4",
             "--set", "g_repeat_num=1", "--set", "d_repeat_num=4", "--batch-size", "4"]
    out = run("train", "--data", str(manifest), "--iters", "2", *small,
              "--out", str(tmp_path / "run")).stdout
    assert "domains Black_Hair, Blond_Hair, Brown_Hair, Male, Young; 108 images" in out
    assert (tmp_path / "run" / "checkpoints" / "step-0000002.ckpt").is_file()
    # Evaluating on the prepared set: its held-out split, and its ground truth (drawn from the
    # synthetic source it was prepared from).
    proc = run("evaluate", "--checkpoint", str(tmp_path / "run"), "--data",
               str(manifest.parent), "--classifier-steps", "2")
    assert {"eval/translation_accuracy", "eval/psnr_full"} <= set(json.loads(proc.stdout))
    proc = run("evaluate", "--checkpoint", str(tmp_path / "run"), "--data",
               str(tmp_path / "nothing-here"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    # A prepared set's squares are framed already: reframing them is asked of the raw folder.
    proc = run("evaluate", "--checkpoint", str(tmp_path / "run"), "--data",
               str(manifest.parent), "--framing", "face", check=False)
    assert proc.returncode == 2 and "give its raw folder" in proc.stderr, proc.stderr


def test_translate_reports_each_outputs_verdict(registered_model, celeba_root, tmp_path):
    """`--report` with a registered version: its judge's verdicts in report.csv and a line per
    target; a checkpoint without --judge, or a version registered without a judge (the
    champion, by alias), reports the changed share alone; an unknown alias is one line."""
    import csv

    from tests.core.test_bulk import register_judged_version

    version = register_judged_version(tmp_path)
    images = celeba_root / "img_align_celeba"
    inputs = [str(images / f"00000{i}.jpg") for i in range(1, 5)]
    out = run("translate", "--checkpoint", f"models:/stargan-celeba/{version}", "--input",
              *inputs, "--target", "Male", "--target", "Blond_Hair", "--report",
              "--out", str(tmp_path / "out")).stdout
    assert f"judge: models:/stargan-celeba/{version}" in out
    assert "Male: 4 outputs" in out and "mean confidence" in out
    with open(tmp_path / "out" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["target"] for r in rows} == {"Male", "Blond_Hair"}
    for r in rows:
        p, kept = float(r["target_probability"]), float(r["kept_probability"])
        assert 0 <= p <= 1 and 0 <= kept <= 1
        assert float(r["confidence"]) == pytest.approx(p * kept, abs=2e-4)
        assert r["output"].endswith(r["input"].rsplit("/", 1)[1])
    for checkpoint in (str(tmp_path / "generator.ckpt"), "models:/stargan-celeba@champion"):
        out = run("translate", "--checkpoint", checkpoint, "--input", *inputs[:2], "--target",
                  "Male", "--report", "--out", str(tmp_path / "plain")).stdout
        assert "no judge" in out and "Male: 2 outputs, changed" in out
        with open(tmp_path / "plain" / "report.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["confidence"] for r in rows] == ["", ""] and all(r["changed_share"] for r in rows)
    proc = run("translate", "--checkpoint", "models:/stargan-celeba@best", "--input", *inputs,
               "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "has no alias 'best'" in proc.stderr
