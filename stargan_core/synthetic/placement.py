"""A photo placed into a larger canvas at a known scale, angle and position: where any point
of the photo lands is known exactly, so a face found in the canvas can be checked against it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF


def place(photo: torch.Tensor, scale: float, angle: float, offset: tuple[int, int],
          canvas: tuple[int, int] = (1024, 768)) -> tuple[torch.Tensor, np.ndarray]:
    """A square uint8 (3, N, N) `photo` scaled, rotated by `angle` degrees about its centre
    (counter-clockwise on screen) and put at `offset` on a grey canvas (width, height); with
    the 2x3 map from the photo's pixel coordinates to the canvas's."""
    turned = TF.rotate(TF.resize(photo, [round(photo.shape[1] * scale)] * 2, antialias=True),
                       angle, expand=True, fill=[128, 128, 128])
    out = torch.full((3, canvas[1], canvas[0]), 128, dtype=torch.uint8)
    h, w = turned.shape[-2:]
    out[:, offset[1]:offset[1] + h, offset[0]:offset[0] + w] = turned
    # Pixel centres: scale about (0, 0), rotate about the scaled photo's centre, then move to
    # where the rotated image lands.
    centre = (photo.shape[1] * scale - 1) / 2
    a = math.radians(angle)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    shift = np.array([offset[0] + (w - 1) / 2, offset[1] + (h - 1) / 2]) - rot @ [centre, centre]
    return out, np.hstack([rot * scale, shift[:, None]])
