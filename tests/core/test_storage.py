"""Storage URLs and options: credentials never travel as options or appear in messages."""

import pytest

from stargan_core.storage import (
    Credentials,
    StorageError,
    describe,
    filesystem,
    storage_options,
)


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


def test_resolved_credentials_reach_s3fs_only_and_never_print(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    keys = Credentials("AKIAEXAMPLE", "s3cr3t", "t0ken")
    options = {"credentials": keys, "profile": "ops"}
    assert storage_options("s3://bucket/x", options) | {"config_kwargs": None} == {
        "key": "AKIAEXAMPLE", "secret": "s3cr3t", "token": "t0ken", "profile": "ops",
        "config_kwargs": None}
    assert storage_options("/local/folder", options) == {}  # S3's options stay with S3
    assert "s3cr3t" not in repr(keys) and "s3cr3t" not in str({"storage": options})


def test_messages_never_show_user_and_password_of_an_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://user:pa55word@minio.internal:9000")
    with pytest.raises(StorageError, match="AWS_ENDPOINT_URL must not carry") as refused:
        describe("s3://bucket/x")
    assert "pa55word" not in str(refused.value)
    assert "minio.internal:9000" in str(refused.value)


def test_local_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, path = filesystem("data/celeba")
    assert path == str(tmp_path / "data" / "celeba")


def test_an_aws_profile_by_name_reaches_s3(s3, monkeypatch, tmp_path):
    """A worker without keys in its environment, with a named profile in its AWS files."""
    import s3fs

    (tmp_path / "credentials").write_text(
        "[stargan]\naws_access_key_id = profilekey\naws_secret_access_key = profilesecret\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3.client.put_object(Bucket=s3.name, Key="a/b.txt", Body=b"hello")
    fs, path = filesystem(s3.url("a/b.txt"), {"profile": "stargan"})
    assert fs.cat_file(path) == b"hello"
    s3fs.S3FileSystem.clear_instance_cache()
    fs, path = filesystem(s3.url("a/b.txt"))
    with pytest.raises(Exception, match="credentials"):  # the same worker without the profile
        fs.cat_file(path)


def test_keys_inside_urls_are_refused_and_redacted(monkeypatch):
    from stargan_core.storage import redact_text, storage_options

    for url, options in (("s3://AKIA:s3cret@bucket/raw", None),
                         ("s3://bucket/raw", {"endpoint_url": "http://AKIA:s3cret@host:9000"})):
        with pytest.raises(StorageError, match="must not carry credentials") as refused:
            storage_options(url, options)
        assert "s3cret" not in str(refused.value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://AKIA:s3cret@host:9000")
    with pytest.raises(StorageError, match="AWS_ENDPOINT_URL"):
        storage_options("s3://bucket/raw")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert storage_options("s3://bucket/raw@2026/x")  # an "@" in a key is a file name's
    assert storage_options("/data/me@home") == {}
    assert redact_text("read http://AKIA:s3cret@host:9000/x and s3://k@b/y, mail a@b") == \
        "read http://host:9000/x and s3://b/y, mail a@b"
