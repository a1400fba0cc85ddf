"""The typed training job: its options are TrainConfig's own fields, and it travels to the
torchrun processes whole, keys included, in a file of this user's alone."""

from __future__ import annotations

import stat

import pytest
from pydantic import ValidationError

from stargan_core.config import TrainConfig, preset
from stargan_core.jobs import TrainJob, TrainOptions
from stargan_core.storage import Credentials, StorageAccess
from stargan_core.tracked_training import JobFile


def test_the_jobs_options_are_train_configs_fields_with_their_bounds():
    assert list(TrainOptions.model_fields) == list(TrainConfig.model_fields)
    job = TrainJob(data="s3://bucket/datasets/celeba/v1", preset="tiny",
                   options={"num_iters": 100, "g_lr": 2.0, "gan_loss": "non-saturating"})
    assert job.data == ["s3://bucket/datasets/celeba/v1"]
    # The preset with the options given; the decay keeps the preset's share of the steps.
    assert job.config() == preset("tiny", num_iters=100, g_lr=2.0, gan_loss="non-saturating")
    assert job.config().num_iters_decay == 50
    for options, refused in (({"g_lr": 0}, "options.g_lr"),  # TrainConfig: > 0
                             ({"beta1": 1.0}, "options.beta1"),  # TrainConfig: [0, 1)
                             ({"gan_loss": "hinge"}, "options.gan_loss"),
                             ({"learning_rate": 1e-4}, "options.learning_rate"),
                             ({"num_iters": 5, "num_iters_decay": 9},
                              r"num_iters_decay \(9\) must lie in \[0, num_iters \(5\)\]"),
                             ({"lambda_mask": 0.1, "g_output": "tanh"},
                              "lambda_mask needs g_output='masked'")):
        with pytest.raises(ValidationError, match=refused):
            TrainJob(data="d", options=options)


def test_a_job_names_one_or_two_data_sets_without_keys():
    assert TrainJob(data=["a", "b"]).data == ["a", "b"]
    for data in ([], ["a", "b", "c"], ["s3://AKIA:secret@bucket/d"]):
        with pytest.raises(ValidationError, match="data"):
            TrainJob(data=data)
    with pytest.raises(ValidationError, match="storage.secret"):
        TrainJob(data="d", storage={"credentials_block": "s3", "secret": "x"})


def test_the_job_file_carries_the_job_and_the_resolved_keys_to_this_user_alone(tmp_path):
    job = TrainJob(data=["s3://b/celeba", "s3://b/rafd"], domains=["Blond_Hair"],
                   options={"num_iters": 7}, processes=2, evaluation={"every": 5},
                   storage=StorageAccess(credentials_block="s3-keys"))
    keys = Credentials("AKIA-test", "planted-secret", "token")
    path = tmp_path / "job.json"
    JobFile(job, "run-1", "out", "result.json",
            {"endpoint_url": "http://127.0.0.1:9000", "credentials": keys}).write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    read = JobFile.read(path)
    assert read.job == job and read.job.config().num_iters == 7
    assert (read.run_id, read.out, read.result) == ("run-1", "out", "result.json")
    assert read.storage_options == {"endpoint_url": "http://127.0.0.1:9000", "credentials": keys}
    assert "planted-secret" not in repr(read)
