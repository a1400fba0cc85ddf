"""What the flows share: typed parameters and artifact keys."""

from __future__ import annotations

import re
from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from stargan_core.storage import Credentials


class StorageAccess(BaseModel):
    """How the flows reach S3, by reference only: no field can hold a credential, and the
    Prefect server refuses a run whose parameters carry any other field (the deployment's
    parameter schema forbids them), so a secret never reaches a flow run's parameters."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(
        None, description="an S3-compatible store's endpoint (default: $AWS_ENDPOINT_URL)")
    profile: str | None = Field(
        None, description="an AWS profile of the worker's ~/.aws/credentials")
    credentials_secret: str | None = Field(
        None, description="a Prefect Secret block holding JSON {aws_access_key_id, "
        "aws_secret_access_key[, aws_session_token]}")

    def options(self) -> dict[str, Any] | None:
        """fsspec options, with the Secret block's keys resolved (never printed)."""
        options: dict[str, Any] = {}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.profile:
            options["profile"] = self.profile
        if self.credentials_secret:
            options["credentials"] = load_credentials(self.credentials_secret)
        return options or None


def load_credentials(block: str) -> Credentials:
    """The S3 keys of the Prefect Secret block `block`."""
    from prefect.blocks.system import Secret

    shape = ("a Prefect Secret block holding JSON {\"aws_access_key_id\": ..., "
             "\"aws_secret_access_key\": ...} (and \"aws_session_token\" for temporary keys)")
    try:
        value = Secret.load(block, _sync=True).get()
    except ValueError:
        raise ValueError(f"no Secret block named '{block}': create {shape}, e.g. "
                         f"Secret(value={{...}}).save('{block}')") from None
    if not isinstance(value, dict) or not {"aws_access_key_id",
                                           "aws_secret_access_key"} <= set(value):
        raise ValueError(f"Secret block '{block}' is not {shape}")
    return Credentials(value["aws_access_key_id"], value["aws_secret_access_key"],
                       value.get("aws_session_token"))


def storage_options(storage: StorageAccess | None) -> dict[str, Any] | None:
    return storage.options() if storage else None


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
