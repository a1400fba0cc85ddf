"""The registered model's inputs, in an MLflow registry (a SQLite store)."""

from __future__ import annotations

import io

import mlflow
import pandas as pd
import pytest
from PIL import Image


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
