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
    # The paper's generator sees target labels: its edit has no strength to scale.
    request = pd.DataFrame({"image": [(folder / "phone.jpg").read_bytes()], "target": ["Male"]})
    with pytest.raises(mlflow.exceptions.MlflowException,
                       match="strength 0.5 needs a generator conditioned on label differences"):
        model.predict(request, params={"framing": "celeba", "strength": 0.5})


def test_each_answer_carries_its_verdict(registered_model, bad_photos, tmp_path):
    """The served model answers each row with its judge's verdict; a version logged without a
    judge answers with the changed share alone."""
    from tests.core.test_bulk import register_judged_version

    folder, _ = bad_photos
    photo = (folder / "phone.jpg").read_bytes()
    request = pd.DataFrame({"image": [photo, photo], "target": ["Male", "Blond_Hair"]})
    plain = mlflow.pyfunc.load_model("models:/stargan-celeba/1").predict(
        request, params={"framing": "celeba"})
    assert plain[["target_probability", "kept_probability", "confidence"]].isna().all().all()
    assert plain["changed_share"].between(0, 1).all()
    version = register_judged_version(tmp_path)
    judged = mlflow.pyfunc.load_model(f"models:/stargan-celeba/{version}").predict(
        request, params={"framing": "celeba"})
    assert judged[["target_probability", "kept_probability", "changed_share"]].apply(
        lambda column: column.between(0, 1)).all().all()
    assert np.allclose(judged["confidence"],
                       judged["target_probability"] * judged["kept_probability"])


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


def test_an_unknown_target_is_a_bad_request_that_names_the_known_domains(registered_model,
                                                                        monkeypatch):
    """Through the scoring server's app (`mlflow models serve`'s), without a server."""
    import base64

    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")  # init sets it: undone
    app = scoring_server.init(mlflow.pyfunc.load_model("models:/stargan-celeba@champion"))
    photo = io.BytesIO()
    Image.new("RGB", (178, 218), (120, 90, 60)).save(photo, "JPEG")
    rows = [[base64.b64encode(photo.getvalue()).decode(), target]
            for target in ("Male", "Purple_Hair")]
    with TestClient(app) as client:
        answer = client.post("/invocations", json={
            "dataframe_split": {"columns": ["image", "target"], "data": rows}})
    assert answer.status_code == 400
    error = answer.json()
    assert ("rows [1]: unknown domain 'Purple_Hair' (known: Black_Hair, Blond_Hair, "
            "Brown_Hair, Male, Young)") in error["message"]
    assert "stack_trace" not in error  # a user's mistake, not a server's traceback


def test_a_large_photo_is_served_shrunk_with_bounded_memory(registered_model, tmp_path):
    """A 36 MP photo: shrunk to 16 MP when decoded, it costs the served model about half the
    memory at its peak that the photo at full size costs (measured in the same run)."""
    import os
    import subprocess
    import sys

    from skimage import data

    from stargan_core.serving import MAX_SERVED_PIXELS

    Image.fromarray(data.astronaut()).resize((6000, 6000)).save(tmp_path / "big.jpg",
                                                                quality=90)
    measure = (
        "import io, sys\n"
        "import mlflow, pandas as pd, psutil\n"
        "from PIL import Image\n"
        "import stargan_core.serving\n"
        "if sys.argv[2] == 'full':\n"
        "    stargan_core.serving.MAX_SERVED_PIXELS = 10**12\n"
        "model = mlflow.pyfunc.load_model('models:/stargan-celeba@champion')\n"
        "request = pd.DataFrame({'image': [open(sys.argv[1], 'rb').read()], 'target': ['Male']})\n"
        "before = psutil.Process().memory_info().rss\n"
        "open('/proc/self/clear_refs', 'w').write('5')  # the peak so far: loading's\n"
        "out = model.predict(request, params={'framing': 'face'})['image'][0]\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "grown = int(status) * 1024 - before\n"
        "print(*Image.open(io.BytesIO(out)).size, grown)\n")
    found = {}
    for size in ("full", "bounded"):
        done = subprocess.run([sys.executable, "-c", measure, str(tmp_path / "big.jpg"), size],
                              capture_output=True, text=True, timeout=600,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr
        found[size] = tuple(map(int, done.stdout.split()[-3:]))
    assert found["full"][:2] == (6000, 6000)
    width, height, grown = found["bounded"]
    assert width == height and width >= 3999 and width * height <= MAX_SERVED_PIXELS
    assert grown < 0.8 * found["full"][2], {k: f"{v[2] / 2**20:.0f} MiB" for k, v in found.items()}


def test_a_version_whose_files_are_gone_is_not_promoted_and_jobs_say_which_and_why(
        registered_model, tmp_path, capsys):
    """Version 2's artifacts deleted: `stargan promote` refuses it and the champion stays;
    a job following an alias to it says which version and why, not a raw MlflowException."""
    import shutil

    from mlflow import MlflowClient

    from stargan_core.cli import main
    from stargan_core.registry import register, resolve_model
    from stargan_core.serving import ModelUnavailable, load_registered

    client = MlflowClient()
    first = client.get_model_version("stargan-celeba", "1")
    version = register(first.source, "stargan-celeba", "the same files, registered again")
    assert version == "2"
    assert main(["promote", "stargan-celeba", "2"]) == 0  # it loads: promoted
    assert main(["promote", "stargan-celeba", "1"]) == 0
    shutil.rmtree(tmp_path / "artifacts")  # the artifact store lost the files of both

    assert main(["promote", "stargan-celeba", "2"]) == 2
    assert "models:/stargan-celeba/2 cannot be loaded" in capsys.readouterr().err
    assert str(client.get_model_version_by_alias("stargan-celeba", "champion").version) == "1"
    with pytest.raises(LookupError, match="is version 1, whose files cannot be read"):
        resolve_model("models:/stargan-celeba@champion")
    with pytest.raises(ModelUnavailable, match="models:/stargan-celeba/1 cannot be loaded"):
        load_registered("models:/stargan-celeba/1", "cpu")
