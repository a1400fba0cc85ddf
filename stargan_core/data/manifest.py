"""Reading a prepared data set's manifest (`data.prepare` writes it, last, as the commit
marker): where it is, whether a URL names one, and the label space it offers.

    <output>/manifest.json      shards (rows, row groups, SHA-256), counts per split and label,
                                image size and framing, inputs, rejections, parameters
    <output>/rejected.parquet   every input that was not stored, with its reason
"""

from __future__ import annotations

from typing import Any

from stargan_core.domains import DomainSpec
from stargan_core.io.sample import DataFormatError
from stargan_core.sharded import MANIFEST
from stargan_core.storage import Location, join, locate


def manifest_url(url: str) -> str:
    """The manifest of a prepared data set, given its folder or the manifest itself."""
    return url if url.rstrip("/").endswith(MANIFEST) else join(url, MANIFEST)


def manifest_location(where: str | Location, storage_options: dict[str, Any] | None = None
                      ) -> Location:
    """Where the manifest of a prepared data set is, given its folder or the manifest itself
    (a URL or a Location)."""
    location = locate(where, storage_options)
    if location.path.rstrip("/").endswith(MANIFEST):
        return location
    return Location(location.fs, location.join(MANIFEST))


def is_prepared(where: str | Location, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether `where` names a prepared data set (a manifest or a folder holding one)."""
    location = manifest_location(where, storage_options)
    return location.fs.isfile(location.path)


def read_manifest(where: str | Location, storage_options: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    manifest = manifest_location(where, storage_options).read_json()
    url = where if isinstance(where, str) else where.url
    if manifest is None:
        raise DataFormatError(
            f"no {MANIFEST} at {url}: prepare the data set first (`stargan preprocess` or the "
            "preprocess-dataset flow), or give the folder that holds the manifest"
        )
    return manifest


def manifest_spec(manifest: dict[str, Any], domains: list[str] | None = None) -> DomainSpec:
    """The label space a prepared data set offers; `domains` selects CelebA attributes."""
    format = manifest["format"]
    if domains and format != "celeba":
        raise DataFormatError(f"choosing domains works for CelebA only, not for {format}")
    if format == "celeba":
        return DomainSpec.celeba(domains) if domains else DomainSpec.celeba()
    if format == "rafd":
        return DomainSpec.rafd()
    names = sorted({value for split in manifest["splits"].values()
                    for value in split["labels"].get("domain", {})})
    name = manifest["source"].rstrip("/").rsplit("/", 1)[-1] or "custom"
    return DomainSpec.categorical(name, names)
