"""A torch Dataset of (image, label vector) over the samples of a data set."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset, get_worker_info
from tqdm import tqdm

from stargan_core.domains import DomainSpec
from stargan_core.io.images import RejectedImage, read_rgb
from stargan_core.io.sample import Sample
from stargan_core.preprocessing import Preprocessing


class FaceDataset(Dataset):
    """(image in [-1, 1], label vector of `spec` for label set `label_set`) per sample, framed
    as the layout `format`'s training images are, or by `framer` (a `preprocessing.Framer`)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        spec: DomainSpec,
        format: str,
        image_size: int,
        label_set: int = 0,
        framer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = framer or Preprocessing.of(format, image_size)
        self.rejected: list[tuple[str, str]] = []  # (path, reason) met by `iter_with_ids`
        self.labels = torch.stack([spec.label_vector(s.labels, label_set) for s in self.samples])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(read_rgb(self.samples[index].path)), self.labels[index]

    def iter_with_ids(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        """(image, labels, image id: its path) in order; images the framing rejects (face
        framing: a photo without a face) are left out and listed in `rejected`."""
        for index, sample in enumerate(self.samples):
            try:
                image, labels = self[index]
            except RejectedImage as error:
                self.rejected.append((sample.path, str(error)))
                continue
            yield image, labels, sample.path


@dataclass
class HeldOut(Dataset):
    """Decoded images with their labels and ids: what evaluation runs over."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


def held_out(dataset: Dataset, count: int) -> HeldOut:
    """The first `count` images of a data set (one that has `iter_with_ids`), in memory."""
    items = list(itertools.islice(dataset.iter_with_ids(), count))
    if not items:
        rejected = getattr(dataset, "rejected", [])
        raise ValueError("no images to evaluate on" + (
            f": the framing rejected all {len(rejected)} (first: {rejected[0][0]}: "
            f"{rejected[0][1]})" if rejected else ""))
    return HeldOut(torch.stack([x for x, _, _ in items]), torch.stack([c for _, c, _ in items]),
                   [i for _, _, i in items])


def held_out_batch(dataset: Dataset, count: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` images and labels of a data set: fixed inputs for sample grids."""
    items = list(itertools.islice(iter(dataset), count))
    return torch.stack([x for x, _ in items]), torch.stack([c for _, c in items])


def preload(dataset: Dataset, progress: bool = False) -> TensorDataset:
    """Decode every image once and keep the tensors in memory: for data sets that fit in RAM,
    this takes JPEG decoding out of every training step."""
    items = list(tqdm(iter(dataset), total=len(dataset), desc="decode", unit="img",
                      disable=not progress))
    return TensorDataset(torch.stack([x for x, _ in items]), torch.stack([c for _, c in items]))


class DecodedOnce(Dataset):
    """A map-style data set whose images are decoded the first time they are asked for and
    then kept in memory: training starts at once, the decoding spreads over the first epoch,
    and later epochs decode nothing. In DataLoader worker processes (whose memory the training
    process does not see) nothing is kept: the workers decode ahead of training instead."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        image, labels = dataset[0]
        self.images = torch.empty((len(dataset), *image.shape), dtype=image.dtype)
        self.labels = torch.empty((len(dataset), *labels.shape), dtype=labels.dtype)
        self.decoded = torch.zeros(len(dataset), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.decoded[index]:
            return self.images[index], self.labels[index]
        image, labels = self.dataset[index]
        if get_worker_info() is None:
            self.images[index], self.labels[index] = image, labels
            self.decoded[index] = True
        return image, labels


def preload_if_small(dataset: Dataset, limit_bytes: int = 2**30, progress: bool = False) -> Dataset:
    """Decoded images kept in memory when they take less than `limit_bytes`, else `dataset`
    as is: a map-style data set (raw folders) decodes each image once, when training first
    asks for it (`DecodedOnce`); a streaming one (shards) is decoded before training, all of
    it on every training process (which then take their parts of each batch, as from a
    folder)."""
    whole = dataset.whole() if hasattr(dataset, "whole") else dataset
    first = next(iter(whole), None)
    size = first[0].numel() * first[0].element_size() if first is not None else 0
    if size * len(dataset) >= limit_bytes:
        return dataset
    return preload(whole, progress) if isinstance(dataset, IterableDataset) else \
        DecodedOnce(dataset)
