"""Faces in photos: how often a face is found, how exactly it is aligned, what paste-back keeps,
and photos/s of face framing against the celeba framing's single square (the baseline, in the
same run).

- Detection and alignment: scikit-image's astronaut photograph placed into larger canvases at
  6 scales and 5 angles; the known placement gives the exact answer for where its eyes and
  mouth must be found (relative to the unplaced photo's own detection). Errors are in pixels
  of the unplaced photo. False faces: detections away from the placed face, and in photos
  without a face.
- Paste-back: PSNR between the photo and its translation outside the faces' squares, written
  as PNG (lossless) and as JPEG q95 (the encoder's own loss).
- Throughput: 1-megapixel photos (1152x864) with one and with two faces, decoded beforehand,
  through `Editor.edit` with the preset's generator (random weights: speed does not depend on
  them) on the threads given.

    python bench/faces.py                         # edit-32 networks, 2 threads
    python bench/faces.py --preset edit-128 --out /tmp/faces   # also writes before/after PNGs
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from stargan_core.checkpoint import build_discriminator, build_generator
from stargan_core.config import preset
from stargan_core.domains import DomainSpec
from stargan_core.editing import Editor
from stargan_core.faces import AlignedFace, FaceDetector
from stargan_core.preprocessing import Preprocessing
from stargan_core.synthetic.placement import place
from stargan_core.targets import single_targets

SCALES = (0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
ANGLES = (0, 15, 30, -15, -30)
NO_FACE = ("coffee", "chelsea", "rocket", "cat", "hubble_deep_field", "immunohistochemistry")


def detection(detector: FaceDetector, astronaut: torch.Tensor) -> None:
    reference = detector(astronaut)[0].landmarks()
    rng = np.random.default_rng(0)
    errors, missed, false = [], [], 0
    for angle in ANGLES:
        for scale in SCALES:
            canvas = (1500, 1500) if scale > 1.2 else (1100, 1000)
            side = int(512 * scale * 1.5) + 10
            offset = tuple(int(rng.integers(0, max(1, c - side))) for c in canvas)
            photo, to_canvas = place(astronaut, scale, angle, offset, canvas)
            expected = np.hstack([reference, np.ones((3, 1))]) @ to_canvas.T
            found = [np.abs(f.landmarks() - expected).max() / scale for f in detector(photo)]
            hits = [e for e in found if e < 10]
            false += len(found) - len(hits)
            if hits:
                errors.append(min(hits))
            else:
                missed.append((scale, angle))
    total = len(SCALES) * len(ANGLES)
    print(f"placed astronaut, {len(SCALES)} scales {SCALES[0]}-{SCALES[-1]}x x {len(ANGLES)} "
          f"angles (0, +-15, +-30 deg): found {total - len(missed)}/{total} (missed: "
          f"{missed or 'none'}), false faces {false}")
    print(f"  eyes and mouth, error in the unplaced photo's pixels: median "
          f"{statistics.median(errors):.2f}, 90th percentile "
          f"{np.percentile(errors, 90):.2f}, max {max(errors):.2f} (eye distance "
          f"{np.linalg.norm(reference[1] - reference[0]):.0f} px)")
    empty = {name: len(detector(_photo(getattr(data, name)()))) for name in NO_FACE}
    print(f"photos without a face, faces found: {empty}")


def paste_back(editor: Editor, photo: torch.Tensor, out: Path | None) -> None:
    spec = editor.spec
    faces = editor.locate(photo)
    edited = editor.edit([photo], single_targets(spec)[:1], regions=[faces])[0][0]
    outside = torch.ones(photo.shape[-2:], dtype=torch.bool)
    for face in faces:
        outside &= ~_square(face, photo.shape[-1], photo.shape[-2])
    for kind, options in (("PNG", {}), ("JPEG", {"quality": 95, "subsampling": 0})):
        buffer = io.BytesIO()
        Image.fromarray(edited.permute(1, 2, 0).numpy()).save(buffer, kind, **options)
        decoded = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1)
        mse = ((decoded.float() - photo.float())[:, outside] ** 2).mean().item()
        psnr = "lossless (identical)" if mse == 0 else f"{10 * math.log10(255 ** 2 / mse):.1f} dB"
        print(f"  {kind}: PSNR outside the {len(faces)} faces' squares "
              f"({outside.float().mean():.0%} of the photo): {psnr}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        both = torch.cat([photo, edited], -1).permute(1, 2, 0).numpy()
        Image.fromarray(both).save(out / "two-faces-before-after.png")


def _square(face: AlignedFace, width: int, height: int) -> torch.Tensor:
    """The pixels a face's paste can touch: its square in the photo."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                            torch.arange(width, dtype=torch.float64), indexing="ij")
    to_square = torch.from_numpy(face._photo_to_square())
    u = to_square[0, 0] * xs + to_square[0, 1] * ys + to_square[0, 2]
    v = to_square[1, 0] * xs + to_square[1, 1] * ys + to_square[1, 2]
    return (u > -0.01) & (u < 1.01) & (v > -0.01) & (v < 1.01)


def throughput(editor: Editor, photos: dict[str, torch.Tensor], repeats: int) -> None:
    """Face framing against the celeba framing's one square, runs interleaved so that both
    see the same machine; medians."""
    target = single_targets(editor.spec)[:1]
    editors = {"baseline": editor.framed_as("celeba"), "face": editor}
    for name, photo in photos.items():
        times: dict[str, list[float]] = {label: [] for label in editors}
        for ed in editors.values():
            ed.edit([photo], target)  # warm-up
        for _ in range(repeats):
            for label, ed in editors.items():
                start = time.perf_counter()
                ed.edit([photo], target)
                times[label].append(time.perf_counter() - start)
        base, face = (1 / statistics.median(t) for t in times.values())
        print(f"  {name}: face framing {face:.2f} photos/s, baseline (celeba framing: one "
              f"square, no detection) {base:.2f} photos/s, ratio {face / base:.2f}; detection "
              f"and alignment alone {_detect_ms(editor, photo):.0f} ms")


def _detect_ms(editor: Editor, photo: torch.Tensor) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        editor.locate(photo)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _photo(pixels: np.ndarray) -> torch.Tensor:
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, -1)
    return torch.from_numpy(np.ascontiguousarray(pixels[..., :3])).permute(2, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="edit-32", help="the generator's networks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--out", type=Path, help="folder for the before/after picture")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    astronaut = _photo(data.astronaut())
    detector = FaceDetector()
    detection(detector, astronaut)

    spec, config = DomainSpec.celeba(), preset(args.preset)
    torch.manual_seed(0)
    editor = Editor(build_generator(spec, config), build_discriminator(spec, config), spec,
                    Preprocessing("celeba", config.image_size), framing="face")
    one, _ = place(astronaut, 0.8, 0, (300, 200), (1152, 864))
    two = one.clone()
    two[:, 200:610, 700:1110] = one[:, 200:610, 300:710]  # a second face beside the first
    print("paste-back, two faces in a 1152x864 photo:")
    paste_back(editor, two, args.out)
    print(f"throughput, 1152x864 photos, {args.preset} networks ({config.image_size} px), "
          f"{args.threads} threads:")
    throughput(editor, {"one face": one, "two faces": two}, args.repeats)


if __name__ == "__main__":
    main()
