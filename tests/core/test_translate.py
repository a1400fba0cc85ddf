import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stargan_core.config import TrainConfig
from stargan_core.data import read_dataset
from stargan_core.data.dataset import FaceDataset
from stargan_core.domains import DomainSpec
from stargan_core.editing import source_labels
from stargan_core.grids import sample_grid
from stargan_core.model import Discriminator, Generator
from stargan_core.preprocessing import Preprocessing
from stargan_core.targets import single_targets
from stargan_core.translate import collect_inputs, translate_files

CELEBA = Preprocessing("celeba", 32)


@pytest.fixture
def nets():
    torch.manual_seed(0)
    spec = DomainSpec.celeba()
    cfg = TrainConfig(image_size=32, g_conv_dim=4, d_conv_dim=4, g_repeat_num=1, d_repeat_num=5)
    g = Generator(spec.c_dim, 4, 1).eval()
    d = Discriminator(32, spec.cls_dim, 4, 5).eval()
    return g, d, spec, cfg


def test_one_output_per_input_and_target_named_after_the_input(nets, celeba_root, tmp_path):
    g, d, spec, cfg = nets
    images = sorted((celeba_root / "img_align_celeba").iterdir())[:5]
    result = translate_files(g, d, spec, CELEBA, images, ["Blond_Hair", "Male=0,Young"],
                             tmp_path, batch_size=2, grid_rows=3)
    names = sorted(p.name for p in images)
    assert sorted(p.name for p in (tmp_path / "Blond_Hair").iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "Male=0+Young").iterdir()) == names
    assert len(result.outputs) == 10
    with Image.open(tmp_path / "Blond_Hair" / names[0]) as im:
        assert im.size == (178, 218) and im.format == "JPEG"  # the input's own size
    # The grid: a header, 3 rows, input column + 2 target columns, whole photos in 160 px cells.
    with Image.open(result.grid) as grid:
        assert grid.size == ((160 + 2) * 3 + 2, 16 + (160 + 2) * 3 + 2)  # + a header row


def test_outputs_at_the_models_size_on_request_and_the_photo_outside_the_crop_untouched(
        nets, celeba_root, tmp_path):
    g, d, spec, _ = nets
    image = celeba_root / "img_align_celeba" / "000003.jpg"
    translate_files(g, d, spec, CELEBA, [image], ["Male"], tmp_path / "model",
                    output_size="model")
    with Image.open(tmp_path / "model" / "Male" / image.name) as im:
        assert im.size == (32, 32)
    translate_files(g, d, spec, CELEBA, [image], ["Male"], tmp_path / "full", quality=100)
    with Image.open(tmp_path / "full" / "Male" / image.name) as out, Image.open(image) as src:
        out_pixels, src_pixels = np.asarray(out, dtype=float), np.asarray(src, dtype=float)
    # The CelebA crop is the centre 178 px square: the top and bottom 20 rows are the input's
    # (up to JPEG re-encoding at q100), the square itself is the random generator's edit.
    assert np.abs(out_pixels[:18] - src_pixels[:18]).mean() < 1.5
    assert np.abs(out_pixels[24:194] - src_pixels[24:194]).mean() > 10


def test_folder_inputs_keep_their_relative_paths(nets, celeba_root, tmp_path):
    g, d, spec, _ = nets
    src = tmp_path / "in"
    for sub in ("a", "b"):
        (src / sub).mkdir(parents=True)
        shutil.copy(celeba_root / "img_align_celeba" / "000001.jpg", src / sub / "x.jpg")
    (src / "notes.txt").write_text("not an image")
    translate_files(g, d, spec, CELEBA, [src], ["Young=0"], tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out" / "Young=0").as_posix()
                  for p in (tmp_path / "out" / "Young=0").rglob("*.jpg")) == ["a/x.jpg", "b/x.jpg"]


def test_bad_inputs_are_skipped_with_their_reason_and_every_photo_is_translated(
        nets, bad_photos, tmp_path):
    g, d, spec, _ = nets
    folder, expected = bad_photos
    result = translate_files(g, d, spec, CELEBA, [folder], ["Male"], tmp_path / "out",
                             framing="celeba")  # noise, not faces
    reasons = {Path(path).name: reason for path, reason in result.skipped}
    assert reasons.keys() == {name for name, reason in expected.items() if reason}
    assert all(reasons[name].startswith(expected[name]) for name in reasons), reasons
    assert "30000x30000" in reasons["bomb.png"] or "too many pixels" in reasons["bomb.png"]
    # Every photo comes back at its own size, in its own file type (GIF, TIFF: as PNG).
    written = {Path(p).name: p for p in result.outputs}
    assert written.keys() == {"phone.jpg", "face.bmp", "face.gif.png", "face.tiff.png",
                              "face.webp", "face.png"}
    with Image.open(written["face.bmp"]) as image:
        assert image.format == "BMP" and image.size == (60, 40)
    with Image.open(written["face.gif.png"]) as image:
        assert image.format == "PNG" and image.size == (60, 40)
    # The phone photo (stored 60x40) is turned upright by its EXIF tag before it is translated.
    with Image.open(written["phone.jpg"]) as image:
        assert image.size == (40, 60)


