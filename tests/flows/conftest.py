"""Flows run against a real, temporary Prefect server (SQLite) for the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_server():
    """prefect_test_harness: a Prefect API server on loopback, stopped at the end."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def flow_artifacts(flow_run_id) -> list:
    """The artifacts that a flow run created, as the Prefect API returns them."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    """An MLflow tracking server on loopback (SQLite backend, artifacts proxied to a folder),
    stopped at the end; MLFLOW_TRACKING_URI points at it."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true",
                                   "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: see {log.name}") from None
                time.sleep(0.5)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
