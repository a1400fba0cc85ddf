"""Faces in photos: found in a real photograph, aligned as CelebA's faces are, edited and put
back with every pixel away from the faces unchanged."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torchvision.transforms.v2 import functional as TF

from stargan_core.domains import DomainSpec
from stargan_core.editing import Editor
from stargan_core.faces import FaceDetector
from stargan_core.io.images import decode_rgb
from stargan_core.model import Discriminator, Generator
from stargan_core.preprocessing import Preprocessing
from stargan_core.synthetic.placement import place
from stargan_core.targets import single_targets
from stargan_core.translate import translate_files


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """A real photograph (scikit-image's, 512x512) with one face."""
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def square_corners(face) -> np.ndarray:
    """The corners of the square the model sees, in photo pixels."""
    m = np.linalg.inv(np.vstack([np.array(face.matrix), [0, 0, 1]]))
    return (m @ np.array([[0, 20, 1], [178, 20, 1], [0, 198, 1], [178, 198, 1]]).T)[:2].T


def test_faces_are_found_and_aligned_wherever_they_are_placed(astronaut, detector):
    reference = detector(astronaut)
    assert len(reference) == 1
    points = reference[0].landmarks()  # eyes and mouth
    errors = []
    for scale, angle, offset in [(1.0, 0, (300, 120)), (0.6, 0, (40, 400)), (1.4, 0, (250, 20)),
                                 (1.0, 15, (200, 80)), (0.8, -15, (420, 150)),
                                 (0.5, 30, (500, 300)), (0.9, -30, (150, 20))]:
        canvas, to_canvas = place(astronaut, scale, angle, offset)
        found = detector(canvas)
        assert len(found) == 1, (scale, angle)
        expected = np.hstack([points, np.ones((3, 1))]) @ to_canvas.T
        errors.append(np.abs(found[0].landmarks() - expected).max() / scale)
        # The aligned square is the same face whatever the placement.
        same = (found[0].cut(canvas, 64) - reference[0].cut(astronaut, 64)).abs().mean()
        assert same < 0.1, (scale, angle, float(same))
    assert max(errors) < 3, errors  # pixels of the original photo


def test_threads_detect_at_once_with_networks_of_their_own(astronaut, detector):
    """The partitions a Dask worker runs at once share its detector: each thread gets its own
    OpenCV networks, and finds what one thread alone finds."""
    from concurrent.futures import ThreadPoolExecutor

    photos = [place(astronaut, scale, 0, offset)[0]
              for scale, offset in [(1.0, (300, 120)), (0.6, (40, 400)), (0.8, (420, 150))] * 2]
    alone = [[f.landmarks() for f in detector(p)] for p in photos]
    shared = FaceDetector()

    def detect(photo):
        return [f.landmarks() for f in shared(photo)], id(shared.mtcnn)

    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(detect, photos))
    for (found, _), expected in zip(together, alone, strict=True):
        np.testing.assert_array_equal(np.array(found), np.array(expected))
    assert len({net for _, net in together}) > 1


def test_two_faces_are_both_edited_and_nothing_else(astronaut, detector):
    canvas = torch.full((3, 600, 1100), 90, dtype=torch.uint8)
    small = TF.resize(astronaut, [420, 420], antialias=True)
    canvas[:, 100:520, 40:460] = small
    canvas[:, 150:570, 640:1060] = small
    g = Painter()
    editor = Editor(g, None, DomainSpec.celeba(), Preprocessing("celeba", 32), framing="face")
    regions = editor.locate(canvas)
    assert len(regions) == 2
    out = editor.edit([canvas], single_targets(DomainSpec.celeba())[:1],
                      c_org=torch.zeros(1, 5))[0][0]
    assert out.shape == canvas.shape
    changed = (out != canvas).any(0)
    assert changed[:, :550].any() and changed[:, 550:].any()  # both faces
    inside = torch.zeros_like(changed)
    for face in regions:  # every changed pixel lies in a face's square
        corners = square_corners(face)
        x0, y0 = np.floor(corners.min(0)).astype(int).clip(0)
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
        inside[y0:y1, x0:x1] = True
    assert not (changed & ~inside).any() and not changed[:, 500:600].any()


