"""The data a training run reads: raw folders or prepared shards, one per label set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from stargan_core.data.dataset import (
    FaceDataset,
    HeldOut,
    held_out,
    held_out_batch,
    preload_if_small,
)
from stargan_core.data.folders import RawDataset, read_dataset
from stargan_core.data.manifest import is_prepared, manifest_spec, read_manifest
from stargan_core.data.shards import ShardDataset
from stargan_core.domains import DomainSpec


@dataclass
class TrainingData:
    """Training sets (one per label set of `spec`), fixed held-out inputs for sample grids, and
    the raw format whose preprocessing translation must repeat."""

    datasets: list[Dataset]
    spec: DomainSpec
    sample_images: torch.Tensor
    sample_labels: torch.Tensor
    data_format: str


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
    sources = []
    for url in urls:
        if is_prepared(url, storage_options):
            manifest = read_manifest(url, storage_options)
            sources.append((url, manifest["format"], manifest_spec(manifest, domains), None))
        else:
            raw = read_dataset(url, format, domains, storage_options)
            sources.append((url, raw.format, raw.spec, raw))
    spec = DomainSpec.joint(*(s[2] for s in sources))

    def open_split(index: int, split: str) -> Dataset:
        url, data_format, _, raw = sources[index]
        if raw is None:
            shuffle_buffer = 1000 if split == "train" else 0
            if not read_manifest(url, storage_options)["splits"].get(split, {}).get("rows"):
                split = "train"  # e.g. every test image was rejected
            return ShardDataset(url, spec, split, image_size, index,
                                shuffle_buffer=shuffle_buffer, seed=seed + index,
                                storage_options=storage_options)
        return FaceDataset(raw.split(split) or raw.split("train"), spec, data_format,
                           image_size, index)

    datasets = [open_split(i, "train") for i in range(len(sources))]
    if preload:
        datasets = [preload_if_small(d, progress=progress) for d in datasets]
    images, labels = held_out_batch(open_split(0, "test"))
    return TrainingData(datasets, spec, images, labels, sources[0][1])


def evaluation_sets(
    urls: list[str], spec: DomainSpec, image_size: int, *, format: str = "auto",
    limit: int = 2000, storage_options: dict[str, Any] | None = None,
) -> list[tuple[HeldOut, HeldOut]]:
    """Per label set of `spec`: up to `limit` real training images (for the attribute
    classifier) and up to `limit` held-out images (to evaluate on), decoded into memory."""
    sets = []
    for index, url in enumerate(urls):
        if is_prepared(url, storage_options):
            splits = read_manifest(url, storage_options)["splits"]

            def open_split(split: str, url: str = url, index: int = index) -> Dataset:
                return ShardDataset(url, spec, split, image_size, index, shuffle_buffer=0,
                                    storage_options=storage_options)

            test = "test" if splits.get("test", {}).get("rows") else "train"
        else:
            raw = read_dataset(url, format, storage_options=storage_options)

            def open_split(split: str, raw: RawDataset = raw, index: int = index) -> Dataset:
                return FaceDataset(raw.split(split), spec, raw.format, image_size, index)

            test = "test" if raw.split("test") else "train"
        sets.append(tuple(held_out(open_split(split), limit) for split in ("train", test)))
    return sets
