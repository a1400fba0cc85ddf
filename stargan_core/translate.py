"""Translate images into target domains with a trained generator; grids like the paper's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import make_grid, save_image

from stargan_core.data.dataset import image_transform, load_image
from stargan_core.data.sample import IMAGE_SUFFIXES
from stargan_core.domains import DomainSpec, Target
from stargan_core.model import Discriminator, Generator


def denorm(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)


@torch.inference_mode()
def translate_batch(
    g: Generator, spec: DomainSpec, images: torch.Tensor, c_org: torch.Tensor,
    targets: Sequence[Target],
) -> torch.Tensor:
    """G(x, c_trg) for every target: (targets, batch, 3, H, W) in [-1, 1]."""
    return torch.stack([g(images, spec.target_labels(c_org, t)) for t in targets])


@torch.inference_mode()
def source_labels(d: Discriminator, spec: DomainSpec, images: torch.Tensor) -> torch.Tensor:
    """The domains of unlabelled images as D's domain classifier sees them (batch x c_dim)."""
    _, logits = d(images)
    hard = spec.labels_from_logits(logits.float())
    return torch.cat([hard, torch.zeros(hard.size(0), spec.c_dim - spec.cls_dim,
                                        device=hard.device)], dim=1)


def sample_grid(
    g: Generator, spec: DomainSpec, images: torch.Tensor, c_org: torch.Tensor,
    targets: Sequence[Target] | None = None, min_cell: int = 96,
) -> torch.Tensor:
    """A grid as in the paper's figures: one row per image, the input then one column per target.

    Small images are enlarged (nearest neighbour) to at least `min_cell` pixels for viewing.
    """
    was_training = g.training
    g.eval()
    targets = list(targets) if targets is not None else spec.single_targets()
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


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """A batch in [-1, 1] (batch, 3, H, W) -> uint8 RGB arrays (batch, H, W, 3)."""
    return (denorm(images.float()) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


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


def collect_inputs(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(image file, output name relative to a target folder) for files and folders.

    A file keeps its name; a folder's images keep their path below the folder.
    """
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {path}")
            found += [(p, p.relative_to(path)) for p in files]
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{path} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
            found.append((path, Path(path.name)))
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    clashes = sorted(str(n) for n, k in Counter(name for _, name in found).items() if k > 1)
    if clashes:
        raise ValueError(
            f"several inputs would be written as {', '.join(clashes[:3])}: "
            "pass their folder instead of the files, or rename them"
        )
    return found


@dataclass
class TranslationResult:
    outputs: list[Path]
    grid: Path
    skipped: list[tuple[Path, str]]


def translate_files(
    g: Generator,
    d: Discriminator,
    spec: DomainSpec,
    data_format: str,
    image_size: int,
    inputs: Sequence[str | Path],
    targets: Sequence[str],
    out_dir: str | Path,
    batch_size: int = 16,
    grid_rows: int = 8,
    device: torch.device | str = "cpu",
    progress: Callable[[int], object] | None = None,
) -> TranslationResult:
    """Write `out_dir/<target>/<input name>` for every input and target, and `out_dir/grid.png`.

    The source domains of each input, which the targets leave unchanged, come from D's domain
    classifier. Files that cannot be decoded are skipped and reported, not fatal.
    """
    parsed = [spec.parse_target(t) for t in targets] if targets else spec.single_targets()
    files = collect_inputs(inputs)
    out_dir = Path(out_dir)
    transform = image_transform(data_format, image_size)
    outputs, skipped, grid_cells = [], [], []
    g.eval()
    d.eval()
    for start in range(0, len(files), batch_size):
        batch, names = [], []
        for path, name in files[start:start + batch_size]:
            try:
                batch.append(transform(load_image(str(path))))
                names.append(name)
            except RuntimeError as err:
                skipped.append((path, f"cannot decode: {err}"))
        if not batch:
            continue
        x = torch.stack(batch).to(device)
        c_org = source_labels(d, spec, x)
        fakes = translate_batch(g, spec, x, c_org, parsed)
        for target, fake in zip(parsed, fakes, strict=True):
            for name, image in zip(names, fake, strict=True):
                path = out_dir / target.slug / name
                path.parent.mkdir(parents=True, exist_ok=True)
                save_image(denorm(image.float()), path)
                outputs.append(path)
        if sum(len(c) for c, _ in grid_cells) < grid_rows:
            grid_cells.append((x[:grid_rows], c_org[:grid_rows]))
        if progress is not None:
            progress(len(batch))
    if not outputs:
        raise ValueError(f"none of the {len(files)} inputs could be decoded: {skipped[:3]}")
    images = torch.cat([c for c, _ in grid_cells])[:grid_rows]
    labels = torch.cat([c for _, c in grid_cells])[:grid_rows]
    grid = sample_grid(g, spec, images, labels, parsed)
    grid_path = save_grid(grid, ["input", *(t.text for t in parsed)], out_dir / "grid.png")
    return TranslationResult(outputs, grid_path, skipped)
