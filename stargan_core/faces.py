"""Faces in photos: find every face, align each to the framing the model was trained on (from
its eye centres, by a similarity transform), and put the edit back into the photo with a
feathered edge, so that every pixel away from the faces stays as it was.

Detection and landmarks: dlib's HOG face detector and its 5-point shape predictor (the model
file ships in `face-recognition-models`); nothing is downloaded at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from stargan_core.data.celeba import ALIGNED, CROP

# Where the eyes of CelebA's aligned 178x218 faces are, the image's left eye first: about the
# means of list_landmarks_align_celeba.txt (not on this machine to check; rounded).
CELEBA_EYES = ((69.0, 111.5), (107.5, 111.5))
FEATHER = 0.12  # of the square's side: the width of the blend at the edge of a pasted face


@dataclass(frozen=True)
class AlignedFace:
    """Where one face of a photo is: the similarity transform taking photo pixel coordinates
    (x, y) to the coordinates of CelebA's 178x218 aligned frame."""

    matrix: tuple[tuple[float, float, float], tuple[float, float, float]]

    @property
    def scale(self) -> float:
        """Aligned-frame pixels per photo pixel."""
        (a, b, _), _ = self.matrix
        return math.hypot(a, b)

    def _photo_to_square(self) -> np.ndarray:
        """The 2x3 map from photo pixels to the unit square the model sees, (0, 0) at its top
        left, (1, 1) at its bottom right."""
        left, top = (ALIGNED[0] - CROP) / 2, (ALIGNED[1] - CROP) / 2
        to_square = np.array([[1 / CROP, 0, -left / CROP], [0, 1 / CROP, -top / CROP]])
        return to_square @ np.vstack([np.array(self.matrix), [0, 0, 1]])

    def cut(self, photo: torch.Tensor, size: int) -> torch.Tensor:
        """The model's input: the aligned square of a uint8 (3, H, W) photo at `size` pixels,
        in [-1, 1]. Warped at about the face's own resolution, then resized with antialiasing,
        so that a large face is not aliased."""
        side = max(size, round(CROP / self.scale))
        inverse = np.linalg.inv(np.vstack([self._photo_to_square(), [0, 0, 1]]))[:2]
        # Square pixel centres -> photo coordinates -> grid_sample's [-1, 1].
        steps = (torch.arange(side, dtype=torch.float64) + 0.5) / side
        v, u = torch.meshgrid(steps, steps, indexing="ij")
        points = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.from_numpy(inverse).T
        height, width = photo.shape[-2:]
        grid = torch.stack([(2 * points[..., 0] + 1) / width - 1,
                            (2 * points[..., 1] + 1) / height - 1], -1)
        square = F.grid_sample(photo[None].float(), grid[None].float(), mode="bilinear",
                               padding_mode="zeros", align_corners=False)[0]
        square = TF.resize(square, [size, size], antialias=True)
        return square / 127.5 - 1

    def paste(self, photo: torch.Tensor, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """`photo` (uint8, 3 x H x W) with the change `fake - x` (the model's square, [-1, 1])
        carried back through the transform and blended in with a feathered edge; pixels outside
        the face's square are returned untouched."""
        height, width = photo.shape[-2:]
        to_square = self._photo_to_square()
        inverse = np.linalg.inv(np.vstack([to_square, [0, 0, 1]]))[:2]
        corners = np.array([[0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]) @ inverse.T
        x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [width, height])
        x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [width, height])
        if x0 >= x1 or y0 >= y1:
            return photo.clone()
        ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64),
                                torch.arange(x0, x1, dtype=torch.float64), indexing="ij")
        square = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ torch.from_numpy(to_square).T
        u, v = square[..., 0], square[..., 1]
        edge = torch.minimum(torch.minimum(u, 1 - u), torch.minimum(v, 1 - v))
        weight = (edge / FEATHER).clamp(0, 1).float()
        delta = (fake.float() - x.float())[None].cpu()
        grid = (square[..., :2] * 2 - 1)[None].float()
        change = F.grid_sample(delta, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)[0]
        out = photo.clone()
        region = photo[:, y0:y1, x0:x1].float() + 127.5 * change * weight
        out[:, y0:y1, x0:x1] = region.round().clamp(0, 255).to(torch.uint8)
        return out


def align(eyes: np.ndarray) -> AlignedFace:
    """The face whose eye centres (image-left first, photo pixels) are `eyes`: the similarity
    that puts them where CelebA's aligned faces have theirs."""
    src = np.asarray(eyes, dtype=np.float64)
    src = src[np.argsort(src[:, 0])]
    dst = np.asarray(CELEBA_EYES)
    s, d = src[1] - src[0], dst[1] - dst[0]
    # As complex numbers, the similarity is z -> a z + b with a = d / s.
    a = complex(*d) / complex(*s)
    b = complex(*dst[0]) - a * complex(*src[0])
    return AlignedFace(((a.real, -a.imag, b.real), (a.imag, a.real, b.imag)))


class FaceDetector:
    """dlib's HOG frontal face detector with its 5-point landmarks (eye corners and nose).

    Detections scoring under `threshold` are dropped: on the test photographs, at the photo's
    own resolution, false faces (a round badge) scored up to 0.22 and real ones 0.69 and more.
    Small faces are looked for again at twice the resolution only when none was found (where
    the badge can score higher).
    """

    def __init__(self, threshold: float = 0.3) -> None:
        self.detector, self.landmarks = _dlib_models()
        self.threshold = threshold

    def __call__(self, photo: torch.Tensor) -> list[AlignedFace]:
        """Every face of a uint8 (3, H, W) photo, left to right."""
        pixels = np.ascontiguousarray(photo.permute(1, 2, 0).numpy())
        boxes = []
        for upsample in (0, 1):
            boxes = self.detector.run(pixels, upsample, self.threshold)[0]
            if boxes:
                break
        faces = []
        for box in sorted(boxes, key=lambda b: b.left()):
            shape = self.landmarks(pixels, box)
            points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(4)], float)
            # Points 0-1: one eye's corners, 2-3: the other's.
            faces.append(align(np.stack([points[:2].mean(0), points[2:].mean(0)])))
        return faces


@cache
def _dlib_models() -> tuple[object, object]:
    import importlib.util
    from pathlib import Path

    import dlib

    # The package's own __init__ needs pkg_resources, which new setuptools no longer has: find
    # its model file without importing it.
    package = importlib.util.find_spec("face_recognition_models")
    if package is None or not package.submodule_search_locations:
        raise RuntimeError("face framing needs the package face-recognition-models: install "
                           "the project again (pip install -e .)")
    model = Path(package.submodule_search_locations[0], "models",
                 "shape_predictor_5_face_landmarks.dat")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))
