"""Synthetic CelebA and RaFD in their exact on-disk layouts, and the ground truth of any edit.

Each CelebA image i is drawn from a `Face` and a `Scene` that follow from (seed, i) alone, and
`synthetic.json` beside the attribute file records how the set was drawn. So the exact answer
to a translation exists: the same face in the same scene with the target's attributes
(`SyntheticCeleba.truth`). The attributes drawn are hair colour, Male, Young, Smiling and
Eyeglasses; the other CelebA columns are labelled consistently with the drawing where they
overlap (No_Beard, Wearing_Lipstick, ...) and are otherwise random, carrying no visual signal.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from stargan_core.data.folders import SYNTHETIC_DESCRIPTION
from stargan_core.domains import CELEBA_ATTRIBUTES, RAFD_EXPRESSIONS
from stargan_core.synthetic.faces import HAIR_COLOURS, SKIN_TONES, Face, photograph, random_scene

CELEBA_SIZE = (178, 218)  # width, height of img_align_celeba
RAFD_SIZE = (256, 256)
RAFD_ZOOM = 1.35  # RaFD crops: the face from the hair's top to below the chin fills the frame
RAFD_GAZES = ("frontal", "left", "right")
RAFD_ETHNICITIES = ("Caucasian", "Moroccan")
METADATA = SYNTHETIC_DESCRIPTION  # at the set's root: how it was drawn
DRAW_VERSION = 2  # bump when the same (seed, index) would draw other pixels
# CelebA attributes that change the drawing, and the Face field each one sets.
DRAWN = {"Male": "male", "Young": "young", "Smiling": "smiling", "Eyeglasses": "eyeglasses"}


def _identity(rng: np.random.Generator) -> dict[str, Any]:
    return {"skin": int(rng.integers(len(SKIN_TONES))),
            "clothes": tuple(int(v) for v in rng.integers(20, 200, 3))}


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


def with_attributes(face: Face, values: Mapping[str, int]) -> Face | None:
    """`face` with CelebA attribute values or a RaFD expression set (`{"Blond_Hair": 1}`,
    `{"Male": 0}`, `{"happy": 1}`); None when one of them is not drawn (Gray_Hair, Attractive,
    an expression switched off, ...), so that no ground truth exists."""
    changes: dict[str, object] = {}
    for name, value in values.items():
        if name in HAIR_COLOURS and value:
            changes["hair"] = name
        elif name in DRAWN:
            changes[DRAWN[name]] = bool(value)
        elif name in RAFD_EXPRESSIONS and value:
            changes["expression"] = name
        else:
            return None
    return dataclasses.replace(face, **changes)


def _changed(truth: bytes, photo: bytes) -> bytes | None:
    """The truth of an edit, or None where it draws the photo as it was (a smiling face made
    happy)."""
    return None if truth == photo else truth


@dataclass(frozen=True)
class SyntheticCeleba:
    """How a synthetic CelebA set was drawn: enough to draw any of its images again, with any
    attributes."""

    seed: int = 0
    num_images: int = 2000
    style: str = "hard"
    test_fraction: float = 0.1
    draw_version: int = DRAW_VERSION

    @staticmethod
    def name(index: int) -> str:
        return f"{index + 1:06d}.jpg"

    def draw(self, index: int) -> tuple[Face, Any, np.random.Generator]:
        """Image `index`'s face and scene, and the random stream its labels are drawn from."""
        rng = np.random.default_rng([self.seed, index])
        face = Face(
            hair=str(rng.choice(list(HAIR_COLOURS))),
            male=bool(rng.random() < 0.5),
            young=bool(rng.random() < 0.6),
            smiling=bool(rng.random() < 0.5),
            eyeglasses=bool(rng.random() < 0.15),
            **_identity(rng),
        )
        return face, random_scene(rng, self.style), rng

    def photo(self, index: int, face: Face | None = None) -> bytes:
        """Image `index` as its JPEG file, or, given `face`, the same photo of that face."""
        drawn, scene, _ = self.draw(index)
        noise_seed = self.seed * 1_000_003 + index
        return photograph(face or drawn, scene, CELEBA_SIZE, noise_seed)

    def index_of(self, image_id: str) -> int:
        """The index of an image id such as `img_align_celeba/000123.jpg` (or a path to it)."""
        stem = posixpath.splitext(posixpath.basename(image_id.replace("\\", "/")))[0]
        if not stem.isdigit() or not 1 <= int(stem) <= self.num_images:
            raise ValueError(f"{image_id} is not an image of this synthetic set "
                             f"(000001.jpg to {self.name(self.num_images - 1)})")
        return int(stem) - 1

    def truth(self, image_id: str, values: Mapping[str, int]) -> bytes | None:
        """The exact answer to setting `values` on `image_id`: the same photo with those
        attributes. None when a value is not drawn or nothing would change."""
        index = self.index_of(image_id)
        face = self.draw(index)[0]
        edited = with_attributes(face, values)
        if edited is None or edited == face:
            return None
        return _changed(self.photo(index, edited), self.photo(index))

    def to_json(self) -> str:
        return json.dumps({"generator": "stargan_core.synthetic", "dataset": "celeba",
                           **dataclasses.asdict(self)}, indent=2)

    def input_photo(self, image_id: str) -> bytes:
        return self.photo(self.index_of(image_id))

    @classmethod
    def read(cls, url: str, storage_options: dict[str, Any] | None = None
             ) -> SyntheticCeleba | None:
        """The description of the synthetic set at `url` (a CelebA folder), or None when it is
        not one of ours, or drawn by another version of this code."""
        return _read_description(cls, "celeba", url, storage_options)


