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
