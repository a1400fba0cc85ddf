"""The rule that turns one input file into one stored image, or rejects it with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from stargan_core.io.images import ImageRule, RejectedImage, decode_rgb
from stargan_core.preprocessing import Preprocessing, prepare_image

PNG = ImageRule(image_size=32, encoding="png")


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format, **options)
    return out.getvalue()


def stored(data: bytes, rule: ImageRule = PNG, framing: str = "center") -> np.ndarray:
    image = Image.open(io.BytesIO(prepare_image(data, rule, framing)))
    assert image.mode == "RGB"
    return np.asarray(image)


def test_rgb_is_resized_to_a_square_of_the_stored_size():
    data = encode(Image.new("RGB", (64, 48), (10, 200, 30)), "JPEG", quality=100)
    pixels = stored(data, ImageRule(image_size=32, encoding="jpeg"))
    assert pixels.shape == (32, 32, 3)
    assert np.abs(pixels.astype(int) - [10, 200, 30]).max() <= 4


def test_celeba_crop_keeps_the_centre():
    image = Image.new("RGB", (178, 218), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 178, 20))  # a band above the central 178x178 square
    pixels = stored(encode(image), framing="celeba")
    assert (pixels[..., 2] < 10).all(), "the band outside the crop must be cut away"


def test_celeba_crop_of_a_larger_aligned_face_is_the_178_square_at_its_scale():
    image = Image.new("RGB", (356, 436), (0, 0, 255))
    image.paste((255, 0, 0), (0, 40, 356, 396))  # the 178 px square of 178x218, twice as big
    pixels = stored(encode(image), framing="celeba")
    assert (pixels[..., 0] > 245).all() and (pixels[..., 2] < 10).all()


def test_a_stored_image_is_what_the_model_sees_of_the_raw_file(celeba_root):
    """One preprocessing: a model reading a lossless shard of its own size sees exactly the
    pixels it sees when it frames the raw file itself (training on raw folders, translation).
    """
    for name in ("000001.jpg", "000002.jpg"):
        data = (celeba_root / "img_align_celeba" / name).read_bytes()
        raw = Preprocessing("celeba", 32)(decode_rgb(data))
        shard = Preprocessing("center", 32)(decode_rgb(prepare_image(data, PNG, "celeba")))
        assert torch.equal(raw, shard)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("L", (40, 40), 100), (100, 100, 100)),
        (Image.new("1", (40, 40), 1), (255, 255, 255)),
        (Image.new("LA", (40, 40), (0, 0)), (255, 255, 255)),  # transparent over white
        (Image.new("RGBA", (40, 40), (255, 0, 0, 255)), (255, 0, 0)),
        (Image.new("RGBA", (40, 40), (255, 0, 0, 0)), (255, 255, 255)),
        (Image.new("I;16", (40, 40), 65535), (255, 255, 255)),
        (Image.new("I;16", (40, 40), 32896), (128, 128, 128)),  # scaled, not clipped
        (Image.new("P", (40, 40), 0), (0, 0, 0)),
    ],
    ids=["L", "1", "LA-transparent", "RGBA-opaque", "RGBA-transparent", "I16-max", "I16-mid",
         "P"],
)
def test_other_modes_are_converted_to_rgb(image, expected):
    assert (stored(encode(image)) == expected).all()


def test_palette_with_a_transparent_colour_is_composited_over_white():
    image = Image.new("P", (40, 40), 3)
    image.putpalette([0, 0, 0] * 256)
    assert (stored(encode(image, transparency=3)) == 255).all()


def test_cmyk_is_converted():
    pixels = stored(encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG", quality=100),
                    PNG)
    assert pixels[..., 0].min() > 240 and pixels[..., 1:].max() < 15  # red


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 30), (0, 255, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90: the stored image must come out upright, not squashed
    image.paste((255, 0, 0), (0, 0, 30, 30))  # left half red
    pixels = stored(encode(image, "JPEG", quality=100, exif=exif.tobytes()), PNG)
    # Rotated 90 degrees clockwise, the red half is on top; the centre crop keeps the middle.
    assert pixels[:4, :, 0].mean() > 200 and pixels[-4:, :, 1].mean() > 200


def truncated(format: str, keep: float | int = 0.5) -> bytes:
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), format)
    return data[: keep if isinstance(keep, int) else int(len(data) * keep)]


@pytest.mark.parametrize(
    ("data", "rule", "reason"),
    [
        (b"", PNG, "empty file"),
        (b"name,value\n1,2\n", PNG, "not an image"),
        (truncated("JPEG"), PNG, "truncated or corrupt"),
        (truncated("PNG", 20), PNG, "truncated or corrupt"),  # cut inside the header
        (truncated("WEBP", 40), PNG, "truncated or corrupt"),
        (encode(Image.new("RGB", (2000, 1000))), ImageRule(32, max_pixels=1_000_000),
         "decompression bomb"),
        (encode(Image.new("F", (40, 40)), "TIFF"), PNG, "unsupported mode"),
        (encode(Image.new("RGB", (15, 20))), PNG, "too small"),
    ],
    ids=["empty", "text", "truncated", "png-header", "webp-header", "bomb", "float",
         "too-small"],
)
def test_bad_inputs_are_rejected_with_a_reason(data, rule, reason):
    with pytest.raises(RejectedImage) as error:
        prepare_image(data, rule)
    assert error.value.reason == reason


def test_enlargement_up_to_the_limit_is_allowed():
    data = encode(Image.new("RGB", (16, 20)))
    assert stored(data).shape == (32, 32, 3)  # 2x
    with pytest.raises(RejectedImage, match="too small"):
        prepare_image(data, ImageRule(32, max_upscale=1.0))
