"""CelebA's own layout: `img_align_celeba/`, `list_attr_celeba.txt`, `list_eval_partition.txt`."""

from __future__ import annotations

import random
from typing import Any

from stargan_core.io.sample import DataFormatError, Sample
from stargan_core.storage import filesystem, join, url_of

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
CROP = 178  # the reference's centre crop of the 178x218 aligned images
ALIGNED = (178, 218)  # width and height of an aligned face


def celeba_square(width: int, height: int) -> tuple[int, int, int]:
    """(left, top, side) of the reference's 178-pixel centre square at the photo's own scale:
    an aligned face at 356x436 is framed exactly as one at 178x218 (scaled by the smaller of
    width / 178 and height / 218), and a small image is never padded."""
    side = max(1, round(CROP * min(width / ALIGNED[0], height / ALIGNED[1])))
    return (width - side) // 2, (height - side) // 2, side


def parse_attribute_file(
    path: str, text: str
) -> tuple[list[str], list[tuple[str, dict[str, int]]]]:
    """Parse CelebA's attribute list: a count line, the attribute names, then `name +-1 ...`."""
    lines = text.splitlines()

    def fail(line_no: int, what: str) -> DataFormatError:
        return DataFormatError(f"{path}:{line_no}: {what}")

    if len(lines) < 2:
        raise fail(len(lines), "expected a count line and a line of attribute names")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise fail(1, f"expected the number of images, got '{lines[0].strip()}'") from None
    names = lines[1].split()
    if not names:
        raise fail(2, "expected the attribute names")
    rows, first_line = [], {}
    for line_no, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if fields[0] in first_line:
            raise fail(line_no, f"{fields[0]} is listed again (first on line "
                                f"{first_line[fields[0]]}): remove one of the two lines")
        first_line[fields[0]] = line_no
        if len(fields) != len(names) + 1:
            raise fail(
                line_no,
                f"expected an image name and {len(names)} values, got {len(fields) - 1} values",
            )
        values = {}
        for name, value in zip(names, fields[1:], strict=True):
            if value not in ("1", "-1"):
                raise fail(line_no, f"value of {name} must be 1 or -1, got '{value}'")
            values[name] = int(value == "1")
        rows.append((fields[0], values))
    if len(rows) != count:
        raise fail(1, f"the header announces {count} images but the file lists {len(rows)}")
    return names, rows


def read_celeba(root: str, test_size: int = 2000,
                storage_options: dict[str, Any] | None = None) -> list[Sample]:
    """Samples of a CelebA folder with all 40 attributes as 0/1.

    Splits come from `list_eval_partition.txt` (0 and 1 train, 2 test) when present; else, as
    the reference code does, a seeded shuffle puts `test_size` images (at most a tenth of the
    set) in the test split.
    """
    fs, base = filesystem(str(root), storage_options)
    attr_file = join(base, ATTR_FILE)
    if not fs.isfile(attr_file):
        raise DataFormatError(f"{root} is not a CelebA folder: {ATTR_FILE} is missing")
    _, rows = parse_attribute_file(url_of(fs, attr_file), fs.cat_file(attr_file).decode())
    partition_file = join(base, PARTITION_FILE)
    if fs.isfile(partition_file):
        split_of = {}
        text = fs.cat_file(partition_file).decode()
        for line_no, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DataFormatError(
                    f"{partition_file}:{line_no}: expected '<image> 0|1|2', got '{line.strip()}'"
                )
            split_of[fields[0]] = "test" if fields[1] == "2" else "train"
        missing = [name for name, _ in rows if name not in split_of]
        if missing:
            raise DataFormatError(
                f"{partition_file} has no split for {len(missing)} images, e.g. {missing[0]}"
            )
    else:
        order = [name for name, _ in rows]
        random.Random(1234).shuffle(order)
        n_test = min(test_size, len(order) // 10)
        split_of = {name: ("test" if i < n_test else "train") for i, name in enumerate(order)}
    return [Sample(url_of(fs, join(base, IMAGE_DIR, name)), split_of[name], labels)
            for name, labels in rows]
