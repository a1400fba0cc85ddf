"""Object storage through fsspec: a local folder and an s3:// prefix behave the same.

Credentials are never options a person writes: s3fs takes them from the environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, an instance role), from a named AWS profile
(`{"profile": name}`), or from a `Credentials` value that a caller resolved from a secret store,
which never prints its contents. The endpoint of an S3-compatible store comes from
AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_ROOT = "stargan-storage"  # the embedded default: a folder in the working directory
SECRET_OPTIONS = ("key", "secret", "token", "password", "aws_access_key_id",
                  "aws_secret_access_key", "aws_session_token")


S3_OPTIONS = ("endpoint_url", "profile", "credentials", "client_kwargs", "config_kwargs")
# A URL or path without user:password@ before its host: no "@" at all, or a local path (no
# "://" in it), or a scheme's authority without "@" (one in the path is a file name's).
# Plain regular-expression syntax: the flows' parameter schemas carry it to the Prefect
# server, which refuses a run whose parameters do not match.
URL_WITHOUT_KEYS = r"^(?:[^@]*|(?:[^:]|:[^/]|:/[^/])*(?::/?)?|[^/]*//[^/@]*(?:/.*)?)$"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
# A URL or path parameter: one with user:password@ in it is refused by the Prefect server
# before any run exists (the deployment's parameter schema carries the pattern).
Url = Annotated[str, Field(pattern=URL_WITHOUT_KEYS)]


class StorageAccess(BaseModel):
    """How a job reaches S3, by reference only: no field can hold a credential, and the
    Prefect server refuses a run whose parameters carry any other field (the deployment's
    parameter schema forbids them), so a secret never reaches a flow run's parameters. The
    flows resolve it (`flows.common.storage_options`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: Url | None = Field(
        None, description="an S3-compatible store's endpoint (default: $AWS_ENDPOINT_URL), "
        "without keys in it")
    profile: str | None = Field(
        None, description="an AWS profile of the worker's ~/.aws/credentials")
    credentials_block: str | None = Field(
        None, description="a StarGAN S3 Credentials block (its fields secret) holding the keys")



class StorageError(RuntimeError):
    """Storage that cannot be reached or written, with what to check."""


@dataclass(frozen=True, repr=False)
class Credentials:
    """S3 keys resolved at run time from a secret store; their text never appears in a repr,
    a log line or an error."""

    key: str
    secret: str
    token: str | None = None

    def __repr__(self) -> str:
        return "Credentials(<hidden>)"

    def options(self) -> dict[str, str]:
        return {"key": self.key, "secret": self.secret} | ({"token": self.token}
                                                            if self.token else {})


def _secret_keys(options: dict[str, Any]) -> list[str]:
    """Credential keys anywhere in nested options (e.g. client_kwargs)."""
    found = []
    for key, value in options.items():
        if str(key).lower() in SECRET_OPTIONS:
            found.append(str(key))
        elif isinstance(value, dict):
            found += _secret_keys(value)
    return found


def default_root() -> str:
    """`STARGAN_STORAGE_URL`, else the local folder `./stargan-storage`."""
    return os.environ.get("STARGAN_STORAGE_URL") or str(Path(DEFAULT_ROOT).resolve())


def refuse_keys_in_url(url: str, what: str = "a storage URL") -> str:
    """`url`, unless it carries user:password@ (keys end up in parameters, logs and events)."""
    if not re.match(URL_WITHOUT_KEYS, str(url)):
        raise StorageError(
            f"{what} must not carry credentials (user:password@ in {redact(str(url))}): set "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment, an AWS profile or a "
            "credentials block instead")
    return url


def redact_text(text: str) -> str:
    """`text` with the user:password@ of every URL in it removed: for log lines."""
    return _USERINFO.sub(r"\g<scheme>", text)


def storage_options(url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """fsspec options for `url`: for s3://, the endpoint from AWS_ENDPOINT_URL and short
    timeouts (an unreachable store fails in seconds, not minutes), under `options`. A URL or
    endpoint with keys in it is refused."""
    refuse_keys_in_url(url)
    options = dict(options or {})
    if options.get("endpoint_url"):
        refuse_keys_in_url(options["endpoint_url"], "an endpoint URL")
    secrets = _secret_keys(options)
    if secrets:
        raise StorageError(
            f"storage options must not carry credentials ({', '.join(secrets)}): set "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment instead"
        )
    if not url.startswith(("s3://", "s3a://")):
        return {k: v for k, v in options.items() if k not in S3_OPTIONS}
    defaults: dict[str, Any] = {
        "config_kwargs": {"connect_timeout": 5, "retries": {"max_attempts": 3}},
    }
    if os.environ.get("AWS_ENDPOINT_URL"):
        defaults["endpoint_url"] = refuse_keys_in_url(os.environ["AWS_ENDPOINT_URL"],
                                                      "AWS_ENDPOINT_URL")
    credentials = options.pop("credentials", None)
    if credentials is not None:
        options |= credentials.options()
    return defaults | options


def filesystem(url: str, options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem,
                                                                          str]:
    """The file system of `url` and the path within it."""
    url = str(url)
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url, options))
    return fs, path.rstrip("/") or path


