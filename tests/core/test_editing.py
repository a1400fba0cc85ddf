"""Frame a photo, translate at model size, carry the edit back: outputs at the input's size
with every pixel outside the edit as it was."""

import pytest
import torch
from torchvision.transforms import v2

from stargan_core.domains import DomainSpec
from stargan_core.editing import Editor
from stargan_core.io.images import read_rgb
from stargan_core.model import Discriminator, Generator
from stargan_core.preprocessing import Box, Preprocessing
from stargan_core.targets import parse_target, single_targets

CELEBA = Preprocessing("celeba", 32)


def test_the_framing_of_a_celeba_photo_is_the_reference_codes_crop(celeba_root):
    photo = read_rgb(str(celeba_root / "img_align_celeba" / "000001.jpg"))
    assert CELEBA.box("celeba", 178, 218) == Box(0, 20, 178)
    reference = v2.Compose([v2.CenterCrop(178), v2.Resize(32, antialias=True),
                            v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize([0.5] * 3, [0.5] * 3)])
    torch.testing.assert_close(CELEBA(photo), reference(photo),
                               atol=1e-6, rtol=0)


def test_the_celeba_framing_is_scale_invariant_and_never_pads(celeba_root):
    photo = read_rgb(str(celeba_root / "img_align_celeba" / "000001.jpg"))
    double = v2.functional.resize(photo, [436, 356], antialias=True)  # the same face, 2x
    assert CELEBA.box("celeba", 356, 436) == Box(0, 40, 356)
    framing = CELEBA
    assert (framing(double) - framing(photo)).abs().mean() < 0.01  # resampling only
    # A small image is framed within itself: no black border around 94 % of the input.
    assert CELEBA.box("celeba", 40, 40) == Box(3, 3, 33)
    x = framing(torch.full((3, 40, 40), 200, dtype=torch.uint8))
    assert x.min() > 0.5  # every pixel from the image, none from padding (-1)
    # A wide photo: the aligned face's square at the photo's height.
    assert CELEBA.box("celeba", 1024, 768) == Box(198, 70, 627)


def test_no_change_at_model_size_returns_the_photo_bit_for_bit():
    photo = torch.randint(0, 256, (3, 218, 178), dtype=torch.uint8)
    box = CELEBA.box("celeba", 178, 218)
    x = box.cut(photo, 32)
    assert torch.equal(box.paste(photo, x, x), photo)


def test_a_local_change_is_carried_back_inside_the_box_only():
    photo = torch.full((3, 218, 178), 100, dtype=torch.uint8)
    box = CELEBA.box("celeba", 178, 218)
    x = box.cut(photo, 32)
    fake = x.clone()
    fake[:, 8:16, 8:16] += 0.5  # brighter, in one part of the model's square
    out = box.paste(photo, x, fake)
    assert out.shape == photo.shape
    changed = (out != photo).any(0)
    rows, cols = changed.nonzero().unbind(1)
    # The change lands where that part of the square lies in the photo (178/32 px per cell).
    assert rows.min() >= 20 + 40 and rows.max() < 20 + 96
    assert cols.min() >= 40 and cols.max() < 96
    assert out[:, 20 + 67, 67].tolist() == [164] * 3  # +0.5 in [-1, 1] is +63.75 levels
    assert torch.equal(out[:, :20], photo[:, :20]) and torch.equal(out[:, 198:], photo[:, 198:])


def test_a_box_beyond_the_photo_changes_only_what_the_photo_has():
    photo = torch.full((3, 60, 40), 50, dtype=torch.uint8)
    box = Box(-69, -59, 178)  # a square reaching far beyond a 40x60 photo
    x = box.cut(photo, 32)
    out = box.paste(photo, x, torch.ones_like(x))
    assert out.shape == photo.shape and (out == 255).all()


class ZeroMask(Generator):
    """A masked generator whose mask is nowhere open: it must return its input."""

    def forward(self, x, c_trg, c_org=None, with_mask=False):
        return (x, torch.zeros_like(x[:, :1])) if with_mask else x


@pytest.mark.parametrize("size", [(218, 178), (300, 500), (64, 64)])
def test_the_editor_returns_each_photo_at_its_size(size):
    torch.manual_seed(0)
    spec = DomainSpec.celeba()
    g = Generator(spec.c_dim, 8, 1, output="masked", conditioning="difference")
    d = Discriminator(32, spec.cls_dim, 8, 5)
    photo = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    targets = [parse_target(spec, "Blond_Hair"), parse_target(spec, "Male=0")]
    editor = Editor(g, d, spec, CELEBA, framing="celeba")
    full = editor.edit([photo], targets)
    assert [[o.shape for o in per_target] for per_target in full] == [[photo.shape]] * 2
    assert editor.edit([photo], targets, "model")[0][0].shape == (3, 32, 32)
    nothing = Editor(ZeroMask(spec.c_dim, 8, 1, output="masked"), d, spec, CELEBA, "celeba")
    assert torch.equal(nothing.edit([photo], targets)[0][0], photo)


