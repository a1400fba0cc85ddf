"""The exact answer to a translation, where one exists: synthetic faces drawn again with the
target's attributes or expression (`stargan_core.synthetic`), put through the same
preprocessing as the held-out images the model is evaluated on; and faces no model has seen
(drawn from another seed), which the judge learns from."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from stargan_core.data.folders import detect_format
from stargan_core.data.manifest import is_prepared, read_manifest
from stargan_core.domains import RAFD_EXPRESSIONS, DomainSpec
from stargan_core.io.images import ImageRule, decode_rgb
from stargan_core.preprocessing import Preprocessing, prepare_image
from stargan_core.synthetic import (
    HAIR_COLOURS,
    SyntheticCeleba,
    SyntheticRafd,
    celeba_labels,
    with_attributes,
)
from stargan_core.synthetic.datasets import RAFD_GAZES
from stargan_core.targets import Target

JUDGE_SEED = 7_919  # added to a set's seed: the judge's faces are none of the set's


@dataclass
class GroundTruth:
    """Truth files of a synthetic set, and how its held-out images were preprocessed."""

    synthetic: SyntheticCeleba | SyntheticRafd
    preprocess: Callable[[bytes], torch.Tensor]  # an image file -> the model's input
    raw_format: str = "celeba"  # how a full-size photo of the set is framed for the model

    @property
    def dataset(self) -> str:
        return "rafd" if isinstance(self.synthetic, SyntheticRafd) else "celeba"

    def photo(self, image_id: str) -> torch.Tensor:
        """The full-size input photo (uint8, 3 x H x W), as its file holds it."""
        return decode_rgb(self.synthetic.input_photo(image_id))

    def truths(self, ids: Sequence[str], target: Target) -> list[bytes | None]:
        """Per image, the file of its true translation into `target` (of any label set: a
        joint model translates CelebA faces into expressions); None where the target changes
        nothing that is drawn (no ground truth: the pair is left out)."""
        values = dict(target.values)
        return [self.synthetic.truth(image_id, values) for image_id in ids]

    def unseen(self, spec: DomainSpec, label_set: int, count: int) -> TensorDataset:
        """`count` faces drawn from another seed than the set's (no model trained on them):
        (image, labels, the same photo with one of its domains changed). The judge learns
        from them, with artefacts painted where the change lies (`classifier.Artefacts`)."""
        draw = self._unseen_celeba if self.dataset == "celeba" else self._unseen_rafd
        rows = [(x, spec.label_vector(values, label_set), x_changed)
                for x, values, x_changed in draw(spec.label_sets[label_set].domains, count)]
        return TensorDataset(*(torch.stack(column) for column in zip(*rows, strict=True)))

    def _unseen_celeba(self, domains: Sequence[str], count: int):
        other = dataclasses.replace(self.synthetic, seed=self.synthetic.seed + JUDGE_SEED,
                                    num_images=count)
        # Each face changed in one domain, hair colour counting as one: as many faces with a
        # counterfactual gender or age as with another colour of hair.
        hair = [d for d in domains if d in HAIR_COLOURS]
        groups = [[d] for d in domains if d not in HAIR_COLOURS] + ([hair] if hair else [])
        for index in range(count):
            face, _, rng = other.draw(index)
            values = celeba_labels(face, rng)
            group = groups[int(rng.integers(len(groups)))]
            name = group[int(rng.integers(len(group)))]
            changed = with_attributes(face, {name: 0 if values[name] else 1})
            if changed is None or changed == face:  # an undrawn domain, or hair already so
                changed = with_attributes(face, {"Male": int(not face.male)})
            yield (self.preprocess(other.photo(index)), values,
                   self.preprocess(other.photo(index, changed)))

    def _unseen_rafd(self, domains: Sequence[str], count: int):
        photos = len(RAFD_EXPRESSIONS) * len(RAFD_GAZES)
        identities = -(-count // photos)
        other = dataclasses.replace(self.synthetic, seed=self.synthetic.seed + JUDGE_SEED,
                                    num_identities=identities, test_identities=0)
        rng = np.random.default_rng(other.seed)
        drawn = 0
        for ident in range(1, identities + 1):
            for expression in RAFD_EXPRESSIONS:
                for gaze in RAFD_GAZES:
                    if drawn == count:
                        return
                    drawn += 1
                    another = str(rng.choice([e for e in RAFD_EXPRESSIONS if e != expression]))
                    changed = other.face(ident, another, gaze)
                    yield (self.preprocess(other.photo(ident, expression, gaze)),
                           {"expression": expression},
                           self.preprocess(other.photo(ident, expression, gaze, changed)))


def ground_truth_for(url: str, image_size: int, format: str = "auto",
                     storage_options: dict[str, Any] | None = None) -> GroundTruth | None:
    """The ground truth of a data set (raw, or prepared from a raw one) when it is a synthetic
    set of this project's (CelebA or RaFD); None for real data."""
    readers = {"celeba": SyntheticCeleba.read, "rafd": SyntheticRafd.read}
    if is_prepared(url, storage_options):
        manifest = read_manifest(url, storage_options)
        if manifest["format"] not in readers:
            return None
        synthetic = readers[manifest["format"]](manifest["source"], storage_options)
        if synthetic is None:
            return None
        rule = ImageRule(**manifest["parameters"]["rule"])
        framing = "celeba" if manifest["image"]["crop"] else "center"
        square = Preprocessing("center", image_size)

        def preprocess(data: bytes) -> torch.Tensor:  # as preparation, then as training did
            return square(decode_rgb(prepare_image(data, rule, framing)))

        return GroundTruth(synthetic, preprocess, manifest["format"])
    found = detect_format(url, storage_options) if format == "auto" else format
    if found not in readers:
        return None
    synthetic = readers[found](url, storage_options)
    if synthetic is None:
        return None
    transform = Preprocessing.of(found, image_size)
    return GroundTruth(synthetic, lambda data: transform(decode_rgb(data)), found)
