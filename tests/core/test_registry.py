"""The registered model's inputs, in an MLflow registry (a SQLite store)."""

from __future__ import annotations

import io
import json

import mlflow
import numpy as np
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
            out = model.predict(request, params={"framing": "celeba"})["image"][index]
            upright = (40, 60) if name == "phone.jpg" else (60, 40)  # EXIF applied
            assert Image.open(io.BytesIO(out)).size == upright, name
        else:  # a clear error naming the row and why, never a crash of the process
            with pytest.raises(mlflow.exceptions.MlflowException, match=f"row {index}: {reason}"):
                model.predict(request, params={"framing": "celeba"})
    with pytest.raises(mlflow.exceptions.MlflowException, match="bytes of an image file"):
        model.predict(pd.DataFrame({"image": ["a path, not bytes"], "target": ["Male"]}))


def test_a_served_version_translates_a_photo_sent_over_http(registered_model, tmp_path):
    """`mlflow models serve` on loopback, and the README's curl line against it."""
    import os
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from tests.conftest import serving

    bin_dir = Path(sys.executable).parent
    with serving([str(bin_dir / "mlflow"), "models", "serve", "-m",
                  "models:/stargan-celeba@champion", "--env-manager", "local",
                  "--host", "127.0.0.1", "--port", "{port}"],
                 "http://127.0.0.1:{port}/ping", tmp_path / "serve.log") as port:
        Image.new("RGB", (178, 218), (120, 90, 60)).save(tmp_path / "photo.jpg")
        # As in the README: the photo as base64 in JSON, the PNG back out of the answer.
        curl = (
            "printf '{\"dataframe_split\": {\"columns\": [\"image\", \"target\"], \"data\": "
            "[[\"%s\", \"Blond_Hair\"]]}}' \"$(base64 -w0 photo.jpg)\" > request.json && "
            f"curl -s http://127.0.0.1:{port}/invocations -H 'Content-Type: application/json' "
            "-d @request.json | python -c 'import base64, json, sys; sys.stdout.buffer.write("
            "base64.b64decode(json.load(sys.stdin)[\"predictions\"][0][\"image\"]))' > blond.png")
        done = subprocess.run(["bash", "-c", curl], cwd=tmp_path, capture_output=True, text=True,
                              env=os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}"})
        assert done.returncode == 0, done.stderr
        assert Image.open(tmp_path / "blond.png").size == (178, 218)  # the photo's own size
        bad = json.dumps({"dataframe_split": {"columns": ["image", "target"],
                                              "data": [["bm9wZQ==", "Male"]]}}).encode()
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations", bad,
                {"Content-Type": "application/json"}), timeout=60)
        assert answer.value.code == 400 and b"row 0: not an image" in answer.value.read()


def test_the_registered_model_edits_every_face_when_asked(registered_model):
    from skimage import data

    model = mlflow.pyfunc.load_model("models:/stargan-celeba@champion")

    def png(pixels) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        return buffer.getvalue()

    out = model.predict(pd.DataFrame({"image": [png(data.astronaut())], "target": ["Male"]}),
                        params={"framing": "face"})
    edited = np.asarray(Image.open(io.BytesIO(out["image"][0])))
    assert edited.shape == data.astronaut().shape
    assert (edited[320:] == data.astronaut()[320:]).all()  # far from the face: bit for bit
    assert (edited[60:190, 160:310] != data.astronaut()[60:190, 160:310]).any()
    with pytest.raises(mlflow.exceptions.MlflowException, match="row 0: no face"):
        model.predict(pd.DataFrame({"image": [png(data.coffee())], "target": ["Male"]}),
                      params={"framing": "face"})
    with pytest.raises(mlflow.exceptions.MlflowException, match="framing 'faces' is not one"):
        model.predict(pd.DataFrame({"image": [png(data.astronaut())], "target": ["Male"]}),
                      params={"framing": "faces"})