def write_celeba(root: str | Path, num_images: int = 2000, seed: int = 0,
                 test_fraction: float = 0.1, progress: bool = False, style: str = "hard") -> Path:
    """Write `img_align_celeba/`, `list_attr_celeba.txt`, `list_eval_partition.txt` and
    `synthetic.json` (what `SyntheticCeleba.read` needs to draw ground truth)."""
    root = Path(root)
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    synthetic = SyntheticCeleba(seed, num_images, style, test_fraction)
    rows, partition = [], []
    num_test = int(round(num_images * test_fraction))
    for i in tqdm(range(num_images), desc="CelebA", unit="img", disable=not progress):
        face, scene, rng = synthetic.draw(i)
        name = synthetic.name(i)
        (images / name).write_bytes(synthetic.photo(i))
        labels = celeba_labels(face, rng)
        rows.append(name + " " + " ".join(f"{2 * labels[a] - 1:2d}" for a in CELEBA_ATTRIBUTES))
        # CelebA's own partition codes: 0 train, 1 validation, 2 test; the test images come last.
        partition.append(f"{name} {2 if i >= num_images - num_test else 0}")
    header = [str(num_images), " ".join(CELEBA_ATTRIBUTES)]
    (root / METADATA).write_text(synthetic.to_json() + "\n")
    (root / "list_attr_celeba.txt").write_text("\n".join(header + rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


@dataclass(frozen=True)
class SyntheticRafd:
    """How a synthetic RaFD set was drawn: every identity in its own scene, photographed with
    each expression and gaze, and so the exact answer to any change of expression (or of
    CelebA's hair colour, gender, age: the joint model's edits): the same photo, scene and
    sensor noise, with the target's expression or attributes.

    The photos are what RaFD users train on (the StarGAN reference's RaFD folder): 256 px
    crops in which the face fills the frame, from the hair's top to below the chin, so that
    the `center` framing sees the face as large as the paper's RaFD models do. A whole-frame
    portrait shrinks the mouth and brows, where expressions live, to a pixel or two at 32 px.
    """

    seed: int = 0
    num_identities: int = 24
    test_identities: int = 4
    style: str = "hard"
    draw_version: int = DRAW_VERSION

    def identity(self, ident: int) -> tuple[dict[str, Any], Any, str]:
        """Identity `ident`'s face fields (but expression and gaze), scene and ethnicity."""
        rng = np.random.default_rng([self.seed, 1_000_000 + ident])
        base = {"hair": str(rng.choice(list(HAIR_COLOURS))), "male": bool(rng.random() < 0.5),
                "young": bool(rng.random() < 0.7), **_identity(rng)}
        scene = random_scene(rng, self.style)
        scene = dataclasses.replace(scene, scale=scene.scale * RAFD_ZOOM)
        return base, scene, str(rng.choice(RAFD_ETHNICITIES))

    def name(self, ident: int, expression: str, gaze: str) -> str:
        base, _, ethnicity = self.identity(ident)
        return (f"Rafd090_{ident:02d}_{ethnicity}_{'male' if base['male'] else 'female'}_"
                f"{expression}_{gaze}.jpg")

    def face(self, ident: int, expression: str, gaze: str) -> Face:
        return Face(expression=expression, gaze=gaze, **self.identity(ident)[0])

    def photo(self, ident: int, expression: str, gaze: str, face: Face | None = None) -> bytes:
        """The photo of `ident` with `expression` and `gaze`, or, given `face`, the same photo
        (scene and sensor noise) of that face."""
        _, scene, _ = self.identity(ident)
        e = RAFD_EXPRESSIONS.index(expression)
        noise = self.seed * 1_000_003 + ident * 100 + e * 10 + RAFD_GAZES.index(gaze)
        return photograph(face or self.face(ident, expression, gaze), scene, RAFD_SIZE, noise)

    @staticmethod
    def parse(image_id: str) -> tuple[int, str, str]:
        """(identity, expression, gaze) of an image id such as
        `.../test/happy/Rafd090_21_Caucasian_male_happy_left.jpg`."""
        stem = posixpath.splitext(posixpath.basename(image_id.replace("\\", "/")))[0]
        parts = stem.split("_")
        if len(parts) != 6 or not parts[1].isdigit() or parts[4] not in RAFD_EXPRESSIONS:
            raise ValueError(f"{image_id} is not an image of a synthetic RaFD set")
        return int(parts[1]), parts[4], parts[5]

    def input_photo(self, image_id: str) -> bytes:
        return self.photo(*self.parse(image_id))

    def truth(self, image_id: str, values: Mapping[str, int]) -> bytes | None:
        """The same photo with the expression or CelebA attributes `values` sets
        (`{"happy": 1}`, `{"Blond_Hair": 1}`); None when a value is not drawn or nothing
        would change."""
        ident, expression, gaze = self.parse(image_id)
        face = self.face(ident, expression, gaze)
        edited = with_attributes(face, values)
        if edited is None or edited == face:
            return None
        return _changed(self.photo(ident, expression, gaze, edited),
                        self.photo(ident, expression, gaze))

    def to_json(self) -> str:
        return json.dumps({"generator": "stargan_core.synthetic", "dataset": "rafd",
                           **dataclasses.asdict(self)}, indent=2)

    @classmethod
    def read(cls, url: str, storage_options: dict[str, Any] | None = None
             ) -> SyntheticRafd | None:
        """The description of the synthetic RaFD set at `url`, or None (not ours, or drawn by
        another version of this code)."""
        return _read_description(cls, "rafd", url, storage_options)


def _read_description(cls: type, dataset: str, url: str,
                      storage_options: dict[str, Any] | None) -> Any:
    from stargan_core.storage import read_json

    found = read_json(url.rstrip("/") + "/" + METADATA, storage_options)
    if not found or found.get("draw_version") != DRAW_VERSION or \
            found.get("dataset", "celeba") != dataset:
        return None
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in found.items() if k in fields})


