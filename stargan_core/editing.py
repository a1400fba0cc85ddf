"""What a translation is (docs/design.md): frame the photo for the model, translate at model
resolution, and carry the generator's change back onto the photo's own pixels.

The change G(x, c) - x is brought up to the framed square of the photo and added to the
original pixels there; everything outside the square is left as it was, and where the change
is zero (a masked generator's untouched region) so are the pixels inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stargan_core.domains import DomainSpec
from stargan_core.faces import AlignedFace
from stargan_core.model import Discriminator, Generator
from stargan_core.preprocessing import Box, Framer, Preprocessing
from stargan_core.targets import Target, target_labels

OUTPUT_SIZES = ("input", "model")  # the photo's own size, or the model's square


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
    return torch.stack([g(images, target_labels(spec, c_org, t),
                          spec.with_label_set(c_org, t.label_set)) for t in targets])


STRENGTHS = (0.0, 2.0)  # an edit's strength: none, ..., as trained (1), ..., twice that


class ScaledEdit(torch.nn.Module):
    """A generator conditioned on label differences with its edit scaled by `strength`: it
    is given c_org + strength * (c_trg - c_org), which it sees as strength times the
    difference (0: nothing asked, 1: as trained, up to 2). Called as G is."""

    def __init__(self, g: Generator, strength: float) -> None:
        super().__init__()
        low, high = STRENGTHS
        if not low <= strength <= high:
            raise ValueError(f"strength {strength} is not in [{low:g}, {high:g}]")
        if g.conditioning != "difference":
            raise ValueError(
                f"strength {strength:g} needs a generator conditioned on label differences "
                f"(g_conditioning=difference: the edit-32 and edit-128 presets); this one "
                f"sees target labels ({g.conditioning}), whose edit has no size to scale")
        self.g, self.strength = g, strength

    def forward(self, x: torch.Tensor, c_trg: torch.Tensor, c_org: torch.Tensor,
                with_mask: bool = False) -> torch.Tensor:
        return self.g(x, c_org + self.strength * (c_trg - c_org), c_org, with_mask=with_mask)


def scaled(g: Generator, strength: float) -> torch.nn.Module:
    """`g`, or `g` with its edit scaled (`ScaledEdit`) when `strength` is not 1."""
    return g if strength == 1 else ScaledEdit(g, strength)


class Editor:
    """Translates photos of any size with one generator: frames each photo (`framing`, one of
    `preprocessing.FRAMINGS`), translates it at model resolution and returns it at its own
    size with the edit in it (or, with `output_size="model"`, the model's square). The domains
    a target leaves alone are read off each photo by D's domain classifier unless the caller
    knows them."""

    def __init__(self, g: Generator, d: Discriminator | None, spec: DomainSpec,
                 preprocessing: Preprocessing, framing: str = "auto") -> None:
        self.g, self.d, self.spec = g.eval(), d.eval() if d is not None else None, spec
        self.framer = Framer(preprocessing, framing)

    @property
    def device(self) -> torch.device:
        return next(self.g.parameters()).device

    @property
    def preprocessing(self) -> Preprocessing:
        return self.framer.preprocessing

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    @property
    def min_side(self) -> int:
        """The shortest side a photo may have: a smaller one would be enlarged over 2x."""
        return self.preprocessing.min_side

    def framed_as(self, framing: str) -> Editor:
        """The same networks (and face detector), framing photos as `framing` says."""
        editor = Editor(self.g, self.d, self.spec, self.preprocessing)
        editor.framer = self.framer.framed_as(framing)
        return editor

    def locate(self, photo: torch.Tensor) -> list[Box] | list[AlignedFace]:
        """Where the model looks in a photo: its framed square, or each face found (a photo
        without one is a RejectedImage)."""
        return self.framer.locate(photo)

    def to(self, device: torch.device | str) -> Editor:
        self.g = self.g.to(device)
        self.d = self.d.to(device) if self.d is not None else None
        return self

    def edit(self, photos: Sequence[torch.Tensor], targets: Sequence[Target],
             output_size: str = "input", c_org: torch.Tensor | None = None,
             regions: Sequence[Sequence[Box | AlignedFace]] | None = None,
             strength: float = 1.0) -> list[list[torch.Tensor]]:
        """uint8 (3, H, W) photos -> per target, per photo, the uint8 translation (with
        `output_size="model"`: the model's square of the photo's first region). `regions`:
        each photo's `locate`, when the caller has it already. `strength` scales the edit
        (`ScaledEdit`)."""
        return self.translate(photos, targets, output_size, c_org, regions, strength).outputs

    @torch.inference_mode()
    def translate(self, photos: Sequence[torch.Tensor], targets: Sequence[Target],
                  output_size: str = "input", c_org: torch.Tensor | None = None,
                  regions: Sequence[Sequence[Box | AlignedFace]] | None = None,
                  strength: float = 1.0) -> Translation:
        """`edit`, with what the model saw and made at its own size (what a judge reads)."""
        g = scaled(self.g, strength)  # checked before any work
        if output_size not in OUTPUT_SIZES:
            raise ValueError(f"output size '{output_size}' is not one of "
                             f"{', '.join(OUTPUT_SIZES)}")
        regions = regions if regions is not None else [self.locate(p) for p in photos]
        owners = [i for i, found in enumerate(regions) for _ in found]
        flat = [r for found in regions for r in found]
        x = torch.stack([r.cut(photos[i], self.image_size)
                         for i, r in zip(owners, flat, strict=True)]).to(self.device)
        if c_org is None:
            if self.d is None:
                raise ValueError("the source labels are needed: give c_org or a discriminator")
            c_org = source_labels(self.d, self.spec, x)
        else:  # one row per photo: one per region
            c_org = c_org[torch.tensor(owners)]
        fakes = translate_batch(g, self.spec, x, c_org.to(self.device), targets)
        if output_size == "model":
            first = [owners.index(i) for i in range(len(photos))]
            inputs = list(to_uint8(x[first]))
            outputs = [list(to_uint8(f[first])) for f in fakes]
        else:
            inputs = [p.cpu() for p in photos]
            outputs = []
            for fake in fakes:
                edited = list(inputs)
                for i, r, xi, fi in zip(owners, flat, x, fake, strict=True):
                    edited[i] = r.paste(edited[i], xi, fi).cpu()
                outputs.append(edited)
        return Translation(x, fakes, owners, inputs, outputs)


@dataclass(frozen=True)
class Translation:
    """One batch's translation: per region the model looked at (`owners`: its photo), its
    square `x` and each target's `fakes` in [-1, 1] (targets, regions, 3, S, S); per photo
    the uint8 image the outputs are compared with (the photo, or its square with
    `output_size="model"`) and per target, per photo, the output."""

    x: torch.Tensor
    fakes: torch.Tensor
    owners: list[int]
    inputs: list[torch.Tensor]
    outputs: list[list[torch.Tensor]]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """A batch in [-1, 1] -> uint8, same shape, on the CPU."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
