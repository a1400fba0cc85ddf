"""Readers for CelebA, RaFD and custom ImageFolder layouts on local folders or s3:// prefixes.

The torch data sets live in `dataset` (raw folders) and `shards` (prepared Parquet shards);
preparation in `images` (the input rule), `prepare` and `manifest`; `loading` picks the data
set a training run reads.
"""

from stargan_core.data.celeba import read_celeba
from stargan_core.data.folders import (
    FORMATS,
    RawDataset,
    detect_format,
    read_dataset,
    read_datasets,
    read_imagefolder,
    read_rafd,
)
from stargan_core.data.sample import DataFormatError, Sample

__all__ = [
    "FORMATS",
    "DataFormatError",
    "RawDataset",
    "Sample",
    "detect_format",
    "read_celeba",
    "read_dataset",
    "read_datasets",
    "read_imagefolder",
    "read_rafd",
]
