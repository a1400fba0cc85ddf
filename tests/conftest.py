"""Shared fixtures: small synthetic data sets, written once per test session."""

from __future__ import annotations

import os

import pytest

# No telemetry from the tools under test, ever.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    from stargan_core.synthetic import write_celeba, write_rafd

    root = tmp_path_factory.mktemp("synthetic")
    write_celeba(root / "celeba", num_images=120, seed=3)
    write_rafd(root / "rafd", num_identities=6, seed=3, test_identities=2)
    return root


@pytest.fixture(scope="session")
def celeba_root(synthetic_root):
    return synthetic_root / "celeba"


@pytest.fixture(scope="session")
def rafd_root(synthetic_root):
    return synthetic_root / "rafd"
