"""The pipeline as its users run it: the local stack up -> prefect deploy --all -> deployment
runs (preprocess, train, translate) through the process workers -> what they left on the S3
server, in the MLflow registry and in Prefect -> the stack down, even when the test fails."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_ports(count: int) -> list[int]:
    """Distinct ports that nothing listens on (all held open until all are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack of infra/local on free ports; its environment (the env file's variables)."""
    folder = tmp_path_factory.mktemp("stack")
    ports = free_ports(3)
    env = os.environ | {
        "STARGAN_STACK_DIR": str(folder), "STARGAN_BIN": str(BIN),
        "STARGAN_S3_PORT": str(ports[0]), "STARGAN_MLFLOW_PORT": str(ports[1]),
        "STARGAN_PREFECT_PORT": str(ports[2]),
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # workers pick up runs quickly
    }

    def up() -> dict[str, str]:
        done = subprocess.run(["bash", "infra/local/stack-up.sh"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return {p.name: p.read_text() for p in (folder / "pids").iterdir()}

    try:
        pids = up()
        assert len(pids) == 5 and up() == pids  # idempotent: nothing started twice
        lines = (folder / "env").read_text().splitlines()
        yield dict(line.removeprefix("export ").split("=", 1) for line in lines if line) | {
            "STARGAN_STACK_DIR": str(folder)}
    finally:
        subprocess.run(["bash", "infra/local/stack-down.sh"], cwd=ROOT, env=env, timeout=120)
    assert not any(listening(p) for p in ports)  # the stack is gone
    for pool in ("cpu-process", "gpu-process"):  # stopped by SIGTERM, not killed after a wait
        log = (folder / "logs" / f"worker-{pool}.log").read_text()
        assert f"Worker 'local-{pool}' stopped!" in log, log[-2000:]
        assert f"=== worker-{pool} started" in log  # logs are appended to, under a header


def prefect(stack: dict[str, str], *args: str) -> None:
    done = subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=os.environ | stack,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-4000:]}" \
                                 f"\n{done.stderr[-4000:]}"


def run(stack: dict[str, str], deployment: str, **parameters: object) -> None:
    """`prefect deployment run` and wait: fails unless the flow run ends Completed."""
    params = [arg for k, v in parameters.items() for arg in ("-p", f"{k}={json.dumps(v)}")]
    prefect(stack, "deployment", "run", deployment, *params, "--watch", "--watch-timeout", "600")


def s3_client(stack: dict[str, str]):
    return boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id=stack["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=stack["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def deployed(stack, celeba_root):
    """Every deployment on the stack's Prefect server, and CelebA prepared on its S3 server."""
    s3 = s3_client(stack)
    for path in sorted(celeba_root.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), "stargan", f"raw/celeba/{path.relative_to(celeba_root)}")
    prefect(stack, "--no-prompt", "deploy", "--all")
    run(stack, "preprocess-dataset/celeba", image_size=64, workers=2)
    return stack


TINY = {"preset": "tiny", "device": "cpu", "evaluation": {"images": 48, "classifier_steps": 30},
        "options": {"num_iters": 10, "checkpoint_every": 5, "sample_every": 5, "batch_size": 8,
                    "n_critic": 1, "g_conv_dim": 8, "d_conv_dim": 8, "g_repeat_num": 1}}
JOB = {"data": ["s3://stargan/datasets/celeba/v1"]} | TINY


def test_deployments_on_the_local_stack(deployed):
    stack, s3 = deployed, s3_client(deployed)
    # A run's job replaces the deployment's whole job (Prefect merges parameters by name).
    run(stack, "train-stargan/celeba-128", job=JOB)
    promoted = subprocess.run([str(BIN / "stargan"), "promote", "stargan-celeba", "1"],
                              env=os.environ | stack, capture_output=True, text=True)
    assert promoted.returncode == 0, promoted.stderr
    run(stack, "translate-bulk/on-demand", input_url="s3://stargan/datasets/celeba/v1",
        split="test", targets=["Blond_Hair", "Male=0"], workers=2, device="cpu")

    # On the S3 server: the prepared set, the translations, their files and manifest.
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="stargan")
            for o in page.get("Contents", [])}
    assert "datasets/celeba/v1/manifest.json" in keys
    out = "translations/celeba-v1/stargan-celeba-v1/"
    manifest = json.loads(s3.get_object(Bucket="stargan", Key=out + "manifest.json")["Body"]
                          .read())
    assert manifest["rows"] == 12 * 2 and manifest["model"]["version"] == "1"
    assert manifest["model"]["requested"] == "models:/stargan-celeba@champion"
    assert {out + "contact-sheet.png", out + "rejected.parquet"} <= keys
    assert len([k for k in keys if k.startswith(out + "Male=0/")]) == 12
    # The MLflow registry: version 1 with both aliases; its artifacts on the S3 server.
    client = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
    version = client.get_registered_model("stargan-celeba")
    assert {a: str(v) for a, v in version.aliases.items()} == {"challenger": "1", "champion": "1"}
    assert s3.list_objects_v2(Bucket="mlflow", Prefix="artifacts/")["KeyCount"] > 0
    # Prefect: each deployment run Completed; the schedules have runs waiting.
    states = flow_run_states(stack["PREFECT_API_URL"])
    ran = ("preprocess-dataset/celeba", "train-stargan/celeba-128", "translate-bulk/on-demand")
    assert {name: states.get(name) for name in ran} == dict.fromkeys(ran, ["COMPLETED"])
    assert "SCHEDULED" in states["train-stargan/weekly"]  # the schedules are on
    assert "SCHEDULED" in states["translate-bulk/nightly"]
    # The MLflow server runs without its job runners (GenAI scorers): its CLI process and
    # uvicorn, not ten processes of ~250 MB.
    group = (Path(stack["STARGAN_STACK_DIR"]) / "pids" / "mlflow").read_text().strip()
    processes = subprocess.run(["ps", "-o", "pid=,args=", "-g", group], capture_output=True,
                               text=True).stdout.splitlines()
    assert len(processes) <= 3, processes