@dataclass(frozen=True)
class Location:
    """A storage URL resolved once into its file system and the path within it: what a job
    hands on instead of re-resolving the URL and its options at every step."""

    fs: fsspec.AbstractFileSystem
    path: str

    @classmethod
    def of(cls, url: str, options: dict[str, Any] | None = None) -> Location:
        return cls(*filesystem(url, options))

    @property
    def url(self) -> str:
        return url_of(self.fs, self.path)

    def join(self, *parts: str) -> str:
        """A path below this location, on its file system."""
        return join(self.path, *parts)

    def read_json(self, *parts: str) -> dict[str, Any] | None:
        """The JSON document at `parts` below this location, or None when there is none."""
        path = self.join(*parts)
        return json.loads(self.fs.cat_file(path)) if self.fs.exists(path) else None

    def write_json(self, document: dict[str, Any], *parts: str) -> None:
        data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
        write_bytes(self.fs, self.join(*parts), data)


def locate(where: str | Location, options: dict[str, Any] | None = None) -> Location:
    """`where` resolved: a URL (with its options) once, a Location as it is."""
    return where if isinstance(where, Location) else Location.of(str(where), options)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def url_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URL of a path of `fs`: a plain path for local files, `s3://...` for S3."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def join(url: str, *parts: str) -> str:
    return posixpath.join(str(url).rstrip("/"), *parts)


def describe(url: str) -> str:
    """`url` and, for S3, the endpoint it is reached through: for error messages."""
    endpoint = storage_options(url).get("endpoint_url")
    return f"{url} (endpoint {redact(endpoint)})" if endpoint else url


def redact(url: str) -> str:
    """`url` without any user:password@, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url  # geturl() would also turn sqlite:////path into sqlite://path
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


def check_reachable(where: str | Location, options: dict[str, Any] | None = None, *,
                    must_exist: bool = False) -> None:
    """Fail at once, saying what to fix, when the store of `where` (a URL or a Location)
    cannot be reached (or, with `must_exist`, when nothing is there)."""
    location = locate(where, options)
    fs, path = location.fs, location.path
    url = where if isinstance(where, str) else location.url
    try:
        if not is_local(fs):
            bucket = path.split("/", 1)[0]
            try:
                fs.info(bucket)  # unlike exists(), this raises when the store is unreachable
            except FileNotFoundError:
                raise StorageError(f"bucket '{bucket}' of {describe(url)} does not exist: "
                                   "create it or fix the URL") from None
        if must_exist and not fs.exists(path):
            raise StorageError(f"{describe(url)} does not exist: check the URL")
    except StorageError:
        raise
    except Exception as error:  # botocore / aiohttp errors differ by cause; all mean "unreachable"
        raise StorageError(
            f"cannot reach {describe(url)}: {error}. Check AWS_ENDPOINT_URL, the credentials "
            "in the environment and the network"
        ) from error


def file_sha256(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def put_file(fs: fsspec.AbstractFileSystem, local_path: str | Path, path: str) -> None:
    """Copy a finished local file to `path` so that readers never see half of it.

    An S3 object appears only once its upload completes; a local file is copied beside its
    destination under a temporary name and renamed.
    """
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if is_local(fs):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        fs.put_file(str(local_path), tmp)
        os.replace(tmp, path)
    else:
        fs.put_file(str(local_path), path)


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` to `path` all at once (atomic for both a local folder and S3)."""
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if is_local(fs):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        fs.pipe_file(tmp, data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def create_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` to `path` only when nothing is there (else FileExistsError): of writers
    racing for one path exactly one wins, on S3 (a PUT with If-None-Match: *) as on a local
    disk (a hard link, which fails when the name exists), and readers never see half of it."""
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if is_local(fs):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        fs.pipe_file(tmp, data)
        try:
            os.link(tmp, path)
        finally:
            os.remove(tmp)
    else:
        fs.pipe_file(path, data, mode="create")


def write_files(fs: fsspec.AbstractFileSystem, files: dict[str, bytes]) -> None:
    """`write_bytes` for many files: concurrent uploads on S3, one by one on a local disk."""
    if is_local(fs):
        for path, data in files.items():
            write_bytes(fs, path, data)
    elif files:
        fs.pipe(files)


def remove_empty_folders(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove the empty folders below `path` on a local disk (object stores have none)."""
    if is_local(fs):
        for folder, _, _ in os.walk(path, topdown=False):
            if folder != path and not os.listdir(folder):
                os.rmdir(folder)


def read_bytes(url: str, options: dict[str, Any] | None = None) -> bytes:
    fs, path = filesystem(url, options)
    return fs.cat_file(path)


def read_json(url: str, options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The JSON document at `url`, or None when there is none."""
    return Location.of(url, options).read_json()


def write_json(url: str, document: dict[str, Any], options: dict[str, Any] | None = None) -> None:
    Location.of(url, options).write_json(document)
