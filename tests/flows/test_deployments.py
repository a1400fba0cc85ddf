"""prefect.yaml: every deployment of docs/design.md, valid for its flow, deployable offline."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# docs/design.md, "The pipeline: flows and deployments": deployment -> work pool.
DESIGN = {
    "preprocess-dataset/celeba": "cpu-process", "preprocess-dataset/rafd": "cpu-process",
    "train-stargan/celeba-128": "gpu-process", "train-stargan/joint-128": "gpu-process",
    "train-stargan/weekly": "gpu-process", "translate-bulk/on-demand": "gpu-process",
    "translate-bulk/nightly": "gpu-process", "stargan-pipeline/demo": "cpu-process",
}
SCHEDULED = {"train-stargan/weekly", "translate-bulk/nightly"}
GIVEN_AT_RUN = {"translate-bulk/on-demand": {"input_url": "s3://stargan-test/in/"}}
STORAGE = "s3://stargan-test"


def fill(value, storage=STORAGE):
    """The parameters as `prefect deploy` fills them in from the environment."""
    if isinstance(value, str):
        return value.replace("{{ $STARGAN_STORAGE_URL }}", storage)
    if isinstance(value, list):
        return [fill(v, storage) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, storage) for k, v in value.items()}
    return value


def deployments():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    found = {}
    for d in config["deployments"]:
        path, function = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        found[f"{flow.name}/{d['name']}"] = (d, flow)
    return found


def test_every_deployment_of_the_design_with_valid_parameters():
    found = deployments()
    assert {name: d["work_pool"]["name"] for name, (d, _) in found.items()} == DESIGN
    for name, (d, flow) in found.items():
        # Raises on a bad or missing value.
        flow.validate_parameters(fill(d.get("parameters") or {}) | GIVEN_AT_RUN.get(name, {}))
        gpu = d["work_pool"]["name"] == "gpu-process"
        assert d.get("concurrency_limit") == (1 if gpu else None), name
        crons = [s["cron"] for s in d.get("schedules") or []]
        assert bool(crons) == (name in SCHEDULED), name
    assert found["translate-bulk/nightly"][0]["parameters"]["input_url"].endswith("/landing/")


def test_prefect_deploy_all_against_a_local_server(prefect_server, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        for pool in ("cpu-process", "gpu-process"):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    project = tmp_path / "project"  # a copy: deploying records its directory
    shutil.copytree(ROOT / "flows", project / "flows",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "prefect.yaml", project / "prefect.yaml")
    env = os.environ | {"PREFECT_API_URL": prefect_server, "STARGAN_STORAGE_URL": STORAGE,
                        "PREFECT_CLI_PROMPT": "false"}
    done = subprocess.run([str(Path(sys.executable).parent / "prefect"), "--no-prompt",
                           "deploy", "--all"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    with get_client(sync_client=True) as client:
        for name, pool in DESIGN.items():
            deployment = client.read_deployment_by_name(name)
            assert deployment.work_pool_name == pool
            assert "{{" not in str(deployment.parameters), name
            assert bool(deployment.schedules) == (name in SCHEDULED), name
        nightly = client.read_deployment_by_name("translate-bulk/nightly")
        assert nightly.parameters["input_url"] == f"{STORAGE}/landing/"
        assert nightly.schedules[0].schedule.cron == "0 2 * * *"
        assert client.read_deployment_by_name("train-stargan/weekly").global_concurrency_limit \
            .limit == 1
        assert nightly.pull_steps[0]["prefect.deployments.steps.set_working_directory"][
            "directory"] == str(project)


    # A credential given as a parameter: refused before any flow run exists, and not echoed.
    planted = "planted-secret-4f1d2c"
    prefect = str(Path(sys.executable).parent / "prefect")
    for param in (f'storage={{"credentials_block": "s3", "secret": "{planted}"}}',
                  f'storage_options={{"secret": "{planted}"}}', f"secret={planted}"):
        refused = subprocess.run([prefect, "deployment", "run", "preprocess-dataset/celeba",
                                  "-p", param], env=env, capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode != 0, refused.stdout
        assert planted not in refused.stdout + refused.stderr, param
    # Keys inside a URL: refused by the server too, in every URL parameter of every flow.
    for deployment, param in (
            ("preprocess-dataset/celeba", f'storage={{"endpoint_url": "http://AKIA:{planted}@'
                                          '127.0.0.1:9000"}'),
            ("preprocess-dataset/celeba", f'source_url="s3://AKIA:{planted}@bucket/raw"'),
            ("train-stargan/celeba-128", f'job={{"data": ["s3://AKIA:{planted}@b/d/v1"]}}'),
            ("translate-bulk/on-demand", f'input_url="s3://AKIA:{planted}@b/in"'),
            ("translate-bulk/on-demand", f'output_root="s3://AKIA:{planted}@b/out"')):
        given = GIVEN_AT_RUN.get(deployment, {})
        others = [f"{k}={v}" for k, v in given.items() if not param.startswith(k)]
        refused = subprocess.run([prefect, "deployment", "run", deployment, "-p", param,
                                  *(arg for p in others for arg in ("-p", p))],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "match" in refused.stdout + refused.stderr, param
    with get_client(sync_client=True) as client:
        assert planted not in str([r.parameters for r in client.read_flow_runs()])
    # By reference, it is a flow run whose parameters hold the block's name only; an "@" in
    # a path is a file name's, not keys.
    done = subprocess.run([prefect, "deployment", "run", "preprocess-dataset/celeba", "-p",
                           'storage={"credentials_block": "stargan-s3"}', "-p",
                           'source_url="s3://bucket/raw@2026"'], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
