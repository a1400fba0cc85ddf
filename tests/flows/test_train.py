"""The train-stargan flow under a real Prefect server, tracking into a SQLite MLflow store, with
the data prepared on the loopback S3 server."""

from __future__ import annotations

import io

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image
from prefect import get_client
from prefect.states import Crashed, Running

import stargan_core.devices
import stargan_core.train
from flows.train import settle_abandoned_runs, train_stargan
from stargan_core.cli import main as stargan
from stargan_core.data.prepare import PrepareConfig, prepare_dataset
from stargan_core.evaluation.verdicts import VERDICT_FIELDS
from stargan_core.io.images import ImageRule
from stargan_core.jobs import TrainJob
from stargan_core.registry import resolve_model

LOSSES = ["D/loss_real", "D/loss_fake", "D/loss_cls", "D/loss_gp", "G/loss_fake", "G/loss_rec",
          "G/loss_cls"]
SMALL = {"preset": "tiny", "evaluation": {"images": 48, "classifier_steps": 30},
         "options": {"num_iters": 10, "batch_size": 8, "n_critic": 1, "checkpoint_every": 5,
                     "sample_every": 5, "log_every": 1, "g_conv_dim": 8, "d_conv_dim": 8,
                     "g_repeat_num": 1}}


def small(data: str, options: dict | None = None, **fields: object) -> TrainJob:
    """A tiny training job on `data`, with `options` and other fields changed."""
    return TrainJob(data=data, **SMALL | fields | {"options": SMALL["options"] | (options or {})})


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A SQLite tracking store with the experiment's artifacts in a local folder."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    client = MlflowClient()
    client.create_experiment("faces", artifact_location=(tmp_path / "artifacts").as_uri())
    return client


@pytest.fixture
def manifest(s3, celeba_root):
    url = s3.url("store/datasets/celeba/v1")
    prepare_dataset(PrepareConfig(s3.upload(celeba_root, "raw"), url, rule=ImageRule(32),
                                  rows_per_shard=50))
    return url


