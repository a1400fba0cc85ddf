"""Pictures people look at: sample grids as in the paper's figures (inputs x targets), and
contact sheets of photos of any size."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import make_grid

from stargan_core.domains import DomainSpec
from stargan_core.editing import translate_batch
from stargan_core.model import Generator
from stargan_core.targets import Target, single_targets


def denorm(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)


def sample_grid(
    g: Generator, spec: DomainSpec, images: torch.Tensor, c_org: torch.Tensor,
    targets: Sequence[Target] | None = None, min_cell: int = 96,
) -> torch.Tensor:
    """A grid as in the paper's figures: one row per image, the input then one column per target.

    Small images are enlarged (nearest neighbour) to at least `min_cell` pixels for viewing.
    """
    was_training = g.training
    g.eval()
    targets = list(targets) if targets is not None else single_targets(spec)
    fakes = translate_batch(g, spec, images, c_org, targets)
    g.train(was_training)
    cells = torch.cat([images[None], fakes]).transpose(0, 1).flatten(0, 1)  # row-major
    return image_grid(denorm(cells.float()), len(targets) + 1, min_cell)


def image_grid(cells: torch.Tensor, columns: int, min_cell: int = 96) -> torch.Tensor:
    """Images in [0, 1], row-major, as one grid; small ones enlarged (nearest neighbour) to at
    least `min_cell` pixels for viewing."""
    scale = max(1, -(-min_cell // cells.size(-1)))
    if scale > 1:
        cells = F.interpolate(cells, scale_factor=scale, mode="nearest")
    return make_grid(cells, nrow=columns, padding=2, pad_value=1.0)


def labelled_grid(grid: torch.Tensor, columns: Sequence[str]) -> Image.Image:
    """A grid image with a header row naming its columns (input, then each target)."""
    image = to_pil_image(grid.cpu())
    cell = (image.width - 2) / len(columns)
    out = Image.new("RGB", (image.width, image.height + 16), "white")
    out.paste(image, (0, 16))
    draw = ImageDraw.Draw(out)
    for i, name in enumerate(columns):
        draw.text((2 + i * cell + cell / 2, 8), name, fill="black", anchor="mm")
    return out


def save_grid(grid: torch.Tensor, columns: Sequence[str], path: str | Path) -> Path:
    """Save a `sample_grid` with a header row naming its columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(grid, columns).save(path)
    return path


def fit_cell(image: torch.Tensor, cell: int) -> torch.Tensor:
    """A uint8 (3, H, W) image scaled to fit a `cell` square, centred on white, in [0, 1]."""
    height, width = image.shape[-2:]
    scale = cell / max(height, width)
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    # Small model-resolution squares stay crisp (nearest); photos are resampled smoothly.
    smooth = scale < 1 or min(height, width) > 64
    image = TF.resize(image, size, antialias=True) if smooth else TF.resize(
        image, size, interpolation=TF.InterpolationMode.NEAREST)
    top, left = (cell - size[0]) // 2, (cell - size[1]) // 2
    out = torch.ones(3, cell, cell)
    out[:, top:top + size[0], left:left + size[1]] = image.float() / 255
    return out


FLAG = (0.85, 0.1, 0.1)  # the frame of a flagged cell: red


def photo_grid(rows: Sequence[Sequence[torch.Tensor]], columns: Sequence[str], cell: int = 160,
               flagged: Collection[tuple[int, int]] = ()) -> Image.Image:
    """Whole photos (uint8, 3 x H x W, any sizes) as a labelled grid: one row per input, each
    cell the photo scaled to fit a `cell` square; the cells `flagged` (row, column) framed in
    red."""
    cells = torch.stack([fit_cell(image, cell) for row in rows for image in row])
    width = max(2, cell // 40)
    for r, c in flagged:
        frame = cells[r * len(columns) + c]
        for channel, value in enumerate(FLAG):
            frame[channel, :width], frame[channel, -width:] = value, value
            frame[channel, :, :width], frame[channel, :, -width:] = value, value
    return labelled_grid(make_grid(cells, nrow=len(columns), padding=2, pad_value=1.0), columns)
