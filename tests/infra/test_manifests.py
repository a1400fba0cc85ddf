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
    for name in ("mlflow", "worker-cpu", "worker-gpu", "dask-scheduler", "dask-cuda-worker"):
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
    for name in ("worker-cpu", "worker-gpu", "dask-cuda-worker", "mlflow"):
        refs = workers[name]["envFrom"]
        assert {"configMapRef": {"name": "stargan-env"}} in refs, name
        assert {"secretRef": {"name": "stargan-s3"}} in refs, name
        # The database URLs reach the servers only, never code that runs flows.
        assert ({"secretRef": {"name": "stargan-db"}} in refs) == (name == "mlflow"), name
    assert workers["worker-gpu"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert workers["dask-cuda-worker"]["resources"]["limits"]["nvidia.com/gpu"] == 1
