"""The stargan-pipeline flow end to end on local storage and a SQLite MLflow store."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from PIL import Image

from flows.pipeline import main, stargan_pipeline
from stargan_core.registry import champion_version

SMALL = {"num_iters": 10, "batch_size": 8, "n_critic": 1, "checkpoint_every": 5,
         "sample_every": 5, "g_conv_dim": 8, "d_conv_dim": 8, "g_repeat_num": 1}
EVALUATION = {"images": 48, "classifier_steps": 30}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("STARGAN_STORAGE_URL", str(tmp_path / "storage"))
    monkeypatch.chdir(tmp_path)  # a SQLite store keeps new experiments' artifacts in ./mlruns
    return tmp_path


def test_prepares_trains_promotes_and_translates_held_out_faces(prefect_server, store):
    first = stargan_pipeline(synthetic_images=120, options=SMALL, evaluation=EVALUATION,
                             workers=2, device="cpu",
                             targets=["Blond_Hair", "Male=0"])
    # Synthetic faces make their own data set and model: never a real model's rival.
    assert first["model_name"] == "stargan-demo" and first["version"] == "1"
    assert first["dataset"].endswith("/datasets/synthetic-celeba/v1")
    assert first["promoted"] and first["champion"] == "1" and first["review"] == "first version"
    # What the flow reports is what the run logged and what the model card shows.
    client = MlflowClient()
    accuracy = first["metrics"]["eval/translation_accuracy"]
    assert client.get_run(first["run_id"]).data.metrics["eval/translation_accuracy"] == accuracy
    card = client.get_model_version("stargan-demo", "1").description
    assert f"| **all** | {accuracy:.1%} |" in card
    # Synthetic faces have ground truth: fidelity beside doing nothing, at both sizes.
    assert {"eval/psnr", "eval/psnr_do_nothing", "eval/psnr_full", "eval/preservation"} <= set(
        first["metrics"])
    assert first["rows"] == 12 * 2  # the 12 held-out faces (10 %) x 2 targets
    manifest = json.loads((store / "storage/translations/synthetic-celeba-v1/stargan-demo-v1"
                           / "manifest.json").read_text())
    assert manifest["split"] == "test" and manifest["model"]["requested"] \
        == "models:/stargan-demo@champion"
    with Image.open(first["contact_sheet"]) as sheet:
        assert sheet.width == 2 + 3 * (160 + 2)  # input + 2 targets

    # Again: the data set is complete (nothing is prepared twice), a second version is
    # trained, reviewed against the champion on the same evidence, and becomes champion only
    # when it is worse in no metric.
    second = stargan_pipeline(synthetic_images=120, options=SMALL | {"seed": 1},
                              evaluation=EVALUATION, workers=2, device="cpu",
        targets=["Blond_Hair", "Male=0"])
    assert second["version"] == "2" and second["review"] in ("promote", "keep")
    assert second["promoted"] == (second["review"] == "promote")
    assert champion_version("stargan-demo", client) == ("2" if second["promoted"] else "1")
    version = client.get_model_version("stargan-demo", "2")
    assert version.tags["stargan.review"] == second["review"]
    assert version.tags["stargan.review.champion"] == "1"
    assert {f"stargan.review.{m}" for m in ("translation_accuracy", "preservation", "psnr",
                                             "psnr_full")} <= set(version.tags)
    assert "## Review against the champion" in version.description


def test_the_command_line_says_where_to_look(prefect_server, store, capsys, monkeypatch):
    import flows.pipeline

    real = flows.pipeline.stargan_pipeline
    monkeypatch.setattr(flows.pipeline, "stargan_pipeline", lambda **kw: real(**kw | {
        "options": SMALL | kw["options"].model_dump(exclude_none=True),
        "evaluation": EVALUATION, "device": "cpu"}))
    assert main(["--images", "120", "--num-iters", "10", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "target accuracy" in out and "contact-sheet.png" in out
    assert "PSNR to the truth" in out and "doing nothing" in out  # synthetic: ground truth
    assert f"mlflow ui --backend-store-uri sqlite:///{store / 'mlflow.db'}" in out
