"""What can be checked of infra/ offline: every file loads, and the local stack, the compose
file and the Kubernetes manifests give the flows the same environment."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def stack_names() -> set[str]:
    """The variables that infra/local/stack-up.sh writes to the env file users source."""
    return set(re.findall(r"^export (\w+)=", (INFRA / "local/stack-up.sh").read_text(), re.M))


def test_every_yaml_file_loads():
    files = sorted(INFRA.rglob("*.yaml")) + [ROOT / "prefect.yaml"]
    assert len(files) >= 3
    for path in files:
        assert [d for d in yaml.safe_load_all(path.read_text()) if d], path


def test_compose_gives_the_flows_the_local_stacks_environment():
    compose = yaml.safe_load((INFRA / "compose/compose.yaml").read_text())
    assert set(compose["x-pipeline-env"]) == stack_names()
    services = compose["services"]
    for name in ("mlflow", "worker-cpu", "worker-gpu", "dask-scheduler", "dask-gpu-worker"):
        assert set(services[name]["environment"]) >= stack_names(), name
        build = services[name]["build"]  # the context is relative to the compose file
        assert (INFRA / "compose" / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).is_file()
    pools = {d["work_pool"]["name"] for d in yaml.safe_load(
        (ROOT / "prefect.yaml").read_text())["deployments"]}
    assert {services[w]["command"].split("--pool ")[1].split()[0]
            for w in ("worker-cpu", "worker-gpu")} == pools
    assert "${" not in str(compose["x-pipeline-env"]["STARGAN_STORAGE_URL"])


def test_kubernetes_gives_the_flows_the_local_stacks_environment():
    text = (INFRA / "kubernetes/stargan.yaml").read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    secrets = set(re.findall(r"--from-literal=(\w+)=", text))  # created out of band
    assert stack_names() <= set(config["data"]) | secrets
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= secrets - set(config["data"])
    workers = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
               for d in docs if d["kind"] == "Deployment"}
    for name in ("worker-cpu", "worker-gpu", "dask-gpu-worker", "mlflow"):
        refs = workers[name]["envFrom"]
        assert {"configMapRef": {"name": "stargan-env"}} in refs, name
        assert {"secretRef": {"name": "stargan-s3"}} in refs, name
        # The database URLs reach the servers only, never code that runs flows.
        assert ({"secretRef": {"name": "stargan-db"}} in refs) == (name == "mlflow"), name
    assert workers["worker-gpu"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert workers["dask-gpu-worker"]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_gpu_dask_workers_are_plain_dask_workers_with_a_thread_per_core():
    """dask-cuda is not installed (it would pin another dask than the one tested): a GPU
    worker is `dask worker`, one process for its one GPU, with a thread per requested core."""
    compose = yaml.safe_load((INFRA / "compose/compose.yaml").read_text())["services"]
    docs = [d for d in yaml.safe_load_all((INFRA / "kubernetes/stargan.yaml").read_text()) if d]
    pod = next(d for d in docs if d["metadata"]["name"] == "dask-gpu-worker")
    container = pod["spec"]["template"]["spec"]["containers"][0]
    commands = [compose["dask-gpu-worker"]["command"].split(), container["command"]]
    for command in commands:
        assert command[:2] == ["dask", "worker"], command
        assert command[command.index("--nworkers") + 1] == "1", command
    threads = container["command"][container["command"].index("--nthreads") + 1]
    assert threads == container["resources"]["requests"]["cpu"]
    assert not any("cuda" in name for name in compose) and "dask-cuda" not in str(docs)
    extras = re.search(r"^gpu = (.*)$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert extras is not None and "dask-cuda" not in extras.group(1)