def test_a_killed_training_flow_run_leaves_its_mlflow_run_failed(deployed):
    """kill -9 of a training flow run's process under the worker: the worker reports it
    Crashed and runs the flow's crash hook, which ends the MLflow run FAILED, tagged crashed
    (not left RUNNING until the next training starts)."""
    from prefect.deployments import run_deployment

    from stargan_core.tracking import FLOW_RUN_TAG, OUTCOME_TAG

    with prefect_api(deployed["PREFECT_API_URL"]) as client:
        long = JOB | {"options": TINY["options"] | {"num_iters": 100_000, "log_every": 1}}
        flow_run = run_deployment("train-stargan/celeba-128", timeout=0,
                                  parameters={"experiment": "killed", "job": long})
        mlflow = MlflowClient(tracking_uri=deployed["MLFLOW_TRACKING_URI"])

        def training_run():  # the run once it has logged a training step
            found = mlflow.search_runs(
                [e.experiment_id for e in mlflow.search_experiments()],
                f"tags.`{FLOW_RUN_TAG}` = '{flow_run.id}'")
            return found[0] if found and found[0].data.metrics else None

        waited = wait_until(training_run, 300)
        pid = int(client.read_flow_run(flow_run.id).infrastructure_pid.rsplit(":", 1)[-1])
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: client.read_flow_run(flow_run.id).state.is_crashed(), 120)
        run_id = waited.info.run_id
        ended = wait_until(lambda: (r := mlflow.get_run(run_id)).info.status != "RUNNING" and r,
                           60)
    assert ended.info.status == "FAILED" and ended.data.tags[OUTCOME_TAG] == "crashed"


def wait_until(check, seconds: float):
    """`check()`'s first truthy value within `seconds`, else the test fails."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(1)
    raise AssertionError(f"not within {seconds} s: {check}")


@contextmanager
def prefect_api(api_url: str) -> Iterator[Any]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        yield c


def flow_run_states(api_url: str) -> dict[str, list[str]]:
    with prefect_api(api_url) as c:
        names = {d.id: f"{c.read_flow(d.flow_id).name}/{d.name}" for d in c.read_deployments()}
        states: dict[str, list[str]] = {}
        for flow_run in c.read_flow_runs():
            if flow_run.deployment_id in names:
                states.setdefault(names[flow_run.deployment_id], []).append(
                    flow_run.state.type.value)
        return states
