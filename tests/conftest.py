"""Shared fixtures: small synthetic data sets, written once per test session."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# No telemetry from the tools under test, ever.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@contextlib.contextmanager
def serving(command: list[str], ping: str, log: Path, env: dict[str, str] | None = None
            ) -> Iterator[None]:
    """Run a server (`{port}` in `command` and `ping` is a free loopback port) until `ping`
    answers; stop its whole process group at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    bin_dir = Path(sys.executable).parent  # the servers' own commands (uvicorn, ...)
    with log.open("w") as out:
        server = subprocess.Popen(
            [part.replace("{port}", port) for part in command], stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            env=os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}"} | (env or {}))
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(ping.replace("{port}", port), timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{command[0]} did not start: {log.read_text()}"
                                           ) from None
                    time.sleep(0.5)
            yield port
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    from stargan_core.synthetic import write_celeba, write_rafd

    root = tmp_path_factory.mktemp("synthetic")
    write_celeba(root / "celeba", num_images=120, seed=3)
    write_rafd(root / "rafd", num_identities=6, seed=3, test_identities=2)
    return root


@pytest.fixture(scope="session")
def celeba_root(synthetic_root):
    return synthetic_root / "celeba"


@pytest.fixture(scope="session")
def rafd_root(synthetic_root):
    return synthetic_root / "rafd"


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3 API server (moto's server mode) on loopback for the whole session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, request):
    """A fresh, versioned bucket on the loopback S3 server; the environment points at it as a
    user's would (AWS_ENDPOINT_URL and credentials for the local server only)."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import s3fs

    # s3fs keeps one client per set of options, with the credentials it found when made: each
    # test gets clients made with its own environment.
    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    client.create_bucket(Bucket=bucket)
    # Versioning shows every rewrite of an object: idempotency tests count versions.
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    yield S3Bucket(bucket, client)
    s3fs.S3FileSystem.clear_instance_cache()


class S3Bucket:
    def __init__(self, name, client):
        self.name, self.client = name, client

    def url(self, *parts: str) -> str:
        return "/".join([f"s3://{self.name}", *parts])

    def upload(self, folder, prefix: str) -> str:
        """Copy a local folder under `prefix`; returns its s3:// URL."""
        from pathlib import Path

        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(folder).as_posix()}"
                self.client.upload_file(str(path), self.name, key)
        return self.url(prefix)

    def versions(self) -> dict[str, int]:
        """Number of versions written per key."""
        counts: dict[str, int] = {}
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.name):
            for v in page.get("Versions", []):
                counts[v["Key"]] = counts.get(v["Key"], 0) + 1
        return counts


@pytest.fixture
def registered_model(tmp_path, monkeypatch):
    """`stargan-celeba` version 1 (an untrained 32 px generator), aliased champion, in a SQLite
    MLflow store that MLFLOW_TRACKING_URI points at."""

    import mlflow
    import torch

    from stargan_core.checkpoint import build_discriminator, build_generator, save_checkpoint
    from stargan_core.config import TrainConfig
    from stargan_core.domains import DomainSpec
    from stargan_core.registry import promote, register
    from stargan_core.serving import log_generator

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = DomainSpec.celeba()
    config = TrainConfig(image_size=32, g_conv_dim=8, d_conv_dim=8, g_repeat_num=1,
                         d_repeat_num=5)
    torch.manual_seed(0)
    state = {"G": build_generator(spec, config).state_dict(),
             "D": build_discriminator(spec, config).state_dict(),
             "spec": spec.to_json(), "config": config.to_dict(), "data_format": "celeba"}
    checkpoint = save_checkpoint(tmp_path / "generator.ckpt", state)
    experiment = mlflow.create_experiment("models", (tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = log_generator(checkpoint)
    version = register(info.model_uri, "stargan-celeba", "an untrained generator for tests")
    promote("stargan-celeba", version)
    return "stargan-celeba"


@pytest.fixture(scope="session")
def bad_photos(tmp_path_factory):
    """A folder of every kind of input a user may bring, good and bad, and what becomes of
    each: `{name: None}` for a photo that must be translated, `{name: reason}` for a rejection.

    `bomb.png` claims 30000x30000 pixels in its header and holds almost no data: torchvision's
    decoder dies of it with SIGSEGV ("Not enough image data"); the input rule refuses it from
    the header."""
    import io
    import struct
    import zlib

    from PIL import Image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    folder = tmp_path_factory.mktemp("bad-photos")
    (folder / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    face = Image.new("RGB", (60, 40), (200, 150, 120))
    face.paste((20, 20, 20), (0, 0, 30, 40))  # left half dark
    exif = face.getexif()
    exif[0x0112] = 6  # a phone photo on its side: upright, it is 40 wide and 60 high
    buffer = io.BytesIO()
    face.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    (folder / "phone.jpg").write_bytes(buffer.getvalue())
    for suffix in ("bmp", "gif", "tiff", "webp", "png"):
        face.save(folder / f"face.{suffix}")
    Image.new("RGB", (10, 10), "gray").save(folder / "tiny.png")
    (folder / "notes.jpg").write_text("not an image at all")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[:200])
    return folder, {"bomb.png": "decompression bomb", "phone.jpg": None, "face.bmp": None,
                    "face.gif": None, "face.tiff": None, "face.webp": None, "face.png": None,
                    "tiny.png": "too small", "notes.jpg": "not an image",
                    "cut.jpg": "truncated or corrupt"}


def training_set(spec, datasets, data_format: str = "imagefolder", size: int = 16,
                 images=None, labels=None):
    """`train()`'s data from data sets made at `size` px (sample images optional)."""
    from stargan_core.data.loading import TrainingData
    from stargan_core.preprocessing import Preprocessing

    return TrainingData(list(datasets), spec, Preprocessing.of(data_format, size), images,
                        labels)
