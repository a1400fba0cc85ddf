"""The registered model's inputs, and promotion in the MLflow registry (a SQLite store): the
champion moves only for a better version."""

from __future__ import annotations

import io

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from stargan_core.registry import champion_version, promote_if_better

METRIC = "eval/translation_accuracy"


def version_with(client: MlflowClient, accuracy: float | None) -> str:
    """A new version of stargan-celeba whose run has this translation accuracy (or none)."""
    with mlflow.start_run() as run:
        if accuracy is not None:
            mlflow.log_metric(METRIC, accuracy)
    source = f"{run.info.artifact_uri}/generator"
    return str(client.create_model_version("stargan-celeba", source, run.info.run_id).version)


def test_the_champion_moves_only_to_a_better_version(registered_model):
    client = MlflowClient()
    assert champion_version("stargan-celeba", client) == "1"  # its run has no accuracy
    better = version_with(client, 0.8)
    assert promote_if_better("stargan-celeba", better, client=client) == (True, "1")
    for worse in (version_with(client, 0.8), version_with(client, 0.5),
                  version_with(client, None)):  # a tie, a worse one, one never evaluated
        assert promote_if_better("stargan-celeba", worse, client=client) == (False, better)
    assert champion_version("stargan-celeba", client) == better
    best = version_with(client, 0.9)
    assert promote_if_better("stargan-celeba", best, client=client) == (True, better)
    assert promote_if_better("stargan-celeba", best, client=client) == (True, best)  # again


def test_the_registered_model_decodes_every_photo_and_names_each_bad_input(registered_model,
                                                                          bad_photos):
    model = mlflow.pyfunc.load_model("models:/stargan-celeba@champion")
    folder, expected = bad_photos
    for index, (name, reason) in enumerate(sorted(expected.items())):
        request = pd.DataFrame({"image": [(folder / name).read_bytes()], "target": ["Male"]},
                               index=[index])
        if reason is None:
            out = model.predict(request)["image"][index]
            upright = (40, 60) if name == "phone.jpg" else (60, 40)  # EXIF applied
            assert Image.open(io.BytesIO(out)).size == upright, name
        else:  # a clear error naming the row and why, never a crash of the process
            with pytest.raises(mlflow.exceptions.MlflowException, match=f"row {index}: {reason}"):
                model.predict(request)
    with pytest.raises(mlflow.exceptions.MlflowException, match="bytes of an image file"):
        model.predict(pd.DataFrame({"image": ["a path, not bytes"], "target": ["Male"]}))
