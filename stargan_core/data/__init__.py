"""Data sets, built on the file formats of `stargan_core.io`: the raw folders of CelebA, RaFD
and custom ImageFolder layouts on local folders or s3:// prefixes (`folders`), prepared
versions (`prepare` writes them, `manifest` reads their manifest), the torch data sets of raw
folders (`dataset`) and of prepared shards (`shards`), the training's endless batches
(`sampling`) and the data set a training run reads (`loading`).
"""

from stargan_core.data.folders import (
    FORMATS,
    RawDataset,
    detect_format,
    read_dataset,
    read_datasets,
    read_imagefolder,
    read_rafd,
)

__all__ = [
    "FORMATS",
    "RawDataset",
    "detect_format",
    "read_dataset",
    "read_datasets",
    "read_imagefolder",
    "read_rafd",
]