def steps_logged(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_trains_evaluates_registers_and_promotes(prefect_server, mlflow_server, manifest,
                                                 monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    result = train_stargan(small(manifest, evaluation=SMALL["evaluation"] | {"every": 5}),
                           experiment="faces")
    client = MlflowClient()  # the tracking server
    run = client.get_run(result["run_id"])
    assert run.data.params["preset"] == "tiny" and run.data.params["num_iters"] == "10"
    assert run.data.params["domains"] == "Black_Hair,Blond_Hair,Brown_Hair,Male,Young"
    for key in LOSSES:
        assert steps_logged(client, run.info.run_id, key) == list(range(1, 11)), key
    assert {"lr/G", "lr/D", "images_per_second"} <= set(run.data.metrics)
    assert any(k.startswith("system/") for k in run.data.metrics), "no system metrics"
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/step-0000005.ckpt", "checkpoints/step-0000010.ckpt"}
    assert "samples/final.png" in {f.path for f in client.list_artifacts(run.info.run_id,
                                                                         "samples")}
    assert len(client.list_artifacts(run.info.run_id, "images")) >= 2  # grids at steps 5, 10
    assert steps_logged(client, run.info.run_id, "eval/translation_accuracy") == [5, 10]
    metrics = result["metrics"]  # what the flow returns is what the run holds at step 10
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("eval/")} == metrics
    assert metrics["eval/reconstruction_l1"] > 0
    # No auto_promote: the version waits for a reviewer, with its review on it.
    assert result["review"] == "first version" and not result["promoted"]
    assert {f"eval/translation_accuracy/{t}" for t in ("Blond_Hair", "Male", "Male:0")} \
        <= set(run.data.metrics)

    assert result["model_name"] == "stargan-celeba" and result["version"] == "1"
    version = client.get_model_version_by_alias("stargan-celeba", "challenger")
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    # The model card: the summary and every metric per target, ground truth included.
    assert "target accuracy" in version.description and "preservation" in version.description
    assert "| Male:0 |" in version.description and "PSNR to truth (dB)" in version.description

    assert stargan(["promote", "stargan-celeba", "1"]) == 0
    assert str(client.get_model_version_by_alias("stargan-celeba", "champion").version) == "1"
    assert stargan(["promote", "stargan-celeba", "7"]) == 2  # no such version

    model = mlflow.pyfunc.load_model("models:/stargan-celeba@champion")
    images = [(celeba_root_image(i)) for i in (1, 2)]
    out = model.predict(pd.DataFrame({"image": images, "target": ["Blond_Hair", "Male=0"]},
                                     index=[10, 11]))
    assert list(out.columns) == ["image", *VERDICT_FIELDS] and list(out.index) == [10, 11]
    # Registered with its judge, the evaluation's classifier: every answer has a verdict.
    assert resolve_model("models:/stargan-celeba/1").judged
    assert "judge/judge.pt" in {f.path for f in client.list_artifacts(run.info.run_id, "judge")}
    assert out[list(VERDICT_FIELDS)].apply(lambda c: c.between(0, 1)).all().all()
    assert Image.open(io.BytesIO(out["image"][10])).size == (178, 218)  # the input's size
    square = model.predict(pd.DataFrame({"image": images[:1], "target": ["Male"]}),
                           params={"output_size": "model"})
    assert Image.open(io.BytesIO(square["image"][0])).size == (32, 32)
    with pytest.raises(mlflow.exceptions.MlflowException, match="row 12: not an image"):
        model.predict(pd.DataFrame({"image": [images[0], b"not an image"],
                                    "target": ["Male", "Male"]}, index=[11, 12]))
    schema = model.metadata.get_input_schema()
    assert schema.input_names() == ["image", "target"]


def celeba_root_image(index: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (178, 218), (index * 40, 90, 160)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_crash_resumes_from_the_runs_last_checkpoint(prefect_server, mlflow_store, manifest,
                                                      monkeypatch):
    attempts: list[list[int]] = []
    real = stargan_core.train.set_learning_rates
    crashes = {"left": 3}  # every attempt of the first flow run dies at step 7

    def crashing(nets, config, step):
        if step == 0 or not attempts or (attempts[-1] and step <= attempts[-1][-1]):
            attempts.append([])
        attempts[-1].append(step)
        if step == 7 and crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("worker lost")
        return real(nets, config, step)

    monkeypatch.setattr(stargan_core.train, "set_learning_rates", crashing)
    state = train_stargan(small(manifest), experiment="faces", return_state=True)
    assert state.is_failed()
    # The task's two retries each went on from the checkpoint at step 5, not from scratch.
    assert [a[0] for a in attempts] == [0, 5, 5]
    run = mlflow_store.search_runs([mlflow_store.get_experiment_by_name("faces")
                                    .experiment_id])[0]
    run_id = run.info.run_id
    # The MLflow run says how its flow run ended, and which flow run that was.
    assert run.info.status == "FAILED" and run.data.tags["stargan.outcome"] == "failed"
    flow_run_id = state.state_details.flow_run_id
    assert run.data.tags["prefect.flow_run_id"] == str(flow_run_id)

    # While its flow run goes on (in Prefect, Running), no other flow run trains in the run.
    mlflow_store.update_run(run_id, "RUNNING")
    with get_client(sync_client=True) as prefect:
        prefect.set_flow_run_state(flow_run_id, Running(), force=True)
    refused = train_stargan(small(manifest), experiment="faces", resume_from="latest",
                            return_state=True)
    assert refused.is_failed() and f"being trained by flow run {flow_run_id}" in str(
        refused.result(raise_on_failure=False))
    # A killed process leaves its MLflow run RUNNING and no hook runs; once Prefect has the
    # flow run as Crashed, the next train-stargan marks the MLflow run crashed.
    with get_client(sync_client=True) as prefect:
        prefect.set_flow_run_state(flow_run_id, Crashed(), force=True)
    settle_abandoned_runs(mlflow_store, "faces")
    run = mlflow_store.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["stargan.outcome"] == "crashed"

    result = train_stargan(small(manifest), experiment="faces", resume_from="latest")
    # Steps 5..9 trained; the rates are set once more at 10, after the last step.
    assert result["run_id"] == run_id and attempts[-1] == [5, 6, 7, 8, 9, 10]
    run = mlflow_store.get_run(run_id)
    assert run.info.status == "FINISHED" and "stargan.outcome" not in run.data.tags
    for key in LOSSES:  # no step lost, none repeated
        assert steps_logged(mlflow_store, run_id, key) == list(range(1, 11)), key


def test_two_training_processes_on_the_worker(prefect_server, mlflow_store, manifest,
                                              monkeypatch):
    """processes=2: torchrun starts two gloo processes that read their own shards from S3;
    one of them tracks the run, which trains, evaluates and registers as with one."""
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = train_stargan(small(manifest, processes=2, device="cpu"), experiment="faces")
    run = mlflow_store.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["processes"] == "2"
    for key in LOSSES:  # logged once per step, by one process
        assert steps_logged(mlflow_store, run.info.run_id, key) == list(range(1, 11)), key
    artifacts = {f.path for f in mlflow_store.list_artifacts(run.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/step-0000005.ckpt", "checkpoints/step-0000010.ckpt"}
    assert result["version"] == "1" and result["metrics"]["eval/reconstruction_l1"] > 0


def test_bad_input_fails_before_any_run_is_opened(prefect_server, mlflow_store, s3, manifest,
                                                  monkeypatch):
    import torch
    from prefect.exceptions import ParameterTypeError

    from stargan_core.io.sample import DataFormatError

    with pytest.raises(DataFormatError, match="no manifest.json at .*stargan preprocess"):
        train_stargan(TrainJob(data=s3.url("nothing/here")), experiment="faces")
    # The job's types are TrainConfig's: an unknown option or a bad value is refused first.
    nowhere = [s3.url("nothing/here")]
    with pytest.raises(ParameterTypeError, match="options.learning_rate"):
        train_stargan({"data": nowhere, "options": {"learning_rate": 1}})
    with pytest.raises(ParameterTypeError, match="options.g_lr"):
        train_stargan({"data": nowhere, "options": {"g_lr": -1}})
    with pytest.raises(ParameterTypeError, match=r"num_iters_decay \(9\) must lie in"):
        train_stargan({"data": nowhere, "options": {"num_iters": 5, "num_iters_decay": 9}})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="2 training processes, but 1 GPU visible"):
        train_stargan(small(manifest, processes=2), experiment="faces")
    faces = mlflow_store.get_experiment_by_name("faces").experiment_id
    assert mlflow_store.search_runs([faces]) == []


def test_gpus_torch_cannot_use_are_said_in_the_runs_log(prefect_server, monkeypatch, recwarn):
    """The library's warnings reach the Prefect run's log when a run logs them; outside a run,
    the console alone has them (no complaint of a log without a run)."""
    import torch
    from prefect import flow
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(stargan_core.devices, "nvidia_gpus", lambda: ("GPU 0: NVIDIA H100",))

    @flow
    def picks_a_device() -> str:
        return str(stargan_core.devices.resolve_device("auto"))

    state = picks_a_device(return_state=True)
    assert state.result() == "cpu"
    APILogWorker.drain_all(timeout=10)
    run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:  # the server holds every test's logs
        logs = [log.message for log in client.read_logs(run)]
    assert any("1 NVIDIA GPU (GPU 0: NVIDIA H100) but this torch cannot use them" in m
               for m in logs)
    stargan_core.devices.resolve_device("auto")  # no run here
    assert not [w for w in recwarn if "without a flow run id" in str(w.message)]


def test_a_run_keeps_its_newest_checkpoints_and_the_best(mlflow_server, tmp_path):
    """Through the tracking server's artifact proxy: `keep` bounds what a run stores."""
    from stargan_core.tracking import BEST_TAG, RunTracker

    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("retention")).info.run_id
    tracker = RunTracker(run_id, client, keep=2)
    accuracy = {2: 0.5, 4: 0.9, 6: 0.6, 8: 0.7}  # the best evaluation: step 4
    for step in range(2, 13, 2):
        path = tmp_path / f"step-{step:07d}.ckpt"
        path.write_bytes(b"weights")
        tracker.log_checkpoint(path, step)
        if step in accuracy:  # as in-training evaluation logs it, after the upload
            client.log_metric(run_id, "eval/translation_accuracy", accuracy[step], step=step)
    stored = {f.path for f in client.list_artifacts(run_id, "checkpoints")}
    assert stored == {"checkpoints/step-0000004.ckpt", "checkpoints/step-0000012.ckpt"}
    assert client.get_run(run_id).data.tags[BEST_TAG] == "checkpoints/step-0000004.ckpt"

    every = RunTracker(client.create_run(client.create_experiment("all")).info.run_id, client)
    for step in (1, 2, 3):
        path = tmp_path / f"step-{step:07d}.ckpt"
        path.write_bytes(b"weights")
        every.log_checkpoint(path, step)
    assert len(client.list_artifacts(every.run_id, "checkpoints")) == 3  # keep=0: all


def test_credentials_by_reference_reach_s3_and_nothing_records_them(
        prefect_server, mlflow_store, s3, celeba_root, monkeypatch, tmp_path, capsys):
    """Keys planted in a StarGAN S3 Credentials block: the Prefect API and the UI's endpoints
    show them masked, the flows reach S3 with them when given the block's name, and they
    appear nowhere in Prefect's records, the output or the MLflow store."""
    import json
    import uuid

    import httpx

    from flows.common import S3Credentials
    from flows.preprocess import preprocess_dataset

    planted = f"planted-{uuid.uuid4().hex}"
    key_id = f"AKIA{uuid.uuid4().hex[:16].upper()}"
    block_id = S3Credentials(aws_access_key_id=key_id, aws_secret_access_key=planted).save(
        "stargan-s3-test", overwrite=True)
    slug = "stargan-s3-credentials"
    with httpx.Client(base_url=prefect_server) as api:  # as the UI and any API user read it
        answers = [api.post("/block_documents/filter", json={"include_secrets": False}),
                   api.get(f"/block_documents/{block_id}"),
                   api.get(f"/block_types/slug/{slug}/block_documents"),
                   api.get(f"/block_types/slug/{slug}/block_documents/name/stargan-s3-test")]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert planted not in answer.text and key_id not in answer.text, answer.url
            assert "********" in answer.text
        shown = api.get(f"/block_documents/{block_id}", params={"include_secrets": True})
        assert planted in shown.text  # the check can fail: the keys are there when asked for
    raw = s3.upload(celeba_root, "raw/celeba")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # a worker with no keys
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(Exception, match="credentials"):  # without the reference: no way in
        preprocess_dataset(source_url=raw, output_root=s3.url("store"), image_size=32)

    storage = {"credentials_block": "stargan-s3-test"}
    preprocess_dataset(source_url=raw, output_root=s3.url("store"), image_size=32,
                       rows_per_shard=50, storage=storage)
    result = train_stargan(small(s3.url("store/datasets/celeba/v1"), {"num_iters": 5},
                                 storage=storage), experiment="faces")
    assert result["version"] == "1"

    with get_client(sync_client=True) as client:
        recorded = [client.read_flow_runs(), client.read_task_runs(), client.read_logs(),
                    client.read_artifacts(), client.read_deployments()]
    text = json.dumps([[item.model_dump(mode="json") for item in found] for found in recorded])
    assert "stargan-s3-test" in text  # the reference is there, in the flow runs' parameters
    assert planted not in text and key_id not in text
    out = capsys.readouterr()
    assert planted not in out.out + out.err and key_id not in out.out + out.err
    # The MLflow store: its database (params, tags, metrics, model versions) and artifacts.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert planted.encode() not in path.read_bytes(), path
