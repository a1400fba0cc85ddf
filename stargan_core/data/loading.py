"""The data a training run reads: raw folders or prepared shards, one per label set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from stargan_core.data.dataset import (
    FaceDataset,
    held_out_batch,
    preload_if_small,
)
from stargan_core.data.folders import detect_format, read_dataset
from stargan_core.data.manifest import is_prepared, manifest_spec, read_manifest
from stargan_core.data.shards import ShardDataset
from stargan_core.domains import DomainSpec
from stargan_core.preprocessing import Preprocessing


@dataclass
class TrainingData:
    """Training sets (one per label set of `spec`; two for joint training), the preprocessing
    that made their images (saved with every checkpoint: every later use of the model repeats
    it), and fixed held-out inputs for sample grids."""

    datasets: list[Dataset]
    spec: DomainSpec
    preprocessing: Preprocessing
    sample_images: torch.Tensor | None = None
    sample_labels: torch.Tensor | None = None


def chosen_domains(format: str, domains: list[str] | None, joint: bool) -> list[str] | None:
    """The CelebA attributes chosen for a data set of `format`: in joint training they choose
    the CelebA set's domains and leave the other set's as they are."""
    return None if joint and format != "celeba" else domains


def training_data(
    urls: list[str],
    image_size: int,
    *,
    format: str = "auto",
    domains: list[str] | None = None,
    seed: int = 0,
    preload: bool = True,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> TrainingData:
    """Open each URL (a raw data set folder, or a prepared one: a manifest or its folder).

    With `preload`, sets whose decoded images fit in 1 GiB are decoded once into memory;
    larger prepared sets stream from their shards.
    """
    joint = len(urls) > 1
    sources = []
    for url in urls:
        if is_prepared(url, storage_options):
            manifest = read_manifest(url, storage_options)
            chosen = chosen_domains(manifest["format"], domains, joint)
            sources.append((url, manifest["format"], manifest_spec(manifest, chosen), None))
        else:
            found = detect_format(url, storage_options) if format == "auto" else format
            raw = read_dataset(url, found, chosen_domains(found, domains, joint), storage_options)
            sources.append((url, raw.format, raw.spec, raw))
    spec = DomainSpec.joint(*(s[2] for s in sources))

    def open_split(index: int, split: str) -> Dataset:
        url, data_format, _, raw = sources[index]
        if raw is None:
            shuffle_buffer = 1000 if split == "train" else 0
            if not read_manifest(url, storage_options)["splits"].get(split, {}).get("rows"):
                split = "train"  # e.g. every test image was rejected
            # Training processes each read their own shards; held-out images are read whole.
            whole = {} if split == "train" else {"rank": 0, "world_size": 1}
            return ShardDataset(url, spec, split, image_size, index,
                                shuffle_buffer=shuffle_buffer, seed=seed + index,
                                storage_options=storage_options, **whole)
        return FaceDataset(raw.split(split) or raw.split("train"), spec, data_format,
                           image_size, index)

    datasets = [open_split(i, "train") for i in range(len(sources))]
    if preload:
        datasets = [preload_if_small(d, progress=progress) for d in datasets]
    images, labels = held_out_batch(open_split(0, "test"))
    return TrainingData(datasets, spec, Preprocessing.of(sources[0][1], image_size), images,
                        labels)
