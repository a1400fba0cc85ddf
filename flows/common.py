"""What the flows share: typed parameters and artifact keys."""

from __future__ import annotations

import re
from typing import Annotated, Any

from prefect import get_run_logger
from pydantic import AfterValidator

from stargan_core.storage import StorageError, storage_options


def _no_credentials(options: dict[str, Any]) -> dict[str, Any]:
    try:
        storage_options("s3://", options)  # refuses credentials passed as parameters
    except StorageError as error:
        raise ValueError(str(error)) from None  # pydantic reports ValueErrors per field
    return options


# Extra fsspec options such as {"endpoint_url": ...}; never credentials, which come from the
# environment (AWS_ACCESS_KEY_ID, ...).
StorageOptions = Annotated[dict[str, Any], AfterValidator(_no_credentials)]


def artifact_key(text: str) -> str:
    """An artifact key: Prefect allows lowercase ASCII letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "artifact"


def warn_local_paths(cluster_address: str, *urls: str) -> None:
    """Dask workers elsewhere see their own disks, not this machine's."""
    local = [u for u in urls if "://" not in u]
    if cluster_address and local:
        get_run_logger().warning(
            "the Dask workers at %s read and write %s on their own disks: use s3:// URLs "
            "unless every worker shares this machine's file system", cluster_address,
            " and ".join(local))
