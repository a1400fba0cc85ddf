"""What the flows share: storage references resolved, the S3 credentials block, log
redaction and artifact keys."""

from __future__ import annotations

import logging
import re
from typing import Any

from prefect import get_run_logger
from prefect.blocks.core import Block
from prefect.context import get_run_context
from prefect.exceptions import MissingContextError
from prefect.logging.handlers import APILogHandler
from pydantic import Field, SecretStr

from stargan_core.storage import Credentials, StorageAccess, redact_text


class S3Credentials(Block):
    """S3 keys for the flows, kept in the Prefect server with every field secret: the API and
    the UI show `********` unless a caller asks for the secrets (the flow, when it loads them).

        S3Credentials(aws_access_key_id="...", aws_secret_access_key="...").save("s3-keys")
    """

    _block_type_name = "StarGAN S3 Credentials"
    _block_type_slug = "stargan-s3-credentials"
    _description = "S3 keys that the stargan-pipeline flows read their data with."

    aws_access_key_id: SecretStr
    aws_secret_access_key: SecretStr
    aws_session_token: SecretStr | None = Field(None, description="for temporary keys")

    def credentials(self) -> Credentials:
        token = self.aws_session_token
        return Credentials(self.aws_access_key_id.get_secret_value(),
                           self.aws_secret_access_key.get_secret_value(),
                           token.get_secret_value() if token else None)


def load_credentials(block: str) -> Credentials:
    """The S3 keys of the S3Credentials block `block`."""
    try:
        return S3Credentials.load(block, _sync=True).credentials()
    except ValueError:
        raise ValueError(
            f"no StarGAN S3 Credentials block named '{block}': create it with "
            "`from flows.common import S3Credentials; S3Credentials(aws_access_key_id=..., "
            f"aws_secret_access_key=...).save('{block}')`") from None


class RedactUrls(logging.Filter):
    """Takes user:password@ out of every URL in a log record's text."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = redact_text(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_REDACT_URLS = RedactUrls()
# The run loggers (sent to the Prefect API) and the engine's, which print refused parameters.
for _name in ("prefect.flow_runs", "prefect.task_runs", "prefect.flows", "prefect.engine"):
    logging.getLogger(_name).addFilter(_REDACT_URLS)


class InRun(logging.Filter):
    """Records logged inside a Prefect flow or task run (in its thread) only."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            get_run_context()
        except MissingContextError:
            return False
        return True


# The library's messages (GPUs that torch cannot use, the local Dask cluster, a lease taken
# over) in the run's log too when a run logs them; the console has them in any case.
_TO_RUN_LOG = APILogHandler()
_TO_RUN_LOG.addFilter(InRun())
_TO_RUN_LOG.addFilter(_REDACT_URLS)
logging.getLogger("stargan_core").addHandler(_TO_RUN_LOG)


def storage_options(storage: StorageAccess | None) -> dict[str, Any] | None:
    """fsspec options for `storage`, with a block's keys resolved (never printed)."""
    if storage is None:
        return None
    options: dict[str, Any] = {}
    if storage.endpoint_url:
        options["endpoint_url"] = storage.endpoint_url
    if storage.profile:
        options["profile"] = storage.profile
    if storage.credentials_block:
        options["credentials"] = load_credentials(storage.credentials_block)
    return options or None


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
