"""Readers for CelebA, RaFD and custom ImageFolder layouts, and the torch Dataset over them."""

from stargan_core.data.celeba import read_celeba
from stargan_core.data.dataset import FaceDataset, image_transform
from stargan_core.data.folders import (
    FORMATS,
    RawDataset,
    detect_format,
    read_dataset,
    read_datasets,
    read_imagefolder,
    read_rafd,
)
from stargan_core.data.sample import Sample

__all__ = [
    "FORMATS",
    "FaceDataset",
    "RawDataset",
    "Sample",
    "detect_format",
    "image_transform",
    "read_celeba",
    "read_dataset",
    "read_datasets",
    "read_imagefolder",
    "read_rafd",
]
