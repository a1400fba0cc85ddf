"""Every kind of input a user may bring, through every entry point: what became of each.

    python bench/bad_inputs.py [--out DIR]

Writes a folder of inputs (good photos in every file type, and broken, hostile or unusable
ones), an untrained 32 px generator as a checkpoint and as a registered model version (SQLite
MLflow store under DIR), then runs the inputs through `stargan translate`, `stargan
preprocess` (as an ImageFolder), the registered model (one request per input, as the served
model takes them) and the translate-bulk flow, and prints per entry point: tried,
translated or stored, rejected with a reason, lost (neither) and crashes (an entry point that
stopped, or an error that is not a per-input answer).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import sys
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image


def inputs(folder: Path) -> list[str]:
    """The input files: names say what they are."""
    folder.mkdir(parents=True, exist_ok=True)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rng = np.random.default_rng(0)
    face = Image.fromarray(rng.integers(0, 255, (96, 80, 3), dtype=np.uint8))
    for suffix in ("jpg", "png", "webp", "bmp", "gif", "tiff"):
        face.save(folder / f"good.{suffix}")
    face.convert("CMYK").save(folder / "cmyk.jpg")
    face.convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(np.arange(96 * 80, dtype=np.uint16).reshape(96, 80) * 8).save(
        folder / "sixteen-bit.png")
    face.convert("P").save(folder / "palette.png")
    exif = face.getexif()
    exif[0x0112] = 6
    face.save(folder / "rotated-exif.jpg", exif=exif.tobytes())
    Image.new("RGB", (7000, 6000), (120, 100, 90)).save(folder / "huge-42mp.jpg", quality=50)
    (folder / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    Image.new("RGB", (10, 10), "gray").save(folder / "tiny.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image at all")
    buffer = io.BytesIO()
    face.save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:300])
    Image.fromarray(rng.random((96, 80), dtype=np.float32)).save(folder / "float.tiff")
    (folder / "notes.txt").write_text("a file of another type")
    return sorted(p.name for p in folder.iterdir())


def checkpoint_and_model(out: Path) -> tuple[Path, str]:
    import mlflow
    import torch

    from stargan_core.checkpoint import build_discriminator, build_generator, save_checkpoint
    from stargan_core.config import TrainConfig
    from stargan_core.domains import DomainSpec
    from stargan_core.registry import promote, register
    from stargan_core.serving import log_generator

    spec = DomainSpec.celeba()
    config = TrainConfig(image_size=32, g_conv_dim=8, d_conv_dim=8, g_repeat_num=1,
                         d_repeat_num=5)
    torch.manual_seed(0)
    state = {"G": build_generator(spec, config).state_dict(),
             "D": build_discriminator(spec, config).state_dict(),
             "spec": spec.to_json(), "config": config.to_dict(), "data_format": "imagefolder"}
    checkpoint = save_checkpoint(out / "generator.ckpt", state)
    experiment = mlflow.create_experiment("bad-inputs", (out / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = log_generator(checkpoint)
    version = register(info.model_uri, "bad-inputs", "an untrained generator")
    promote("bad-inputs", version)
    return checkpoint, "models:/bad-inputs@champion"


def through_translate(folder: Path, names: list[str], checkpoint: Path, out: Path) -> Counter:
    from contextlib import redirect_stderr

    from stargan_core.cli import main

    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["translate", "--checkpoint", str(checkpoint), "--input", str(folder),
                     "--target", "Male", "--out", str(out), "--framing", "celeba",
                     "--device", "cpu"])
    done = {p.name for p in (out / "Male").iterdir()} if (out / "Male").is_dir() else set()
    skipped = {line.split(": ", 1)[0].rsplit("/", 1)[-1] for line in err.getvalue().splitlines()
               if line.startswith("skipped ")}
    return tally(names, lambda n: any(d.startswith(n) for d in done), lambda n: n in skipped,
                 crashed=code != 0)


def through_preprocess(folder: Path, names: list[str], out: Path) -> Counter:
    import shutil

    import pyarrow.parquet as pq

    from stargan_core.cli import main

    for i, name in enumerate(names):  # an ImageFolder needs two domains
        layout = out / "raw" / "train" / ("a", "b")[i % 2]
        layout.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / name, layout / name)
    code = main(["preprocess", str(out / "raw"), "--out", str(out / "store"), "--format",
                 "imagefolder", "--image-size", "32", "--workers", "1"])
    version = out / "store" / "datasets" / "raw" / "v1"
    stored = {str(i).rsplit("/", 1)[-1] for f in version.rglob("part-*.parquet")
              for i in pq.read_table(f, columns=["image_id"])["image_id"].to_pylist()}
    rejected = {str(s).rsplit("/", 1)[-1] for s in pq.read_table(
        version / "rejected.parquet")["source"].to_pylist()} if version.is_dir() else set()
    return tally(names, stored.__contains__, rejected.__contains__, crashed=code != 0)


def through_model(folder: Path, names: list[str], uri: str) -> Counter:
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(uri)
    counts: Counter = Counter(tried=len(names))
    for name in names:
        request = pd.DataFrame({"image": [(folder / name).read_bytes()], "target": ["Male"]})
        try:
            model.predict(request, params={"framing": "celeba"})
            counts["translated or stored"] += 1
        except mlflow.exceptions.MlflowException as error:  # an HTTP 400 naming the row
            counts["rejected with reason"] += "row 0: " in str(error)
            counts["crashes"] += "row 0: " not in str(error)
        except Exception:  # an HTTP 500
            counts["crashes"] += 1
    counts["lost"] = counts["tried"] - counts["translated or stored"] - counts[
        "rejected with reason"] - counts["crashes"]
    return counts


def through_bulk(folder: Path, names: list[str], uri: str, out: Path) -> Counter:
    import pyarrow.parquet as pq

    from flows.translate_bulk import translate_bulk

    try:
        manifest = translate_bulk(input_url=str(folder), model_uri=uri, output_root=str(out),
                                  targets=["Male"], workers=1, device="cpu", framing="celeba")
    except Exception:
        return Counter(tried=len(names), crashes=1)
    root = next(p.parent for p in out.rglob("manifest.json"))
    done = {str(s).rsplit("/", 1)[-1] for f in root.glob("part-*.parquet")
            for s in pq.read_table(f, columns=["source"])["source"].to_pylist()}
    rejected = {str(s).rsplit("/", 1)[-1] for s in pq.read_table(
        root / manifest["rejected"]["path"])["source"].to_pylist()}
    return tally(names, done.__contains__, rejected.__contains__)


def tally(names, translated, rejected, crashed: bool = False) -> Counter:
    counts: Counter = Counter(tried=len(names), crashes=int(crashed))
    for name in names:
        if translated(name):
            counts["translated or stored"] += 1
        elif rejected(name):
            counts["rejected with reason"] += 1
        else:
            counts["lost"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bad-inputs-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out / 'mlflow.db'}")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    folder = out / "inputs"
    names = inputs(folder)
    checkpoint, uri = checkpoint_and_model(out)
    rows = {"stargan translate": through_translate(folder, names, checkpoint, out / "t"),
            "stargan preprocess": through_preprocess(folder, names, out / "p"),
            "registered / served model": through_model(folder, names, uri),
            "translate-bulk flow": through_bulk(folder, names, uri, out / "b")}
    columns = ["tried", "translated or stored", "rejected with reason", "lost", "crashes"]
    print(f"{len(names)} inputs: {', '.join(names)}")
    print("| entry point | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, counts in rows.items():
        print(f"| {name} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    json.dump({k: dict(v) for k, v in rows.items()}, sys.stderr)


if __name__ == "__main__":
    main()
