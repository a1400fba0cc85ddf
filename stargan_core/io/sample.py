"""One image of a data set with its raw labels."""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class DataFormatError(ValueError):
    """A data set on disk that does not have the layout its reader expects."""


@dataclass(frozen=True)
class Sample:
    """An image path, its split (`train` or `test`) and its labels as the data set names them.

    CelebA labels are the 40 attribute columns as 0/1; RaFD's are `expression` plus, from the
    original file names, `identity`, `ethnicity`, `gender`, `gaze` and `angle`; an ImageFolder's
    is `domain`, the folder name.
    """

    path: str
    split: str
    labels: dict[str, object] = field(default_factory=dict)
