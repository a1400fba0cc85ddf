"""Synthetic face data sets in CelebA's and RaFD's exact on-disk layouts.

No real data can be downloaded where this project is tested, so it draws its own faces. The
attributes that StarGAN learns are drawn so that they are visible and learnable:

- hair colour (black, blond, brown) colours the hair;
- Male: short hair, stubble and heavy brows; female: long hair and red lips;
- Young=0: grey-tinted skin with forehead and cheek wrinkles;
- Smiling and Eyeglasses are drawn too; RaFD's 8 expressions move brows, eyes and mouth.

The other CelebA columns are labelled consistently with the drawing where they overlap
(No_Beard, Wearing_Lipstick, ...) and are otherwise random: they carry no visual signal.
Everything is deterministic under the seed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from stargan_core.domains import CELEBA_ATTRIBUTES, RAFD_EXPRESSIONS

HAIR_COLOURS = {
    "Black_Hair": (28, 24, 24),
    "Blond_Hair": (236, 204, 110),
    "Brown_Hair": (120, 72, 36),
}
SKIN_TONES = ((240, 205, 175), (222, 172, 130), (176, 122, 88), (120, 82, 58))
CELEBA_SIZE = (178, 218)  # width, height of img_align_celeba
RAFD_SIZE = (256, 256)
RAFD_GAZES = ("frontal", "left", "right")
RAFD_ETHNICITIES = ("Caucasian", "Moroccan")


@dataclass(frozen=True)
class Face:
    """What to draw: identity (skin, hair, background) and the rendered attributes."""

    hair: str
    male: bool
    young: bool
    smiling: bool = False
    eyeglasses: bool = False
    expression: str = "neutral"
    gaze: str = "frontal"
    skin: int = 0
    background: tuple[int, int, int] = (200, 200, 200)
    clothes: tuple[int, int, int] = (60, 60, 120)
    shift: tuple[int, int] = (0, 0)


def _blend(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, ...]:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=True))


def draw_face(face: Face, size: tuple[int, int], noise_seed: int) -> Image.Image:
    """Draw `face` on a canvas of `size` (width, height), face centred, scaled to the width."""
    w, h = size
    s = w / 178.0
    cx, cy = w / 2 + face.shift[0] * s, h / 2 + face.shift[1] * s + 6 * s
    img = Image.new("RGB", size, face.background)
    d = ImageDraw.Draw(img)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [cx + x0 * s, cy + y0 * s, cx + x1 * s, cy + y1 * s]

    skin = SKIN_TONES[face.skin % len(SKIN_TONES)]
    if not face.young:
        skin = _blend(skin, (165, 165, 165), 0.55)
    hair = HAIR_COLOURS[face.hair]

    d.polygon([(cx - 80 * s, h), (cx - 45 * s, cy + 55 * s), (cx + 45 * s, cy + 55 * s),
               (cx + 80 * s, h)], fill=face.clothes)
    d.rectangle(box(-14, 30, 14, 60), fill=skin)  # neck
    if face.male:
        d.ellipse(box(-44, -66, 44, 10), fill=hair)  # short hair: a cap
    else:
        d.ellipse(box(-48, -68, 48, 20), fill=hair)
        d.rectangle(box(-48, -20, -26, 70), fill=hair)  # long hair down both sides
        d.rectangle(box(26, -20, 48, 70), fill=hair)
    d.ellipse(box(-36, -46, 36, 52), fill=skin)
    d.chord(box(-38, -62, 38, -4), 180, 360, fill=hair)  # fringe over the forehead

    if face.male:
        stubble = _blend(skin, (55, 45, 40), 0.6)
        d.chord(box(-34, -10, 34, 52), 20, 160, fill=stubble)
    if not face.young:
        line = _blend(skin, (70, 55, 50), 0.7)
        for y in (-24, -18):
            d.line(box(-18, y, 18, y), fill=line, width=max(1, round(2 * s)))
        d.line(box(-22, 10, -16, 28), fill=line, width=max(1, round(2 * s)))
        d.line(box(22, 10, 16, 28), fill=line, width=max(1, round(2 * s)))

    _draw_eyes_and_brows(d, box, face, s)
    _draw_mouth(d, box, face, skin, s)
    if face.eyeglasses:
        for ex in (-15, 15):
            d.ellipse(box(ex - 11, -16, ex + 11, 4), outline=(10, 10, 10),
                      width=max(1, round(3 * s)))
        d.line(box(-4, -8, 4, -8), fill=(10, 10, 10), width=max(1, round(3 * s)))

    # Mild sensor noise so that no two images are pixel-identical.
    arr = np.asarray(img, dtype=np.int16)
    noise = np.random.default_rng(noise_seed).integers(-6, 7, arr.shape, dtype=np.int16)
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))


def _draw_eyes_and_brows(d: ImageDraw.ImageDraw, box, face: Face, s: float) -> None:
    wide = face.expression in ("surprised", "fearful")
    narrow = face.expression in ("angry", "disgusted", "contemptuous")
    eye_h = 7 if wide else 3 if narrow else 5
    pupil = {"frontal": 0, "left": -3, "right": 3}[face.gaze]
    for side in (-1, 1):
        ex = 15 * side
        d.ellipse(box(ex - 8, -6 - eye_h, ex + 8, -6 + eye_h), fill=(250, 250, 250))
        d.ellipse(box(ex - 3 + pupil, -9, ex + 3 + pupil, -3), fill=(30, 20, 20))
        # Brow: inner end (near the nose) and outer end heights set the expression.
        inner, outer = {
            "angry": (-12, -22), "surprised": (-28, -28), "fearful": (-26, -20),
            "sad": (-24, -16), "disgusted": (-14, -18), "contemptuous": (-18, -22),
        }.get(face.expression, (-19, -19))
        if face.expression == "contemptuous" and side == 1:
            inner, outer = inner - 6, outer - 6
        width = max(1, round((5 if face.male else 3) * s))
        d.line(box(ex + 10 * side, outer, ex - 8 * side, inner), fill=(40, 30, 25), width=width)


def _draw_mouth(d: ImageDraw.ImageDraw, box, face: Face, skin, s: float) -> None:
    lips = (200, 30, 50) if not face.male else _blend(skin, (120, 50, 50), 0.6)
    width = max(1, round(4 * s))
    e = face.expression
    if e == "happy" or (e == "neutral" and face.smiling):
        d.chord(box(-16, 14, 16, 36), 0, 180, fill=(250, 250, 250), outline=lips, width=width)
    elif e == "sad":
        d.arc(box(-14, 26, 14, 42), 200, 340, fill=lips, width=width)
    elif e == "surprised":
        d.ellipse(box(-8, 18, 8, 38), fill=(60, 20, 20), outline=lips, width=width)
    elif e == "fearful":
        d.rectangle(box(-14, 22, 14, 32), fill=(60, 20, 20), outline=lips, width=width)
    elif e == "angry":
        d.line(box(-12, 26, 12, 26), fill=lips, width=max(1, round(6 * s)))
    elif e == "disgusted":
        d.line(box(-14, 28, -5, 22) + box(5, 28, 14, 22), fill=lips, width=width)
    elif e == "contemptuous":
        d.line(box(-12, 28, 4, 28) + box(14, 20, 14, 20)[:2], fill=lips, width=width)
    else:
        d.line(box(-12, 28, 12, 28), fill=lips, width=width)


def _identity(rng: np.random.Generator) -> dict:
    return {
        "skin": int(rng.integers(len(SKIN_TONES))),
        "background": tuple(int(v) for v in rng.integers(60, 230, 3)),
        "clothes": tuple(int(v) for v in rng.integers(20, 200, 3)),
        "shift": (int(rng.integers(-5, 6)), int(rng.integers(-5, 6))),
    }


def celeba_labels(face: Face, rng: np.random.Generator) -> dict[str, int]:
    """All 40 CelebA attributes (0/1) for a drawn face."""
    labels = {a: int(rng.random() < 0.2) for a in CELEBA_ATTRIBUTES}
    drawn = {
        "Black_Hair": face.hair == "Black_Hair",
        "Blond_Hair": face.hair == "Blond_Hair",
        "Brown_Hair": face.hair == "Brown_Hair",
        "Gray_Hair": False,
        "Bald": False,
        "Male": face.male,
        "Young": face.young,
        "Smiling": face.smiling,
        "Mouth_Slightly_Open": face.smiling,
        "Eyeglasses": face.eyeglasses,
        "No_Beard": not face.male,
        "5_o_Clock_Shadow": face.male,
        "Wearing_Lipstick": not face.male,
        "Heavy_Makeup": not face.male,
        "Bushy_Eyebrows": face.male,
    }
    labels.update({k: int(v) for k, v in drawn.items()})
    return labels


def write_celeba(root: str | Path, num_images: int = 2000, seed: int = 0,
                 test_fraction: float = 0.1, progress: bool = False) -> Path:
    """Write `img_align_celeba/`, `list_attr_celeba.txt` and `list_eval_partition.txt`."""
    root = Path(root)
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    rows, partition = [], []
    num_test = int(round(num_images * test_fraction))
    for i in tqdm(range(num_images), desc="CelebA", unit="img", disable=not progress):
        rng = np.random.default_rng([seed, i])
        face = Face(
            hair=str(rng.choice(list(HAIR_COLOURS))),
            male=bool(rng.random() < 0.5),
            young=bool(rng.random() < 0.6),
            smiling=bool(rng.random() < 0.5),
            eyeglasses=bool(rng.random() < 0.15),
            **_identity(rng),
        )
        name = f"{i + 1:06d}.jpg"
        draw_face(face, CELEBA_SIZE, noise_seed=seed * 1_000_003 + i).save(
            images / name, quality=95
        )
        labels = celeba_labels(face, rng)
        rows.append(name + " " + " ".join(f"{2 * labels[a] - 1:2d}" for a in CELEBA_ATTRIBUTES))
        # CelebA's own partition codes: 0 train, 1 validation, 2 test; the test images come last.
        partition.append(f"{name} {2 if i >= num_images - num_test else 0}")
    header = [str(num_images), " ".join(CELEBA_ATTRIBUTES)]
    (root / "list_attr_celeba.txt").write_text("\n".join(header + rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


def write_rafd(root: str | Path, num_identities: int = 24, seed: int = 0,
               test_identities: int = 4, progress: bool = False) -> Path:
    """Write RaFD as `train|test/<expression>/` with the original RaFD file names."""
    root = Path(root)
    for ident in tqdm(range(1, num_identities + 1), desc="RaFD", unit="identity",
                      disable=not progress):
        rng = np.random.default_rng([seed, 1_000_000 + ident])
        male = bool(rng.random() < 0.5)
        base = {
            "hair": str(rng.choice(list(HAIR_COLOURS))),
            "male": male,
            "young": bool(rng.random() < 0.7),
            **_identity(rng),
        }
        ethnicity = str(rng.choice(RAFD_ETHNICITIES))
        split = "test" if ident > num_identities - test_identities else "train"
        for e, expression in enumerate(RAFD_EXPRESSIONS):
            folder = root / split / expression
            folder.mkdir(parents=True, exist_ok=True)
            for g, gaze in enumerate(RAFD_GAZES):
                face = Face(expression=expression, gaze=gaze, **base)
                name = (f"Rafd090_{ident:02d}_{ethnicity}_{'male' if male else 'female'}_"
                        f"{expression}_{gaze}.jpg")
                noise = seed * 1_000_003 + ident * 100 + e * 10 + g
                draw_face(face, RAFD_SIZE, noise_seed=noise).save(folder / name, quality=95)
    return root


def synthetic_celeba_at(url: str, num_images: int = 2000, seed: int = 0) -> str:
    """Synthetic CelebA under `url` (a local folder or an s3:// prefix), written once: where
    its attribute file is already, nothing is written."""
    from stargan_core.storage import filesystem, is_local, join

    fs, path = filesystem(url)
    if fs.exists(join(path, "list_attr_celeba.txt")):
        return url
    if is_local(fs):
        write_celeba(path, num_images, seed)
        return url
    with tempfile.TemporaryDirectory() as tmp:
        write_celeba(tmp, num_images, seed)
        # The images first: the attribute file, uploaded last, marks the upload complete.
        fs.put(f"{tmp}/img_align_celeba", join(path, "img_align_celeba"), recursive=True)
        for name in ("list_eval_partition.txt", "list_attr_celeba.txt"):
            fs.put_file(f"{tmp}/{name}", join(path, name))
    return url