def test_difference_conditioning_asks_for_no_edit_with_equal_labels():
    torch.manual_seed(0)
    g = Generator(5, 8, 1, conditioning="difference")
    x, c = torch.rand(2, 3, 32, 32) * 2 - 1, torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 1]])
    # The same as the zero vector: the labels an image keeps are no input at all.
    torch.testing.assert_close(g(x, c, c), g(x, torch.zeros_like(c), torch.zeros_like(c)))
    with pytest.raises(ValueError, match="needs c_org"):
        g(x, c)


def test_each_framing_frames_the_photo_it_names_and_auto_decides_by_shape():
    center = Preprocessing("center", 32)
    # auto: aligned faces' shape at any scale -> celeba; any other photo -> its faces.
    assert [CELEBA.mode("auto", w, h) for w, h in [(178, 218), (356, 436), (1024, 768),
                                                   (1080, 1350)]] == [
        "celeba", "celeba", "face", "face"]  # 4:5 is 2 % off the 178:218 shape
    assert CELEBA.mode("model", 1024, 768) == "celeba"
    assert center.mode("auto", 1024, 768) == center.mode("model", 64, 64) == "center"
    assert center.mode("face", 1024, 768) == "face"
    assert CELEBA.box("center", 1024, 768) == Box(128, 0, 768)
    assert CELEBA.box("full", 1024, 768) == Box(0, -128, 1024)
    with pytest.raises(ValueError, match="framing 'faces' is not one of auto"):
        CELEBA.mode("faces", 10, 10)
    with pytest.raises(ValueError, match="training framing is one of celeba, center"):
        Preprocessing("face", 32)
    # Saved and read back; what older checkpoints and models saved instead.
    assert Preprocessing.from_dict(CELEBA.to_dict()) == CELEBA
    assert Preprocessing.from_dict({"data_format": "rafd", "image_size": 32}) == center


def test_full_framing_edits_the_whole_photo_and_nothing_beyond_it():
    photo = torch.full((3, 60, 100), 50, dtype=torch.uint8)
    spec = DomainSpec.celeba()
    brighter = Painter(spec.c_dim, 8, 1)
    editor = Editor(brighter, None, spec, CELEBA, "full")
    (box,) = editor.locate(photo)
    assert box == Box(0, -20, 100)
    out = editor.edit([photo], single_targets(spec)[:1], c_org=torch.zeros(1, 5))[0][0]
    assert out.shape == photo.shape and (out > photo).all()  # every pixel of the photo


class Painter(Generator):
    """Makes its whole square brighter."""

    def forward(self, x, c_trg, c_org=None, with_mask=False):
        out = (x + 0.5).clamp(-1, 1)
        return (out, None) if with_mask else out


def test_strength_scales_the_label_difference_a_generator_sees():
    """Strength s gives G the difference s (c_trg - c_org): 0 asks nothing (G's answer to no
    change), 1 is G itself, and an edit scales through the photo editor too."""
    from stargan_core.editing import ScaledEdit, scaled

    torch.manual_seed(0)
    spec = DomainSpec.celeba()
    g = Generator(spec.c_dim, 8, 1, output="masked", conditioning="difference").eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    c_org = torch.tensor([[1.0, 0, 0, 0, 1], [0, 0, 1, 1, 0]])
    c_trg = torch.tensor([[0.0, 1, 0, 0, 1], [0, 0, 1, 0, 0]])
    with torch.no_grad():
        assert scaled(g, 1.0) is g
        assert torch.equal(ScaledEdit(g, 0.0)(x, c_trg, c_org), g(x, c_org, c_org))
        half = c_org + 0.5 * (c_trg - c_org)
        assert torch.equal(ScaledEdit(g, 0.5)(x, c_trg, c_org), g(x, half, c_org))
        assert not torch.equal(ScaledEdit(g, 2.0)(x, c_trg, c_org), g(x, c_trg, c_org))
    photo = torch.randint(0, 256, (3, 218, 178), dtype=torch.uint8)
    editor = Editor(g, None, spec, CELEBA, framing="celeba")
    target = [parse_target(spec, "Blond_Hair")]
    labels = c_org[:1]
    edits = {s: editor.edit([photo], target, c_org=labels, strength=s)[0][0]
             for s in (0.0, 0.5, 1.0)}
    assert torch.equal(edits[1.0], editor.edit([photo], target, c_org=labels)[0][0])
    assert not torch.equal(edits[0.5], edits[1.0]) and not torch.equal(edits[0.0], edits[0.5])
    for bad, message in ((2.5, r"strength 2.5 is not in \[0, 2\]"), (-0.1, "not in")):
        with pytest.raises(ValueError, match=message):
            editor.edit([photo], target, c_org=labels, strength=bad)
    paper = Editor(Generator(spec.c_dim, 8, 1), None, spec, CELEBA, framing="celeba")
    with pytest.raises(ValueError, match="needs a generator conditioned on label differences"):
        paper.edit([photo], target, c_org=labels, strength=0.5)
    assert paper.edit([photo], target, c_org=labels, strength=1.0)  # as trained: any model