def test_input_errors_say_what_to_do(nets, celeba_root, tmp_path):
    g, d, spec, _ = nets
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_inputs([tmp_path / "nope.jpg"])
    img = celeba_root / "img_align_celeba" / "000001.jpg"
    (tmp_path / "other").mkdir()
    shutil.copy(img, tmp_path / "other" / img.name)
    with pytest.raises(ValueError, match="pass their folder instead"):
        collect_inputs([img, tmp_path / "other" / img.name])
    with pytest.raises(ValueError, match="unknown domain 'Purple_Hair'"):
        translate_files(g, d, spec, CELEBA, [img], ["Purple_Hair"], tmp_path / "out")


def test_source_labels_come_from_the_domain_classifier(nets, celeba_root):
    _, d, spec, _ = nets
    raw = read_dataset(celeba_root)
    x = torch.stack([FaceDataset(raw.samples[:4], spec, "celeba", 32)[i][0] for i in range(4)])
    c = source_labels(d, spec, x)
    assert c.shape == (4, 5)
    assert set(c.unique().tolist()) <= {0.0, 1.0}
    assert (c[:, :3].sum(1) <= 1).all()  # at most one hair colour


def test_sample_grid_has_an_input_column_and_one_column_per_target(nets):
    g, _, spec, _ = nets
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    grid = sample_grid(g, spec, x, torch.zeros(2, 5), min_cell=32)
    columns = 1 + len(single_targets(spec))
    assert grid.shape == (3, 2 + 2 * 34, 2 + columns * 34)
    # The first cell is the input itself.
    torch.testing.assert_close(grid[:, 2:34, 2:34], (x[0] + 1) / 2)


@pytest.mark.parametrize("file_format, kind, names", [
    ("png", "PNG", {"face.png", "face.jpg.png", "face.webp.png"}),
    ("jpeg", "JPEG", {"face.png.jpg", "face.jpg", "face.webp.jpg"}),
    ("webp", "WEBP", {"face.png.webp", "face.jpg.webp", "face.webp"}),
])
def test_outputs_in_the_file_type_asked_for(nets, tmp_path, file_format, kind, names):
    g, d, spec, _ = nets
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (90, 70, 3), dtype=np.uint8))
    for suffix in ("png", "jpg", "webp"):
        photo.save(tmp_path / f"face.{suffix}")
    result = translate_files(g, d, spec, CELEBA, [tmp_path / f"face.{s}" for s in
                                                         ("png", "jpg", "webp")],
                             ["Male"], tmp_path / "out", file_format=file_format, quality=80,
                             framing="center")
    assert {Path(p).name for p in result.outputs} == names  # never two inputs on one output
    for path in result.outputs:
        with Image.open(path) as image:
            assert image.format == kind and image.size == (70, 90)
    if kind == "JPEG":  # 4:4:4 chroma at the quality asked for
        from PIL import JpegImagePlugin

        with Image.open(result.outputs[0]) as image:
            assert JpegImagePlugin.get_sampling(image) == 0


def test_webp_is_lossless_at_quality_100_and_lossy_below():
    from stargan_core.io.images import decode_rgb, encode

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    lossless = decode_rgb(encode(image, ".webp", 100)).permute(1, 2, 0).numpy()
    assert (lossless == pixels).all()
    assert len(encode(image, ".webp", 60)) < len(encode(image, ".webp", 100))


def test_reads_and_writes_s3(nets, celeba_root, s3, tmp_path):
    g, d, spec, _ = nets
    inputs = s3.upload(celeba_root / "img_align_celeba", "photos")
    out = s3.url("translated")
    result = translate_files(g, d, spec, CELEBA, [inputs], ["Male=0"], out, grid_rows=2)
    keys = {k for k in s3.versions() if k.startswith("translated/")}
    assert len(result.outputs) == len(list((celeba_root / "img_align_celeba").iterdir()))
    assert "translated/Male=0/000001.jpg" in keys and "translated/grid.png" in keys
    assert result.grid == out + "/grid.png"
    photo = s3.client.get_object(Bucket=s3.name, Key="translated/Male=0/000001.jpg")["Body"]
    assert Image.open(io.BytesIO(photo.read())).size == (178, 218)


def test_files_a_folder_holds_beside_its_images_are_named_not_passed_over(tmp_path):
    from stargan_core.translate import collect_inputs, other_files

    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "notes.txt", ".DS_Store", "sub/readme.md", "sub/b.PNG"):
        (tmp_path / name).write_bytes(b"x")
    assert [name for _, name in collect_inputs([tmp_path])] == ["a.jpg", "sub/b.PNG"]
    assert [Path(p).relative_to(tmp_path).as_posix() for p in other_files([tmp_path])] == [
        "notes.txt", "sub/readme.md"]
