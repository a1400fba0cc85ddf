"""One preprocessing contract (docs/design.md): how a photo becomes the model's input and how the
model's output goes back into the photo.

A `Preprocessing` (the framing of the training images, the model's resolution, the
normalisation; photos are decoded by `io.images.decode_rgb`) is saved with every checkpoint
and registered model, and every entry point frames photos through it: the training data,
`stargan translate`, `stargan evaluate`, the registered model and translate-bulk.

Framings, all scale-invariant:

- `celeba`: the reference code's 178-pixel centre square of an aligned 178x218 face, at the
  photo's own scale (`io.celeba.celeba_square`);
- `center`: the centre square of the shorter side (RaFD, image folders, prepared shards);
- `full`: the whole photo, on a black square as wide as its longer side;
- `face`: every face found, aligned as CelebA's faces were (`stargan_core.faces`);
- `model`: the framing the model was trained with (`celeba` or `center`);
- `auto` (the default of every entry point): for a model trained on aligned faces (`celeba`),
  a photo with the aligned faces' 178:218 aspect ratio (within 1 %) is taken as aligned and
  framed `celeba`, any other photo `face`; other models frame as they were trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

from stargan_core.faces import AlignedFace, FaceDetector
from stargan_core.io.celeba import ALIGNED, celeba_square
from stargan_core.io.images import ImageRule, RejectedImage, encode, min_input_side, open_rgb

FRAMINGS = ("auto", "model", "celeba", "center", "full", "face")
TRAINING_FRAMINGS = ("celeba", "center")
NORMALISATION = "RGB / 127.5 - 1, in [-1, 1]"
ALIGNED_ASPECT = ALIGNED[0] / ALIGNED[1]
ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class Box:
    """A square of a photo that the model sees; where it reaches beyond the photo's edges the
    model sees black, and only the photo's own pixels are edited."""

    left: int
    top: int
    side: int

    def cut(self, photo: torch.Tensor, size: int) -> torch.Tensor:
        """The model's input: this square of a uint8 (3, H, W) photo as `size` square in
        [-1, 1]. The square is cut before resizing, so that the resampling filter sees no
        pixel outside it."""
        square = TF.crop(photo, self.top, self.left, self.side, self.side)  # zero-padded
        return TF.resize(square, [size, size], antialias=True).float() / 127.5 - 1

    def paste(self, photo: torch.Tensor, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """`photo` (uint8, 3 x H x W) with the change `fake - x` (model resolution, [-1, 1])
        resized to this square and added to its pixels; pixels outside it are untouched."""
        delta = (fake.float() - x.float())[None]
        delta = F.interpolate(delta, size=(self.side, self.side), mode="bilinear",
                              align_corners=False, antialias=self.side < delta.size(-1))[0]
        height, width = photo.shape[-2:]
        x0, y0 = max(self.left, 0), max(self.top, 0)
        x1, y1 = min(self.left + self.side, width), min(self.top + self.side, height)
        out = photo.clone()
        region = photo[:, y0:y1, x0:x1].float() + 127.5 * delta[
            :, y0 - self.top:y1 - self.top, x0 - self.left:x1 - self.left].to(photo.device)
        out[:, y0:y1, x0:x1] = region.round().clamp(0, 255).to(torch.uint8)
        return out


def looks_aligned(width: int, height: int) -> bool:
    """Whether a photo has the 178:218 shape of CelebA's aligned faces (within 1 %)."""
    return abs(width / height / ALIGNED_ASPECT - 1) <= ASPECT_TOLERANCE


@dataclass(frozen=True)
class Preprocessing:
    """How photos become a model's input: `framing` is how its training images were framed
    (`celeba` or `center`), `image_size` its resolution."""

    framing: str
    image_size: int

    def __post_init__(self) -> None:
        if self.framing not in TRAINING_FRAMINGS:
            raise ValueError(f"a model's training framing is one of "
                             f"{', '.join(TRAINING_FRAMINGS)}, not '{self.framing}'")

    @classmethod
    def of(cls, data_format: str, image_size: int) -> Preprocessing:
        """The preprocessing of a data set's layout: CelebA's aligned faces are framed
        `celeba`; RaFD, image folders and prepared shards (squares already) `center`."""
        return cls("celeba" if data_format == "celeba" else "center", image_size)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Preprocessing:
        """As `to_dict` wrote it; checkpoints and models from before it name a `data_format`."""
        if "framing" in saved:
            return cls(saved["framing"], int(saved["image_size"]))
        return cls.of(saved["data_format"], int(saved["image_size"]))

    def to_dict(self) -> dict[str, Any]:
        return {"framing": self.framing, "image_size": self.image_size,
                "normalisation": NORMALISATION, "min_side": self.min_side,
                "decoder": "stargan_core.io.images.decode_rgb"}

    @property
    def min_side(self) -> int:
        """The shortest side a photo may have: a smaller one would be enlarged over 2x."""
        return min_input_side(self.image_size)

    def mode(self, framing: str, width: int, height: int) -> str:
        """The framing a `width` x `height` photo gets when `framing` is asked for: `auto` and
        `model` resolved, the others as they are."""
        if framing not in FRAMINGS:
            raise ValueError(f"framing '{framing}' is not one of {', '.join(FRAMINGS)}")
        if framing == "model" or (framing == "auto" and self.framing != "celeba"):
            return self.framing
        if framing == "auto":
            return "celeba" if looks_aligned(width, height) else "face"
        return framing

    def box(self, mode: str, width: int, height: int) -> Box:
        """The square of a `width` x `height` photo that framing `mode` (not `face`) cuts."""
        if mode == "celeba":
            return Box(*celeba_square(width, height))
        if mode == "center":
            side = min(width, height)
        elif mode == "full":
            side = max(width, height)
        else:
            raise ValueError(f"framing '{mode}' has no fixed square")
        return Box((width - side) // 2, (height - side) // 2, side)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """A training image (uint8, 3 x H x W) framed as the model's training images are, in
        [-1, 1]: the transform of every data set."""
        box = self.box(self.framing, image.shape[-1], image.shape[-2])
        return box.cut(image, self.image_size)


class Framer:
    """Where a model looks in photos: `framing` (one of FRAMINGS) resolved for each photo under
    the model's `preprocessing`. The face detector is made when a photo first needs it."""

    def __init__(self, preprocessing: Preprocessing, framing: str = "auto") -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing '{framing}' is not one of {', '.join(FRAMINGS)}")
        self.preprocessing, self.framing = preprocessing, framing
        self._faces: FaceDetector | None = None

    def framed_as(self, framing: str) -> Framer:
        """The same preprocessing (and face detector) with another framing."""
        framer = Framer(self.preprocessing, framing)
        framer._faces = self._faces
        return framer

    def locate(self, photo: torch.Tensor) -> list[Box] | list[AlignedFace]:
        """The squares a uint8 (3, H, W) photo is seen in: one, or one per face found (a photo
        without a face is a RejectedImage)."""
        width, height = photo.shape[-1], photo.shape[-2]
        mode = self.preprocessing.mode(self.framing, width, height)
        if mode != "face":
            return [self.preprocessing.box(mode, width, height)]
        if self._faces is None:
            self._faces = FaceDetector()
        found = self._faces(photo)
        if not found:
            raise RejectedImage("no face", f"no face found in the {width}x{height} photo (to "
                                "translate it anyway, frame it as celeba, center or full)")
        return found

    def __call__(self, photo: torch.Tensor) -> torch.Tensor:
        """The model's input of a photo of one subject, in [-1, 1]: its square, or its largest
        face (labelled data sets: the person the labels describe)."""
        regions = self.locate(photo)
        region = min(regions, key=lambda f: f.scale) if len(regions) > 1 else regions[0]
        return region.cut(photo, self.preprocessing.image_size)


def prepare_image(data: bytes, rule: ImageRule, framing: str = "center") -> bytes:
    """The encoded, square `rule.image_size` image of an input file's bytes, or RejectedImage.

    Framed (`celeba`: the reference's 178-pixel centre square of an aligned face, at the
    image's scale; `center`: the centre square of the shorter side) and resized exactly as
    training and translation frame photos (`Preprocessing`), so that a model sees the same
    pixels from a shard as from the raw file.
    """
    photo = pil_to_tensor(open_rgb(data, rule.max_pixels))
    box = Preprocessing(framing, rule.image_size).box(framing, photo.shape[-1], photo.shape[-2])
    if box.side * rule.max_upscale < rule.image_size:
        raise RejectedImage("too small", f"{photo.shape[-1]}x{photo.shape[-2]} would need more "
                            f"than {rule.max_upscale:g}x enlargement to {rule.image_size} px")
    square = ((box.cut(photo, rule.image_size) + 1) * 127.5).round().to(torch.uint8)
    return encode(to_pil_image(square), rule.suffix, rule.quality)
