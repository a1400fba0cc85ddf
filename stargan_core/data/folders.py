"""RaFD and custom ImageFolder layouts, format detection, and the one entry point `read_dataset`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stargan_core.data.celeba import ATTR_FILE, read_celeba
from stargan_core.data.sample import IMAGE_SUFFIXES, DataFormatError, Sample
from stargan_core.domains import RAFD_EXPRESSIONS, DomainSpec

FORMATS = ("auto", "celeba", "rafd", "imagefolder")
SPLITS = ("train", "test")
# e.g. Rafd090_01_Caucasian_female_angry_frontal.jpg: angle, identity, ethnicity, gender,
# expression, gaze.
RAFD_NAME = re.compile(
    r"^Rafd(?P<angle>\d{3})_(?P<identity>\d+)_(?P<ethnicity>[A-Za-z]+)_(?P<gender>male|female)_"
    r"(?P<expression>[a-z]+)_(?P<gaze>frontal|left|right)$"
)


@dataclass(frozen=True)
class RawDataset:
    """A data set read from disk: its format, its samples and the label space it offers."""

    format: str
    root: str
    samples: list[Sample]
    spec: DomainSpec

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _rafd_labels(path: Path) -> dict[str, object]:
    match = RAFD_NAME.match(path.stem)
    return dict(match.groupdict()) if match else {}


def read_rafd(root: str | Path, test_identities: int = 4) -> list[Sample]:
    """RaFD as `train|test/<expression>/*`, or a flat folder of original RaFD file names.

    A flat folder has no split: the `test_identities` highest-numbered identities are held out.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"RaFD folder {root} does not exist")
    if any((root / s).is_dir() for s in SPLITS):
        samples = []
        for split in SPLITS:
            if not (root / split).is_dir():
                continue
            for folder in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                if folder.name not in RAFD_EXPRESSIONS:
                    raise DataFormatError(
                        f"{folder}: '{folder.name}' is not a RaFD expression "
                        f"(known: {', '.join(RAFD_EXPRESSIONS)})"
                    )
                for path in _images(folder):
                    labels = _rafd_labels(path)
                    labels["expression"] = folder.name
                    samples.append(Sample(str(path), split, labels))
        return samples
    samples = [(p, _rafd_labels(p)) for p in _images(root)]
    unnamed = [p.name for p, labels in samples if not labels]
    if unnamed or not samples:
        raise DataFormatError(
            f"{root} is neither RaFD's train|test/<expression>/ layout nor a folder of original "
            f"RaFD file names (e.g. Rafd090_01_Caucasian_female_angry_frontal.jpg); "
            f"{'no images found' if not samples else 'first other file: ' + unnamed[0]}"
        )
    identities = sorted({int(labels["identity"]) for _, labels in samples})
    held_out = set(identities[-test_identities:]) if len(identities) > test_identities else set()
    return [
        Sample(str(p), "test" if int(labels["identity"]) in held_out else "train", labels)
        for p, labels in samples
    ]


def read_imagefolder(root: str | Path) -> list[Sample]:
    """Custom domains: `[train|test/]<domain>/*` folders, the folder names being the domains."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"image folder {root} does not exist")
    splits = [s for s in SPLITS if (root / s).is_dir()] or [None]
    samples = []
    for split in splits:
        base = root / split if split else root
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            for path in _images(folder):
                samples.append(Sample(str(path), split or "train", {"domain": folder.name}))
    if not samples:
        raise DataFormatError(f"{root} has no images in <domain>/ sub-folders")
    return samples


def detect_format(root: str | Path) -> str:
    """`celeba` when the attribute list is there, `rafd` for RaFD names, else `imagefolder`."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"data folder {root} does not exist")
    if (root / ATTR_FILE).is_file():
        return "celeba"
    for candidate in [root, *root.glob("*/*"), *root.glob("*")]:
        if candidate.is_dir() and any(RAFD_NAME.match(p.stem) for p in _images(candidate)[:5]):
            return "rafd"
    if any((root / s).is_dir() for s in SPLITS) and all(
        p.name in RAFD_EXPRESSIONS for s in SPLITS if (root / s).is_dir()
        for p in (root / s).iterdir() if p.is_dir()
    ):
        return "rafd"
    return "imagefolder"


def read_datasets(
    roots: list[str], format: str = "auto", domains: list[str] | None = None
) -> tuple[list[RawDataset], DomainSpec]:
    """One data set, or several for joint training (CelebA + RaFD with the mask vector)."""
    raws = [read_dataset(root, format, domains) for root in roots]
    return raws, DomainSpec.joint(*(r.spec for r in raws))


def read_dataset(
    root: str | Path, format: str = "auto", domains: list[str] | None = None
) -> RawDataset:
    """Read a data set folder; `domains` selects CelebA attributes (default: the paper's five)."""
    if format not in FORMATS:
        raise DataFormatError(f"unknown format '{format}' (known: {', '.join(FORMATS)})")
    if format == "auto":
        format = detect_format(root)
    if format == "celeba":
        samples = read_celeba(root)
        spec = DomainSpec.celeba(domains) if domains else DomainSpec.celeba()
    elif format == "rafd":
        samples = read_rafd(root)
        spec = DomainSpec.rafd()
    else:
        samples = read_imagefolder(root)
        names = sorted({str(s.labels["domain"]) for s in samples})
        spec = DomainSpec.categorical(Path(root).name or "custom", names)
    if domains and format != "celeba":
        raise DataFormatError(f"choosing domains works for CelebA only, not for {format}")
    return RawDataset(format, str(root), samples, spec)