class Painter(Generator):
    """A generator that makes its whole square brighter: shows where an edit lands."""

    def __init__(self):
        super().__init__(5, 8, 1)

    def forward(self, x, c_trg, c_org=None, with_mask=False):
        out = (x + 0.5).clamp(-1, 1)
        return (out, None) if with_mask else out


def test_a_photo_is_edited_at_its_own_size_and_far_pixels_stay(astronaut, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(astronaut.permute(1, 2, 0).numpy()).rotate(90, expand=True).save(
        buffer, "JPEG", quality=95, exif=_exif_rotated())  # a portrait on its side
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "astronaut.jpg").write_bytes(buffer.getvalue())
    Image.fromarray(data.coffee()).save(tmp_path / "in" / "coffee.png")  # no face
    spec = DomainSpec.celeba()
    # The default framing, auto: a CelebA model frames photos that are not aligned faces by
    # their faces.
    done = []
    result = translate_files(Painter(), Discriminator(32, 5, 8, 3), spec,
                             Preprocessing("celeba", 32), [tmp_path / "in"], ["Male"],
                             tmp_path / "out", file_format="png", progress=done.append)
    assert [p.split("/")[-1] for p in result.outputs] == ["astronaut.jpg.png"]
    assert sum(done) == 2  # the progress bar counts the skipped photo too
    assert result.skipped[0][0].endswith("coffee.png") and "no face" in result.skipped[0][1]
    photo = decode_rgb((tmp_path / "in" / "astronaut.jpg").read_bytes())  # upright
    out = decode_rgb((tmp_path / "out" / "Male" / "astronaut.jpg.png").read_bytes())
    assert out.shape == photo.shape == (3, 512, 512)
    changed = (out != photo).any(0)
    assert changed[60:190, 160:310].float().mean() > 0.9  # the face
    assert not changed[300:].any() and not changed[:, :100].any()  # suit, flag: as they were


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # view rotated 90 degrees clockwise
    return exif.tobytes()


def test_evaluation_sets_of_photos_from_the_wild_are_framed_by_their_faces(astronaut,
                                                                           tmp_path):
    """`stargan evaluate --framing face`: an image folder of unaligned photos is seen as the
    model sees them when translating, each photo's largest face; a photo without one is left
    out and listed."""
    from stargan_core.data import read_dataset
    from stargan_core.evaluation.harness import evaluation_set
    from stargan_core.preprocessing import Framer

    for domain, angle in (("smiling", 0), ("neutral", 15)):
        (tmp_path / domain).mkdir()
        for i, offset in enumerate([(100, 80), (400, 200)]):
            photo, _ = place(astronaut, 0.7, angle, offset)
            Image.fromarray(photo.permute(1, 2, 0).numpy()).save(tmp_path / domain / f"{i}.png")
    Image.fromarray(data.coffee()).save(tmp_path / "neutral" / "coffee.png")
    spec = read_dataset(str(tmp_path), "imagefolder").spec
    framer = Framer(Preprocessing("center", 32), "face")
    found = evaluation_set(str(tmp_path), spec, 32, format="imagefolder", framer=framer)
    assert len(found.train) == len(found.test) == 4  # no test split: the training images
    assert {(p.rsplit("/", 1)[-1], r.split(":")[0]) for p, r in found.rejected} == {
        ("coffee.png", "no face")}
    assert found.truth is None
    # Each image is the aligned face, wherever the photo had it.
    reference = FaceDetector()(astronaut)[0].cut(astronaut, 32)
    assert (found.train.images - reference).abs().mean(dim=(1, 2, 3)).max() < 0.12
    with pytest.raises(ValueError, match="framing 'faces' is not one of"):
        Framer(Preprocessing("center", 32), "faces")
