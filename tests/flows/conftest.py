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
    import sys
    from pathlib import Path

    from tests.conftest import serving

    with serving([str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                  "--port", "{port}", "--workers", "1",
                  "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                  "--artifacts-destination", str(tmp_path / "server-artifacts")],
                 "http://127.0.0.1:{port}/health", tmp_path / "mlflow-server.log",
                 {"MLFLOW_DISABLE_TELEMETRY": "true",
                  "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}) as port:
        url = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url
