"""MLflow tracking of a training run: parameters, losses per step, sample grids, checkpoints.

A run is the unit of resumption: its checkpoints are artifacts, so a retried or restarted
training task downloads the latest one and goes on in the same run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from PIL import Image

from stargan_core.checkpoint import checkpoint_path, checkpoint_step
from stargan_core.storage import redact

CHECKPOINTS = "checkpoints"
BEST_TAG = "stargan.best_checkpoint"  # the run's checkpoint of the best evaluation
SAMPLES = "samples"
STEP_METRIC = "lr/G"  # logged at every logging step: it tells how far a run has logged


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Every parameter, as text (MLflow keeps parameters as strings)."""
    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items()) if v is not None]
    for start in range(0, len(items), 100):  # log_batch takes at most 100 parameters
        client.log_batch(run_id, params=items[start:start + 100])


class RunTracker:
    """`train()` callbacks that log one MLflow run.

    A resumed run re-trains the steps after its last checkpoint; their metrics are already in
    the run, so they are not logged again: every step appears exactly once.
    """

    def __init__(self, run_id: str, client: MlflowClient | None = None, keep: int = 0) -> None:
        """`keep`: checkpoints kept in the run, the newest ones and the best evaluated one
        (0: every one)."""
        self.client = client or MlflowClient()
        self.run_id, self.keep = run_id, keep
        history = self.client.get_metric_history(run_id, STEP_METRIC)
        self.logged_through = max((m.step for m in history), default=0)
        self.resumed_at = self.logged_through  # grids up to here are in the run already

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if step <= self.logged_through:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step)
                                                    for k, v in metrics.items()])
        self.logged_through = step

    def log_sample(self, path: Path, step: int) -> None:
        if step <= self.resumed_at:
            return
        with Image.open(path) as grid:
            self.client.log_image(self.run_id, grid.convert("RGB"), key=SAMPLES, step=step)

    def log_checkpoint(self, path: Path, step: int) -> None:
        """Upload the checkpoint; older local ones can go then (paper-128: ~0.6 GB each), and
        the run's checkpoints beyond `keep`."""
        self.client.log_artifact(self.run_id, str(path), CHECKPOINTS)
        for old in Path(path).parent.glob("step-*.ckpt"):
            if old != Path(path):
                old.unlink()
        if self.keep:
            self.prune_checkpoints()

    def prune_checkpoints(self) -> None:
        """Delete the run's checkpoints but the `keep - 1` newest and the best: the one of the
        highest mean target accuracy evaluated during training (else the `keep` newest)."""
        steps = sorted(checkpoint_step(f.path) for f in
                       self.client.list_artifacts(self.run_id, CHECKPOINTS)
                       if f.path.endswith(".ckpt"))
        best = best_checkpoint_step(self.client, self.run_id, steps)
        kept = set(steps[-(self.keep - 1):] if self.keep > 1 else steps[-1:])
        kept |= {best} if best is not None else set(steps[-self.keep:])
        if best is not None:
            self.client.set_tag(self.run_id, BEST_TAG, checkpoint_path(CHECKPOINTS, best))
        gone = [s for s in steps if s not in kept]
        if gone:
            repo = get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri,
                                           self.client.tracking_uri)
            for s in gone:
                repo.delete_artifacts(str(checkpoint_path(CHECKPOINTS, s)))


def best_checkpoint_step(client: MlflowClient, run_id: str, steps: list[int]) -> int | None:
    """Of `steps`, the one whose in-training evaluation has the highest target accuracy (the
    mean over data sets for a joint model); None when none was evaluated."""
    keys = [k for k in client.get_run(run_id).data.metrics
            if k.startswith("eval/") and k.endswith("/translation_accuracy")]
    scores: dict[int, list[float]] = {}
    for key in keys:
        for m in client.get_metric_history(run_id, key):
            scores.setdefault(m.step, []).append(m.value)
    evaluated = [s for s in steps if s in scores]
    return max(evaluated, key=lambda s: sum(scores[s]) / len(scores[s])) if evaluated else None


def restore_checkpoint(run_id: str, folder: str | Path,
                       client: MlflowClient | None = None) -> Path | None:
    """Download the run's latest checkpoint into `<folder>/checkpoints/`; None if it has none."""
    client = client or MlflowClient()
    names = [f.path for f in client.list_artifacts(run_id, CHECKPOINTS)
             if f.path.endswith(".ckpt")]
    if not names:
        return None
    target = Path(folder) / CHECKPOINTS  # where train() looks for the latest checkpoint
    target.mkdir(parents=True, exist_ok=True)
    latest = max(names, key=checkpoint_step)
    local = Path(client.download_artifacts(run_id, latest, str(target)))
    return local if local.parent == target else local.rename(target / local.name)


FLOW_RUN_TAG = "prefect.flow_run_id"  # the Prefect flow run that trains in an MLflow run
OUTCOME_TAG = "stargan.outcome"  # why a run ended unfinished: failed, crashed


def run_url(client: MlflowClient, run_id: str) -> str:
    """Where a person finds the run: its page on an MLflow server, else the store and id."""
    uri = redact(client.tracking_uri)
    if uri.startswith("http"):
        experiment = client.get_run(run_id).info.experiment_id
        return f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    return f"run {run_id} in {uri} (mlflow ui --backend-store-uri {uri})"


def end_unfinished(client: MlflowClient, run_id: str, outcome: str) -> None:
    """Tag a run that did not finish with `outcome`, and end it as FAILED if it is still
    RUNNING (its process was killed)."""
    status = client.get_run(run_id).info.status
    if status != "FINISHED":
        client.set_tag(run_id, OUTCOME_TAG, outcome)
    if status == "RUNNING":
        client.set_terminated(run_id, "FAILED")


def latest_unfinished_run(client: MlflowClient, experiment: str) -> str:
    """The newest run of `experiment` that did not finish and has a checkpoint to go on
    from: what `resume_from="latest"` continues."""
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], "attributes.status != 'FINISHED'",
                              order_by=["attributes.start_time DESC"]) if found else []
    for run in runs:
        if any(f.path.endswith(".ckpt") for f in client.list_artifacts(run.info.run_id,
                                                                        CHECKPOINTS)):
            return run.info.run_id
    raise ValueError(f"no unfinished run with a checkpoint in experiment '{experiment}' to "
                     "resume: start a new run (resume_from empty) or give a run id")
