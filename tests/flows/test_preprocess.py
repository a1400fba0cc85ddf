"""The preprocess-dataset flow under a real Prefect server, with data on the loopback S3 server."""

from __future__ import annotations

import json

import pytest
from prefect.exceptions import ParameterTypeError

from flows.preprocess import preprocess_dataset
from tests.flows.conftest import flow_artifacts

SMALL = {"image_size": 32, "rows_per_shard": 40, "row_group_size": 16}


def test_prepares_a_data_set_from_s3_to_s3(prefect_server, s3, rafd_root):
    source = s3.upload(rafd_root, "landing/rafd")
    state = preprocess_dataset(source_url=source, output_root=s3.url("store"), workers=2,
                               return_state=True, **SMALL)
    assert state.is_completed(), state.message
    manifest = state.result()
    assert manifest["format"] == "rafd"
    assert manifest["rows"] == manifest["inputs"] == 6 * 8 * 3
    keys = s3.versions()
    prefix = "store/datasets/rafd/v1/"
    assert {prefix + s["path"] for s in manifest["shards"]} | {prefix + "manifest.json",
                                                               prefix + "rejected.parquet"} \
        == {k for k in keys if k.startswith(prefix) and "/.job-lease/" not in k}  # lease: gone
    stored = json.loads(s3.client.get_object(Bucket=s3.name, Key=prefix + "manifest.json")
                        ["Body"].read())
    assert stored == manifest

    artifacts = {a.type: a for a in flow_artifacts(state.state_details.flow_run_id)}
    assert artifacts["progress"].data == 100.0
    table = artifacts["table"]
    assert table.key == "dataset-rafd"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["split"]: r["images"] for r in rows} == {
        split: info["rows"] for split, info in manifest["splits"].items()}

    again = preprocess_dataset(source_url=source, output_root=s3.url("store"), **SMALL)
    assert again == manifest
    assert s3.versions() == keys, "the second run must write nothing"


def test_bad_parameters_fail_before_any_work(prefect_server, s3, celeba_root):
    with pytest.raises(ParameterTypeError, match="image_size"):
        preprocess_dataset(source_url=str(celeba_root), output_root=s3.url("store"),
                           image_size=4)
    with pytest.raises(ParameterTypeError, match="storage"):  # no field for a credential
        preprocess_dataset(source_url=str(celeba_root), output_root=s3.url("store"),
                           storage={"secret": "hunter2"})
    assert s3.versions() == {}


def test_unreachable_store_fails_the_flow_saying_what_to_check(prefect_server, monkeypatch,
                                                               celeba_root, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    state = preprocess_dataset(source_url=str(celeba_root), output_root="s3://store/x",
                               return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="cannot reach s3://store/x.*AWS_ENDPOINT_URL"):
        state.result()


def test_shard_tasks_run_on_a_dask_cluster(prefect_server, monkeypatch, celeba_root, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    # Dask's worker processes report their task runs to the same Prefect server.
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client, \
            get_task_stream(client) as stream:
        manifest = preprocess_dataset(source_url=str(celeba_root), output_root=str(tmp_path),
                                      cluster_address=cluster.scheduler_address, **SMALL)
    assert manifest["rows"] == 120 and len(manifest["shards"]) == 4
    shard_tasks = [t for t in stream.data if str(t["key"]).startswith("write_shard_task-")]
    assert len(shard_tasks) == 4, [t["key"] for t in stream.data]


def test_keys_in_a_url_never_reach_the_run_logs(prefect_server, caplog):
    """A URL with keys given to a flow is refused; one that a run logs anyway (from a worker's
    environment, say) is stored without its user:password@."""
    from prefect import flow, get_client, get_run_logger
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    with pytest.raises(ParameterTypeError, match="source_url"):
        preprocess_dataset(source_url="s3://AKIAPLANTED:s3cret-7f2a@bucket/raw")

    @flow(log_prints=True)
    def logs_a_url() -> None:
        get_run_logger().info("reading %s", "http://AKIAPLANTED:s3cret-7f2a@127.0.0.1:9/x")
        print("and s3://AKIAPLANTED:s3cret-7f2a@bucket/y")

    state = logs_a_url(return_state=True)
    APILogWorker.drain_all(timeout=10)
    run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:  # the server holds every test's logs
        logs = [log.message for log in client.read_logs(run)]
    assert "reading http://127.0.0.1:9/x" in logs and "and s3://bucket/y" in logs
    assert not [m for m in logs if "s3cret-7f2a" in m or "AKIAPLANTED" in m]
    assert "s3cret-7f2a" not in caplog.text  # nor in the process's own log lines
