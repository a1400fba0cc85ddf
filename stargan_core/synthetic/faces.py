"""Drawing one synthetic face photo: a `Face` (who, with which attributes) in a `Scene` (where,
in which light, through which camera).

The two are apart so that the exact answer to any edit exists: the same scene drawn with
other attributes is the ground truth of that translation, down to the sensor noise.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

HAIR_COLOURS = {
    "Black_Hair": (28, 24, 24),
    "Blond_Hair": (236, 204, 110),
    "Brown_Hair": (120, 72, 36),
}
SKIN_TONES = ((240, 205, 175), (222, 172, 130), (176, 122, 88), (120, 82, 58))
STYLES = ("hard", "easy")


@dataclass(frozen=True)
class Face:
    """Who is drawn: identity (skin, clothes) and the rendered attributes."""

    hair: str
    male: bool
    young: bool
    smiling: bool = False
    eyeglasses: bool = False
    expression: str = "neutral"
    gaze: str = "frontal"
    skin: int = 0
    clothes: tuple[int, int, int] = (60, 60, 120)


@dataclass(frozen=True)
class Scene:
    """Everything about the photo that is not the face: background, framing, light, camera.

    `easy` scenes are a flat colour under even light; `hard` ones (the default) have textured,
    cluttered backgrounds, a lighting gradient, stronger sensor noise, JPEG artefacts and small
    shifts in position and scale, as real photos do.
    """

    background: tuple[int, int, int] = (200, 200, 200)
    shift: tuple[int, int] = (0, 0)  # face offset in pixels of a 178-wide image
    scale: float = 1.0
    clutter_seed: int | None = None  # None: a flat background
    light: tuple[float, float, float] = (1.0, 0.0, 0.0)  # gain, gradient strength, angle
    noise: float = 3.5  # sensor noise, standard deviation in 8-bit levels
    jpeg_quality: int = 95


def random_scene(rng: np.random.Generator, style: str) -> Scene:
    """A scene drawn from `rng` (a fixed number of draws per style)."""
    if style not in STYLES:
        raise ValueError(f"unknown synthetic style '{style}' (known: {', '.join(STYLES)})")
    background = tuple(int(v) for v in rng.integers(60, 230, 3))
    if style == "easy":
        return Scene(background, shift=(int(rng.integers(-5, 6)), int(rng.integers(-5, 6))))
    return Scene(
        background=background,
        shift=(int(rng.integers(-8, 9)), int(rng.integers(-8, 9))),
        scale=float(rng.uniform(0.9, 1.1)),
        clutter_seed=int(rng.integers(2**31)),
        light=(float(rng.uniform(0.8, 1.15)), float(rng.uniform(0.0, 0.35)),
               float(rng.uniform(0, 2 * np.pi))),
        noise=float(rng.uniform(2.0, 7.0)),
        jpeg_quality=int(rng.integers(70, 96)),
    )


def _blend(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, ...]:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=True))


def _background(scene: Scene, size: tuple[int, int]) -> Image.Image:
    """A flat colour, or a smooth colour texture under random shapes (the clutter)."""
    w, h = size
    img = Image.new("RGB", size, scene.background)
    if scene.clutter_seed is None:
        return img
    rng = np.random.default_rng(scene.clutter_seed)
    coarse = rng.integers(0, 256, (int(rng.integers(3, 7)), int(rng.integers(3, 7)), 3))
    texture = Image.fromarray(coarse.astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    img = Image.blend(img, texture, float(rng.uniform(0.3, 0.7)))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 15))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, 2) * w)
        y0, y1 = sorted(rng.uniform(-0.2, 1.2, 2) * h)
        kind = int(rng.integers(4))
        if kind == 0:
            d.rectangle([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            d.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind == 2:
            d.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 8)))
        else:
            points = [(float(x), float(y)) for x, y in rng.uniform(0, 1, (3, 2)) * (w, h)]
            d.polygon(points, fill=colour)
        if rng.random() < 0.3:  # stripes: fine texture that the generator must keep
            step = int(rng.integers(3, 8))
            for x in range(int(x0), int(x1), step):
                d.line([x, y0, x, y1], fill=_blend(colour, (0, 0, 0), 0.4), width=1)
    return img


def draw_face(face: Face, scene: Scene, size: tuple[int, int]) -> Image.Image:
    """The noiseless picture: background, then the face centred and scaled to the width."""
    w, h = size
    s = w / 178.0 * scene.scale
    cx = w / 2 + scene.shift[0] * w / 178.0
    cy = h / 2 + scene.shift[1] * w / 178.0 + 6 * s
    img = _background(scene, size)
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
    return img


def photograph(face: Face, scene: Scene, size: tuple[int, int], noise_seed: int) -> bytes:
    """The JPEG file of `face` in `scene`: the drawing under the scene's light, with sensor
    noise (fixed by `noise_seed`) and the camera's JPEG compression."""
    pixels = np.asarray(draw_face(face, scene, size), dtype=np.float32)
    gain, strength, angle = scene.light
    if (gain, strength) != (1.0, 0.0):
        h, w = pixels.shape[:2]
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((x - w / 2) * np.cos(angle) + (y - h / 2) * np.sin(angle)) / (w / 2)
        pixels = pixels * (gain * (1 + strength * ramp))[..., None]
    noise = np.random.default_rng(noise_seed).normal(0.0, scene.noise, pixels.shape)
    image = Image.fromarray(np.clip(np.round(pixels + noise), 0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=scene.jpeg_quality)
    return out.getvalue()


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
