"""Translate images into target domains with a trained generator; grids like the paper's."""

from __future__ import annotations

import csv
import io
import posixpath
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.transforms.v2.functional import to_pil_image

from stargan_core.domains import DomainSpec
from stargan_core.editing import Editor, scaled
from stargan_core.evaluation.verdicts import VERDICT_FIELDS, Judge, Verdict, verdicts
from stargan_core.grids import photo_grid
from stargan_core.io.images import RejectedImage, decode_rgb, encode, output_name
from stargan_core.io.sample import IMAGE_SUFFIXES
from stargan_core.model import Discriminator, Generator
from stargan_core.preprocessing import Preprocessing
from stargan_core.storage import filesystem, join, read_bytes, url_of, write_bytes
from stargan_core.targets import parse_target, single_targets


def other_files(paths: Sequence[str | Path]) -> list[str]:
    """The files of the folders in `paths` that `collect_inputs` passes over: not of an image
    type (hidden files aside), so that a user hears of them."""
    found = []
    for raw in map(str, paths):
        fs, path = filesystem(raw)
        if fs.isdir(path):
            found += [url_of(fs, p) for p in sorted(fs.find(path))
                      if posixpath.splitext(p)[1].lower() not in IMAGE_SUFFIXES
                      and not posixpath.basename(p).startswith(".")]
    return found


def collect_inputs(paths: Sequence[str | Path]) -> list[tuple[str, str]]:
    """(image file's path or URL, output name relative to a target folder) for files and
    folders, local or s3://.

    A file keeps its name; a folder's images keep their path below the folder.
    """
    found: list[tuple[str, str]] = []
    for raw in map(str, paths):
        fs, path = filesystem(raw)
        if fs.isdir(path):
            files = sorted(p for p in fs.find(path)
                           if posixpath.splitext(p)[1].lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {raw}")
            found += [(url_of(fs, p), posixpath.relpath(p, path)) for p in files]
        elif fs.isfile(path):
            if posixpath.splitext(path)[1].lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{raw} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
            found.append((url_of(fs, path), posixpath.basename(path)))
        else:
            raise FileNotFoundError(f"input {raw} does not exist")
    clashes = sorted(str(n) for n, k in Counter(name for _, name in found).items() if k > 1)
    if clashes:
        raise ValueError(
            f"several inputs would be written as {', '.join(clashes[:3])}: "
            "pass their folder instead of the files, or rename them"
        )
    return found


@dataclass
class TranslationResult:
    outputs: list[str]  # paths, or URLs of an s3:// output
    grid: str
    skipped: list[tuple[str, str]]  # (input, reason)
    report: str | None = None  # report.csv: each output's verdict
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)  # by target, with report


def translate_files(
    g: Generator,
    d: Discriminator,
    spec: DomainSpec,
    preprocessing: Preprocessing,
    inputs: Sequence[str | Path],
    targets: Sequence[str],
    out_dir: str | Path,
    batch_size: int = 16,
    grid_rows: int = 8,
    device: torch.device | str = "cpu",
    progress: Callable[[int], object] | None = None,
    output_size: str = "input",
    quality: int = 95,
    file_format: str = "auto",
    framing: str = "auto",
    strength: float = 1.0,
    report: bool = False,
    judge: Judge | None = None,
) -> TranslationResult:
    """Write `out_dir/<target>/<input name>` for every input and target, and `out_dir/grid.png`
    (inputs and `out_dir`: local or s3://).

    Each output is its input photo at its own size with the edit in it (`output_size="model"`:
    the model's square), in the input's file type or `file_format` (png, jpeg, webp; JPEG and
    WebP at `quality`, JPEG with 4:4:4 chroma). The source
    domains of each input, which the targets leave unchanged, come from D's domain classifier.
    Inputs that the input rule rejects (`stargan_core.io.images`: not an image, damaged, over
    40 MP, under half the model's size) are skipped with the reason, not fatal. GIF and TIFF
    inputs are written as `<name>.png` (`output_name`). `framing` (`preprocessing.FRAMINGS`)
    says where the model looks; with face framing, a photo without a face is skipped.
    `strength` scales the edit (0 to 2; `editing.ScaledEdit`). With `report`, each output's
    verdict by `judge` (`verdicts.Verdict`; without a judge, the changed share alone) goes
    to `out_dir/report.csv`, and the grid frames in red the outputs whose edit did not take.
    """
    parsed = [parse_target(spec, t) for t in targets] if targets else single_targets(spec)
    files = collect_inputs(inputs)
    fs, out = filesystem(str(out_dir))
    editor = Editor(g.to(device), d.to(device), spec, preprocessing, framing)
    scaled(editor.g, strength)  # a strength this model cannot take fails before any work
    outputs, skipped, grid_rows_done = [], [], []
    flagged: list[tuple[int, int]] = []
    lines: list[list] = []  # the report's: input, output, target, verdict
    for start in range(0, len(files), batch_size):
        photos, names, sources, regions = [], [], [], []
        chunk = files[start:start + batch_size]
        for path, name in chunk:
            try:
                photo = decode_rgb(read_bytes(path), editor.min_side)
                regions.append(editor.locate(photo))
            except (RejectedImage, OSError) as error:
                skipped.append((path, str(error)))
                continue
            photos.append(photo)
            names.append(name)
            sources.append(path)
        if not photos:
            if progress is not None:
                progress(len(chunk))  # skipped inputs are done too
            continue
        done = editor.translate(photos, parsed, output_size, regions=regions,
                                strength=strength)
        judged = verdicts(judge, done, parsed) if report else [[None] * len(photos)] * len(parsed)
        for target, images, found in zip(parsed, done.outputs, judged, strict=True):
            for name, path_in, image, verdict in zip(names, sources, images, found, strict=True):
                path = join(out, target.slug, output_name(name, file_format))
                data = encode(to_pil_image(image), posixpath.splitext(path)[1], quality)
                write_bytes(fs, path, data)
                outputs.append(url_of(fs, path))
                if verdict is not None:
                    lines.append([path_in, url_of(fs, path), target.text, verdict])
        for i in range(min(len(photos), grid_rows - len(grid_rows_done))):
            flagged += [(len(grid_rows_done), k + 1) for k, found in enumerate(judged)
                        if found[i] is not None and found[i].not_taken]
            grid_rows_done.append([done.inputs[i], *(images[i] for images in done.outputs)])
        if progress is not None:
            progress(len(chunk))
    if not outputs:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in skipped[:3])
        raise ValueError(f"none of the {len(files)} inputs could be translated ({reasons})")
    grid = photo_grid(grid_rows_done, ["input", *(t.text for t in parsed)], flagged=flagged)
    grid_path = join(out, "grid.png")
    write_bytes(fs, grid_path, encode(grid, ".png"))
    report_url = None
    if report:
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["input", "output", "target", *VERDICT_FIELDS])
        writer.writerows([*line[:3], *("" if getattr(line[3], c) is None else
                                       f"{getattr(line[3], c):.4f}" for c in VERDICT_FIELDS)]
                         for line in lines)
        report_path = join(out, "report.csv")
        write_bytes(fs, report_path, table.getvalue().encode())
        report_url = url_of(fs, report_path)
    by_target: dict[str, list[Verdict]] = {}
    for _, _, target_text, verdict in lines:
        by_target.setdefault(target_text, []).append(verdict)
    return TranslationResult(outputs, url_of(fs, grid_path), skipped, report_url, by_target)
