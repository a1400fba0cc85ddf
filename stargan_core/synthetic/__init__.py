"""Synthetic face data sets in CelebA's and RaFD's exact layouts, with exact ground truth.

No real data can be downloaded where this project is tested, so it draws its own faces:
`faces` draws one photo (a `Face` in a `Scene`), `datasets` writes whole data sets and the
ground truth of any edit of their images.
"""

from stargan_core.synthetic.datasets import (
    CELEBA_SIZE,
    METADATA,
    RAFD_SIZE,
    SyntheticCeleba,
    SyntheticRafd,
    celeba_labels,
    synthetic_celeba_at,
    with_attributes,
    write_celeba,
    write_rafd,
)
from stargan_core.synthetic.faces import HAIR_COLOURS, STYLES, Face, Scene, draw_face, photograph

__all__ = [
    "CELEBA_SIZE",
    "HAIR_COLOURS",
    "METADATA",
    "RAFD_SIZE",
    "STYLES",
    "Face",
    "Scene",
    "SyntheticCeleba",
    "SyntheticRafd",
    "celeba_labels",
    "draw_face",
    "photograph",
    "synthetic_celeba_at",
    "with_attributes",
    "write_celeba",
    "write_rafd",
]
