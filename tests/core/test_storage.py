"""Storage URLs and options: credentials never travel as options or appear in messages."""

import pytest

from stargan_core.storage import StorageError, describe, filesystem, storage_options


def test_the_endpoint_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert storage_options("s3://bucket/x")["endpoint_url"] == "http://127.0.0.1:9000"
    assert storage_options("s3://bucket/x", {"endpoint_url": "http://other"})["endpoint_url"] \
        == "http://other"
    assert storage_options("/local/folder") == {}


@pytest.mark.parametrize("options", [{"secret": "s"}, {"key": "k"},
                                     {"client_kwargs": {"aws_secret_access_key": "s"}}])
def test_credentials_are_refused_as_options_even_nested(options):
    with pytest.raises(StorageError, match="must not carry credentials"):
        storage_options("s3://bucket/x", options)


def test_messages_never_show_user_and_password_of_an_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://user:pa55word@minio.internal:9000")
    text = describe("s3://bucket/x")
    assert "pa55word" not in text and "minio.internal:9000" in text


def test_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, path = filesystem("data/celeba")
    assert path == str(tmp_path / "data" / "celeba")