def write_rafd(root: str | Path, num_identities: int = 24, seed: int = 0,
               test_identities: int = 4, progress: bool = False, style: str = "hard") -> Path:
    """Write RaFD as `train|test/<expression>/` with the original RaFD file names, and
    `synthetic.json` (what the ground truth is drawn from); every photo of one identity
    shares its scene."""
    root = Path(root)
    synthetic = SyntheticRafd(seed, num_identities, test_identities, style)
    root.mkdir(parents=True, exist_ok=True)
    (root / METADATA).write_text(synthetic.to_json() + "\n")
    for ident in tqdm(range(1, num_identities + 1), desc="RaFD", unit="identity",
                      disable=not progress):
        split = "test" if ident > num_identities - test_identities else "train"
        for expression in RAFD_EXPRESSIONS:
            folder = root / split / expression
            folder.mkdir(parents=True, exist_ok=True)
            for gaze in RAFD_GAZES:
                (folder / synthetic.name(ident, expression, gaze)).write_bytes(
                    synthetic.photo(ident, expression, gaze))
    return root


def synthetic_celeba_at(url: str, num_images: int = 2000, seed: int = 0,
                        style: str = "hard", storage_options: dict[str, Any] | None = None
                        ) -> str:
    """Synthetic CelebA under `url` (a local folder or an s3:// prefix), written once: where
    its attribute file is already, nothing is written."""
    from stargan_core.storage import filesystem, is_local, join

    fs, path = filesystem(url, storage_options)
    if fs.exists(join(path, "list_attr_celeba.txt")):
        return url
    if is_local(fs):
        write_celeba(path, num_images, seed, style=style)
        return url
    with tempfile.TemporaryDirectory() as tmp:
        write_celeba(tmp, num_images, seed, style=style)
        # The images first: the attribute file, uploaded last, marks the upload complete.
        fs.put(f"{tmp}/img_align_celeba", join(path, "img_align_celeba"), recursive=True)
        for name in (METADATA, "list_eval_partition.txt", "list_attr_celeba.txt"):
            fs.put_file(f"{tmp}/{name}", join(path, name))
    return url
