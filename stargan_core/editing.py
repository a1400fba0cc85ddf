"""What a translation is (DESIGN.md): frame the photo for the model, translate at model
resolution, and carry the generator's change back onto the photo's own pixels.

The change G(x, c) - x is brought up to the framed square of the photo and added to the
original pixels there; everything outside the square is left as it was, and where the change
is zero (a masked generator's untouched region) so are the pixels inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from stargan_core.data.celeba import celeba_square
from stargan_core.data.images import RejectedImage, min_input_side
from stargan_core.domains import DomainSpec, Target
from stargan_core.faces import AlignedFace, FaceDetector
from stargan_core.model import Discriminator, Generator

OUTPUT_SIZES = ("input", "model")  # the photo's own size, or the model's square
# How photos are framed for the model: as the model's training data were (`model`), or every
# face found, aligned from its eyes (`face`, `stargan_core.faces`).
FRAMINGS = ("model", "face")


@dataclass(frozen=True)
class Box:
    """The square of a photo that the model sees; where it reaches beyond the photo's edges
    the model sees black, and only the photo's own pixels are edited."""

    left: int
    top: int
    side: int

    def cut(self, photo: torch.Tensor, size: int) -> torch.Tensor:
        return frame(photo, self, size)

    def paste(self, photo: torch.Tensor, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return carry_back(photo, self, x, fake)


def frame_box(data_format: str, width: int, height: int) -> Box:
    """CelebA models see the reference code's 178-pixel centre square of an aligned face, at
    the photo's scale (`celeba_square`); any other model, and a prepared shard's square images,
    the centre square of the shorter side."""
    if data_format == "celeba":
        return Box(*celeba_square(width, height))
    side = min(width, height)
    return Box((width - side) // 2, (height - side) // 2, side)


def frame(image: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """The model's input: `box` of a uint8 (3, H, W) image as `size` square in [-1, 1].

    The square is cut before resizing, so that the resampling filter sees no pixel outside it.
    """
    square = TF.crop(image, box.top, box.left, box.side, box.side)  # zero-padded beyond edges
    return TF.resize(square, [size, size], antialias=True).float() / 127.5 - 1


class Framing:
    """uint8 (3, H, W) -> the model's input in [-1, 1]: the transform of every data set."""

    def __init__(self, data_format: str, image_size: int) -> None:
        self.data_format, self.image_size = data_format, image_size

    def box(self, image: torch.Tensor) -> Box:
        return frame_box(self.data_format, image.shape[-1], image.shape[-2])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return frame(image, self.box(image), self.image_size)


def carry_back(image: torch.Tensor, box: Box, x: torch.Tensor, fake: torch.Tensor
               ) -> torch.Tensor:
    """`image` (uint8, 3 x H x W) with the change `fake - x` (model resolution, [-1, 1]) resized
    to `box` and added to its pixels; pixels outside the box are returned untouched."""
    delta = (fake.float() - x.float())[None]
    delta = F.interpolate(delta, size=(box.side, box.side), mode="bilinear", align_corners=False,
                          antialias=box.side < delta.size(-1))[0]
    height, width = image.shape[-2:]
    x0, y0 = max(box.left, 0), max(box.top, 0)
    x1, y1 = min(box.left + box.side, width), min(box.top + box.side, height)
    out = image.clone()
    region = image[:, y0:y1, x0:x1].float() + 127.5 * delta[
        :, y0 - box.top:y1 - box.top, x0 - box.left:x1 - box.left].to(image.device)
    out[:, y0:y1, x0:x1] = region.round().clamp(0, 255).to(torch.uint8)
    return out


@torch.inference_mode()
def source_labels(d: Discriminator, spec: DomainSpec, images: torch.Tensor) -> torch.Tensor:
    """The domains of unlabelled images as D's domain classifier sees them (batch x c_dim)."""
    _, logits = d(images)
    hard = spec.labels_from_logits(logits.float())
    return torch.cat([hard, torch.zeros(hard.size(0), spec.c_dim - spec.cls_dim,
                                        device=hard.device)], dim=1)


@torch.inference_mode()
def translate_batch(
    g: Generator, spec: DomainSpec, images: torch.Tensor, c_org: torch.Tensor,
    targets: Sequence[Target],
) -> torch.Tensor:
    """G(x, c_trg) for every target: (targets, batch, 3, H, W) in [-1, 1]."""
    return torch.stack([g(images, spec.target_labels(c_org, t),
                          spec.with_label_set(c_org, t.label_set)) for t in targets])


class Editor:
    """Translates photos of any size with one generator: frames each photo, translates it at
    model resolution and returns it at its own size with the edit in it (or, with
    `output_size="model"`, the model's square). The domains a target leaves alone are read off
    each photo by D's domain classifier unless the caller knows them."""

    def __init__(self, g: Generator, d: Discriminator | None, spec: DomainSpec,
                 data_format: str, image_size: int, framing: str = "model") -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing '{framing}' is not one of {', '.join(FRAMINGS)}")
        self.g, self.d, self.spec = g.eval(), d.eval() if d is not None else None, spec
        self.framing = Framing(data_format, image_size)
        self.faces = None
        if framing == "face":
            self.faces = FaceDetector()

    @property
    def device(self) -> torch.device:
        return next(self.g.parameters()).device

    @property
    def min_side(self) -> int:
        """The shortest side a photo may have: a smaller one would be enlarged over 2x."""
        return min_input_side(self.framing.image_size)

    def framed_as(self, data_format: str, framing: str = "model") -> Editor:
        """The same networks, framing photos as `data_format` does (`prepared`: squares), or
        every face (`framing="face"`)."""
        return Editor(self.g, self.d, self.spec, data_format, self.framing.image_size, framing)

    def locate(self, photo: torch.Tensor) -> list[Box] | list[AlignedFace]:
        """Where the model looks in a photo: its framed square, or each face found (a photo
        without one is a RejectedImage)."""
        if self.faces is None:
            return [self.framing.box(photo)]
        found = self.faces(photo)
        if not found:
            raise RejectedImage("no face", f"no face found in the {photo.shape[-1]}x"
                                f"{photo.shape[-2]} photo")
        return found

    def to(self, device: torch.device | str) -> Editor:
        self.g = self.g.to(device)
        self.d = self.d.to(device) if self.d is not None else None
        return self

    @torch.inference_mode()
    def edit(self, photos: Sequence[torch.Tensor], targets: Sequence[Target],
             output_size: str = "input", c_org: torch.Tensor | None = None,
             regions: Sequence[Sequence[Box | AlignedFace]] | None = None
             ) -> list[list[torch.Tensor]]:
        """uint8 (3, H, W) photos -> per target, per photo, the uint8 translation (with
        `output_size="model"`: the model's square of the photo's first region). `regions`:
        each photo's `locate`, when the caller has it already."""
        if output_size not in OUTPUT_SIZES:
            raise ValueError(f"output size '{output_size}' is not one of "
                             f"{', '.join(OUTPUT_SIZES)}")
        regions = regions if regions is not None else [self.locate(p) for p in photos]
        owners = [i for i, found in enumerate(regions) for _ in found]
        flat = [r for found in regions for r in found]
        x = torch.stack([r.cut(photos[i], self.framing.image_size)
                         for i, r in zip(owners, flat, strict=True)]).to(self.device)
        if c_org is None:
            if self.d is None:
                raise ValueError("the source labels are needed: give c_org or a discriminator")
            c_org = source_labels(self.d, self.spec, x)
        else:  # one row per photo: one per region
            c_org = c_org[torch.tensor(owners)]
        fakes = translate_batch(self.g, self.spec, x, c_org.to(self.device), targets)
        if output_size == "model":
            first = [owners.index(i) for i in range(len(photos))]
            return [list(to_uint8(f[first])) for f in fakes]
        out = []
        for fake in fakes:
            edited = [p.cpu() for p in photos]
            for i, r, xi, fi in zip(owners, flat, x, fake, strict=True):
                edited[i] = r.paste(edited[i], xi, fi).cpu()
            out.append(edited)
        return out


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """A batch in [-1, 1] -> uint8, same shape, on the CPU."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
