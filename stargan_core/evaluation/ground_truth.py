"""The exact answer to a translation, where one exists: synthetic faces drawn again with the
target's attributes (`stargan_core.synthetic`), put through the same preprocessing as the
held-out images the model is evaluated on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from stargan_core.data.folders import detect_format
from stargan_core.data.images import ImageRule, decode_rgb
from stargan_core.data.manifest import is_prepared, read_manifest
from stargan_core.domains import DomainSpec
from stargan_core.preprocessing import Preprocessing, prepare_image
from stargan_core.synthetic import SyntheticCeleba
from stargan_core.targets import Target


@dataclass
class GroundTruth:
    """Truth files of a synthetic set, and how its held-out images were preprocessed."""

    synthetic: SyntheticCeleba
    preprocess: Callable[[bytes], torch.Tensor]  # an image file -> the model's input
    raw_format: str = "celeba"  # how a full-size photo of the set is framed for the model

    def photo(self, image_id: str) -> torch.Tensor:
        """The full-size input photo (uint8, 3 x H x W), as its file holds it."""
        return decode_rgb(self.synthetic.photo(self.synthetic.index_of(image_id)))

    def truths(self, spec: DomainSpec, ids: Sequence[str], target: Target
               ) -> list[bytes | None]:
        """Per image, the file of its true translation into `target`; None where the target
        changes nothing that is drawn (no ground truth: the pair is left out)."""
        values = dict(target.values)
        if spec.label_sets[target.label_set].dataset != "celeba":
            return [None] * len(ids)
        return [self.synthetic.truth(image_id, values) for image_id in ids]


def ground_truth_for(url: str, image_size: int, format: str = "auto",
                     storage_options: dict[str, Any] | None = None) -> GroundTruth | None:
    """The ground truth of a data set (raw, or prepared from a raw one) when it is a synthetic
    set of this project's; None for real data."""
    if is_prepared(url, storage_options):
        manifest = read_manifest(url, storage_options)
        synthetic = SyntheticCeleba.read(manifest["source"], storage_options)
        if synthetic is None or manifest["format"] != "celeba":
            return None
        rule = ImageRule(**manifest["parameters"]["rule"])
        framing = "celeba" if manifest["image"]["crop"] else "center"
        square = Preprocessing("center", image_size)

        def preprocess(data: bytes) -> torch.Tensor:  # as preparation, then as training did
            return square(decode_rgb(prepare_image(data, rule, framing)))

        return GroundTruth(synthetic, preprocess)
    if (detect_format(url, storage_options) if format == "auto" else format) != "celeba":
        return None
    synthetic = SyntheticCeleba.read(url, storage_options)
    if synthetic is None:
        return None
    transform = Preprocessing("celeba", image_size)
    return GroundTruth(synthetic, lambda data: transform(decode_rgb(data)))
