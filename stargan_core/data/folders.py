"""RaFD and custom ImageFolder layouts, format detection, and the one entry point `read_dataset`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from stargan_core.domains import RAFD_EXPRESSIONS, DomainSpec
from stargan_core.io.celeba import ATTR_FILE, IMAGE_DIR, read_celeba
from stargan_core.io.sample import IMAGE_SUFFIXES, DataFormatError, Sample
from stargan_core.storage import Location, join, locate, url_of

FORMATS = ("auto", "celeba", "rafd", "imagefolder")
SPLITS = ("train", "test")
# e.g. Rafd090_01_Caucasian_female_angry_frontal.jpg: angle, identity, ethnicity, gender,
# expression, gaze.
SYNTHETIC_DESCRIPTION = "synthetic.json"  # synthetic.METADATA, beside a synthetic set's images
RAFD_NAME = re.compile(
    r"^Rafd(?P<angle>\d{3})_(?P<identity>\d+)_(?P<ethnicity>[A-Za-z]+)_(?P<gender>male|female)_"
    r"(?P<expression>[a-z]+)_(?P<gaze>frontal|left|right)$"
)


@dataclass(frozen=True)
class RawDataset:
    """A data set read from storage: its format, its samples and the label space it offers.

    `others` are the files that are not inputs (not an image, or outside the layout), each with
    its reason: listed so that preparation can report them instead of dropping them silently.
    """

    format: str
    root: str
    samples: list[Sample]
    spec: DomainSpec
    others: list[tuple[str, str]] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]


@dataclass(frozen=True)
class Listing:
    """Every file under a root (local folder or s3:// prefix), as paths relative to it.

    Hidden files (`.DS_Store`, `._*`) are not data and are left out.
    """

    root: str
    files: list[str]
    url: Callable[[str], str]
    stamps: dict[str, str] = field(default_factory=dict)  # size and ETag / mtime per file

    @classmethod
    def of(cls, root: str | Location, storage_options: dict[str, Any] | None = None
           ) -> Listing:
        location = locate(root, storage_options)
        fs, base = location.fs, location.path
        root = root if isinstance(root, str) else location.url
        if not fs.isdir(base):
            raise DataFormatError(f"data folder {root} does not exist")
        prefix = base.rstrip("/") + "/"
        found = {p[len(prefix):]: info for p, info in fs.find(base, detail=True).items()}
        stamps = {
            rel: f"{info.get('size')}:{info.get('ETag') or info.get('mtime')}"
            for rel, info in sorted(found.items())
            if not any(part.startswith(".") for part in rel.split("/"))
        }
        return cls(str(root), list(stamps), lambda rel: url_of(fs, join(base, rel)), stamps)

    def at_depth(self, depth: int) -> list[list[str]]:
        """The files `depth` levels down, each split into its path parts."""
        return [parts for f in self.files if len(parts := f.split("/")) == depth]

    def has_dir(self, name: str) -> bool:
        return any(f.startswith(name + "/") for f in self.files)


def _is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def _rafd_labels(name: str) -> dict[str, object]:
    match = RAFD_NAME.match(PurePosixPath(name).stem)
    return dict(match.groupdict()) if match else {}


def _image_files(listing: Listing, depth: int, split_layout: bool
                 ) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """The image files `depth` levels down (under a split folder in a split layout), and every
    other file with the reason it is not an input."""
    images, others = [], []
    for name in listing.files:
        parts = name.split("/")
        if name == SYNTHETIC_DESCRIPTION:  # how a synthetic set was drawn: not an input
            continue
        if len(parts) != depth or (split_layout and parts[0] not in SPLITS):
            layout = ["<split>"] * split_layout + ["<folder>"] * (depth - 1 - split_layout)
            layout_text = "/".join([*layout, "<image>"])
            others.append((listing.url(name), f"outside the {layout_text} layout"))
        elif not _is_image(parts[-1]):
            others.append((listing.url(name), "not an image file"))
        else:
            images.append(parts)
    return images, others


def read_rafd(
    root: str, test_identities: int = 4, storage_options: dict[str, Any] | None = None
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """RaFD as `train|test/<expression>/*`, or a flat folder of original RaFD file names.

    A flat folder has no split: the `test_identities` highest-numbered identities are held out.
    Returns the samples and the other files found, each with the reason it is not an input.
    """
    listing = Listing.of(root, storage_options)
    if any(listing.has_dir(s) for s in SPLITS):
        images, others = _image_files(listing, 3, split_layout=True)
        samples = []
        for split, expression, name in images:
            if expression not in RAFD_EXPRESSIONS:
                raise DataFormatError(
                    f"{listing.url(split + '/' + expression)}: '{expression}' is not a RaFD "
                    f"expression (known: {', '.join(RAFD_EXPRESSIONS)})"
                )
            labels = _rafd_labels(name) | {"expression": expression}
            samples.append(Sample(listing.url(f"{split}/{expression}/{name}"), split, labels))
        return samples, others
    images, others = _image_files(listing, 1, split_layout=False)
    named = [(parts[0], _rafd_labels(parts[0])) for parts in images]
    unnamed = [name for name, labels in named if not labels]
    if unnamed or not named:
        raise DataFormatError(
            f"{root} is neither RaFD's train|test/<expression>/ layout nor a folder of original "
            f"RaFD file names (e.g. Rafd090_01_Caucasian_female_angry_frontal.jpg); "
            f"{'no images found' if not named else 'first other file: ' + unnamed[0]}"
        )
    identities = sorted({int(labels["identity"]) for _, labels in named})
    held_out = set(identities[-test_identities:]) if len(identities) > test_identities else set()
    samples = [
        Sample(listing.url(name), "test" if int(labels["identity"]) in held_out else "train",
               labels)
        for name, labels in named
    ]
    return samples, others


def read_imagefolder(root: str, storage_options: dict[str, Any] | None = None
                     ) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Custom domains: `[train|test/]<domain>/*` folders, the folder names being the domains.

    Returns the samples and the other files found, each with the reason it is not an input.
    """
    listing = Listing.of(root, storage_options)
    if any(listing.has_dir(s) for s in SPLITS):
        images, others = _image_files(listing, 3, split_layout=True)
        samples = [Sample(listing.url("/".join(parts)), parts[0], {"domain": parts[1]})
                   for parts in images]
    else:
        images, others = _image_files(listing, 2, split_layout=False)
        samples = [Sample(listing.url("/".join(parts)), "train", {"domain": parts[0]})
                   for parts in images]
    if not samples:
        raise DataFormatError(f"{root} has no images in <domain>/ sub-folders")
    return samples, others


def _unlisted_celeba_images(root: str, samples: list[Sample],
                            storage_options: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The files in CelebA's image folder that its attribute list does not name."""
    listing = Listing.of(root, storage_options)
    listed = {s.path for s in samples}
    return [(url, f"not listed in {ATTR_FILE}") for f in listing.files
            if f.startswith(IMAGE_DIR + "/") and (url := listing.url(f)) not in listed]


def detect_format(root: str, storage_options: dict[str, Any] | None = None) -> str:
    """`celeba` when the attribute list is there, `rafd` for RaFD names, else `imagefolder`."""
    listing = Listing.of(root, storage_options)
    if ATTR_FILE in listing.files:
        return "celeba"
    if listing.has_dir(IMAGE_DIR):
        raise DataFormatError(f"{root} looks like CelebA ({IMAGE_DIR}/) but {ATTR_FILE} is "
                              f"missing: put CelebA's attribute list next to {IMAGE_DIR}/")
    if any(RAFD_NAME.match(PurePosixPath(f).stem) for f in listing.files[:50]):
        return "rafd"
    split_dirs = [parts[1] for parts in listing.at_depth(3) if parts[0] in SPLITS]
    if split_dirs and all(d in RAFD_EXPRESSIONS for d in split_dirs):
        return "rafd"
    return "imagefolder"


def read_datasets(
    roots: list[str], format: str = "auto", domains: list[str] | None = None
) -> tuple[list[RawDataset], DomainSpec]:
    """One data set, or several for joint training (CelebA + RaFD with the mask vector)."""
    raws = [read_dataset(root, format, domains) for root in roots]
    return raws, DomainSpec.joint(*(r.spec for r in raws))


def read_dataset(
    root: str, format: str = "auto", domains: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> RawDataset:
    """Read a data set (local folder or s3:// prefix); `domains` selects CelebA attributes
    (default: the paper's five)."""
    if format not in FORMATS:
        raise DataFormatError(f"unknown format '{format}' (known: {', '.join(FORMATS)})")
    root = str(root)
    if format == "auto":
        format = detect_format(root, storage_options)
    others: list[tuple[str, str]] = []
    if format == "celeba":
        samples = read_celeba(root, storage_options=storage_options)
        others = _unlisted_celeba_images(root, samples, storage_options)
        spec = DomainSpec.celeba(domains) if domains else DomainSpec.celeba()
    elif format == "rafd":
        samples, others = read_rafd(root, storage_options=storage_options)
        spec = DomainSpec.rafd()
    else:
        samples, others = read_imagefolder(root, storage_options)
        names = sorted({str(s.labels["domain"]) for s in samples})
        spec = DomainSpec.categorical(PurePosixPath(root.rstrip("/")).name or "custom", names)
    if domains and format != "celeba":
        raise DataFormatError(f"choosing domains works for CelebA only, not for {format}")
    return RawDataset(format, root, samples, spec, others)
