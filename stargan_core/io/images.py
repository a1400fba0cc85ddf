"""The one decoder of every input (training data, `stargan translate`, `stargan evaluate`, the
registered model, translate-bulk, contact sheets) and the preprocessing of stored images.

The rule for inputs that are not plain 8-bit RGB:

- rejected: empty files, files that are not images, truncated or corrupt image data,
  images over `max_pixels` (decompression bombs: checked from the header, before decoding),
  32-bit integer or float images, and images too small to store or translate without
  enlarging them more than `max_upscale` (2) times;
- converted to RGB: greyscale (L, 1, I;16: 16-bit values scaled to 8 bits), palette (P),
  CMYK and YCbCr; images with transparency (LA, PA, RGBA, P with a transparent colour) are
  composited over white;
- the EXIF orientation is applied, so phone photos are stored upright;
- JPEG, PNG, WebP, BMP, GIF and TIFF are read (animations: their first frame); outputs keep
  their input's file type (GIF and TIFF: PNG), or take the one asked for (`output_name`).
"""

from __future__ import annotations

import io
import math
import posixpath
import struct
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field, PositiveInt
from pydantic.dataclasses import dataclass as checked_dataclass
from torchvision.transforms.v2.functional import pil_to_tensor

ENCODINGS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png")}
SUFFIX_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}
# What translations are written as: the input's own type (auto), or one for every output.
FILE_FORMATS = {"auto": None, "png": ".png", "jpeg": ".jpg", "webp": ".webp"}
MAX_UPSCALE = 2.0  # no input is enlarged more than this: it would invent the picture
MAX_PIXELS = 40_000_000  # 40 MP: far above any face photo, far below a decompression bomb
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# What Pillow's decoders raise on damaged data (truncated files, garbled headers or chunks).
DAMAGED = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


class RejectedImage(ValueError):
    """An input that cannot become a stored image: a short reason and the details."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@checked_dataclass(frozen=True)
class ImageRule:
    """How inputs become stored images: size, crop, encoding and the limits of the rule."""

    image_size: PositiveInt = 256
    encoding: Literal[tuple(ENCODINGS)] = "jpeg"
    quality: Annotated[int, Field(ge=1, le=100)] = 95
    max_upscale: Annotated[float, Field(ge=1)] = MAX_UPSCALE
    max_pixels: PositiveInt = MAX_PIXELS

    @property
    def suffix(self) -> str:
        return ENCODINGS[self.encoding][1]


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "F":
        raise RejectedImage("unsupported mode", "F (floating-point image)")
    if image.mode in SIXTEEN_BIT:
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise RejectedImage("unsupported mode", f"{image.mode} with values beyond 16 bits")
        image = Image.fromarray((values >> 8).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise RejectedImage("unsupported mode", f"{image.mode}: {error}") from None


def open_rgb(data: bytes, max_pixels: int = MAX_PIXELS, fit_pixels: int | None = None
             ) -> Image.Image:
    """The upright RGB image of an input file's bytes, or RejectedImage (the rule above); with
    `fit_pixels`, shrunk to at most that many pixels as soon as it is decoded."""
    if not data:
        raise RejectedImage("empty file", "0 bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RejectedImage("not an image", "unknown or unsupported file type") from None
    except Image.DecompressionBombError:
        raise RejectedImage("decompression bomb", "Pillow refuses: too many pixels") from None
    except DAMAGED as error:  # a header cut short or garbled
        raise RejectedImage("truncated or corrupt", str(error) or type(error).__name__) from None
    width, height = image.size
    if width * height > max_pixels:  # from the header, before any pixel is decoded
        raise RejectedImage("decompression bomb", f"{width}x{height} is over "
                            f"{max_pixels:,} pixels")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except DAMAGED as error:
        raise RejectedImage("truncated or corrupt", str(error) or type(error).__name__) from None
    image = _to_rgb(image)
    if fit_pixels is not None and width * height > fit_pixels:
        scale = math.sqrt(fit_pixels / (width * height))
        image = image.resize((max(1, math.floor(image.width * scale)),
                              max(1, math.floor(image.height * scale))), Image.Resampling.LANCZOS)
    return image


def decode_rgb(data: bytes, min_side: int = 0, max_pixels: int = MAX_PIXELS,
               fit_pixels: int | None = None) -> torch.Tensor:
    """An input file's bytes as upright uint8 RGB (3, H, W), or RejectedImage: the rule above,
    and a shorter side of at least `min_side` (see `min_input_side`); with `fit_pixels`, shrunk
    to at most that many pixels (`open_rgb`)."""
    image = open_rgb(data, max_pixels, fit_pixels)
    if min(image.size) < min_side:
        raise RejectedImage("too small", f"{image.width}x{image.height} is under {min_side} px "
                            "on its shorter side: it would be enlarged more than "
                            f"{MAX_UPSCALE:g}x for the model")
    return pil_to_tensor(image)


def read_rgb(path: str | Path, min_side: int = 0) -> torch.Tensor:
    """`decode_rgb` of a local file."""
    return decode_rgb(Path(path).read_bytes(), min_side)


def min_input_side(image_size: int) -> int:
    """The shortest side an input may have for a model of `image_size` pixels."""
    return math.ceil(image_size / MAX_UPSCALE)


def output_name(name: str, file_format: str = "auto") -> str:
    """The name of an input's translation: the input's name when its suffix is the type
    written, else the name with that type's suffix added (`face.gif.png`, `photo.png.jpg`), so
    that two inputs never share an output."""
    suffix = posixpath.splitext(name)[1].lower()
    wanted = FILE_FORMATS[file_format]
    if wanted is None:
        return name if suffix in SUFFIX_FORMATS else f"{name}.png"
    same = SUFFIX_FORMATS.get(suffix) == SUFFIX_FORMATS[wanted]
    return name if same else f"{name}{wanted}"


def encode(image: Image.Image, suffix: str, quality: int = 95) -> bytes:
    """`image` as the bytes of a file named `*<suffix>`: JPEG or WebP at `quality` (WebP at
    100: lossless), PNG or BMP."""
    kind = SUFFIX_FORMATS.get(suffix.lower())
    if kind is None:
        raise ValueError(f"cannot write a '{suffix}' image (known: {', '.join(SUFFIX_FORMATS)})")
    # JPEG with 4:4:4 chroma: hair colour is one of the attributes the model learns.
    options = {"JPEG": {"quality": quality, "subsampling": 0},
               "WEBP": {"lossless": True} if quality >= 100 else {"quality": quality}}
    out = io.BytesIO()
    image.save(out, kind, **options.get(kind, {}))
    return out.getvalue()
