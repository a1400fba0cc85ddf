"""train-stargan: prepared shards -> an MLflow run -> an evaluated, registered generator.

    open the run (or resume one) -> train (GPU task, retried; resumes from the run's last
    checkpoint) -> evaluate (per target, and the champion on the same evidence) -> register
    (alias challenger, with the review; champion when `auto_promote` and the review allow)

Tasks talk through the MLflow run only (parameters, checkpoints, metrics), so each can run on
another machine: training on a GPU worker, the rest anywhere.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
from mlflow import MlflowClient
from prefect import flow, get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun, State
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run as current_flow_run

from flows.common import storage_options
from stargan_core.checkpoint import checkpoint_step, load_checkpoint, load_models, spec_and_config
from stargan_core.data.loading import chosen_domains
from stargan_core.data.manifest import manifest_spec, read_manifest
from stargan_core.devices import check_gpus, resolve_device
from stargan_core.domains import DomainSpec
from stargan_core.evaluation import Harness, flat_metrics, summarize
from stargan_core.jobs import TrainJob
from stargan_core.registry import default_model_name, model_card, register
from stargan_core.review import Review, promote_reviewed, record_review, review
from stargan_core.serving import log_generator
from stargan_core.threads import set_torch_threads
from stargan_core.tracked_training import train_in_run, train_processes
from stargan_core.tracking import (
    FLOW_RUN_TAG,
    OUTCOME_TAG,
    end_unfinished,
    latest_unfinished_run,
    log_params,
    restore_checkpoint,
    run_url,
)

FINAL_GRID = "samples/final.png"
JUDGE_FOLDER, JUDGE_FILE = "judge", "judge.pt"  # the run's judge: evaluate_task's classifiers


def data_spec(urls: list[str], domains: list[str] | None,
              options: dict[str, Any] | None = None) -> DomainSpec:
    manifests = [read_manifest(u, options) for u in urls]
    return DomainSpec.joint(*(manifest_spec(m, chosen_domains(m["format"], domains, len(urls) > 1))
                              for m in manifests))


def settle_abandoned_runs(client: MlflowClient, experiment: str) -> None:
    """Runs left RUNNING by a flow run that ended without saying so (a killed process): each
    is marked FAILED and tagged crashed, once Prefect has the flow run in a final state."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return
    with get_client(sync_client=True) as prefect:
        for run in client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'"):
            flow_run_id = run.data.tags.get(FLOW_RUN_TAG)
            if flow_run_id and flow_run_id != str(current_flow_run.id):
                try:
                    state = prefect.read_flow_run(UUID(flow_run_id)).state
                except ObjectNotFound:  # a flow run of another Prefect server: not ours to judge
                    continue
                if state is not None and state.is_final():
                    end_unfinished(client, run.info.run_id, state.type.value.lower())


@task(name="open-run", cache_policy=NO_CACHE)
def open_run(experiment: str, params: dict[str, Any], resume_from: str | None) -> str:
    """A new MLflow run with every parameter, or the run to resume (`latest`: the newest
    unfinished run of the experiment). Says at once which run and where to find it."""
    client = MlflowClient()
    settle_abandoned_runs(client, experiment)
    if resume_from:
        run = client.get_run(latest_unfinished_run(client, experiment)
                             if resume_from == "latest" else resume_from)  # fails if unknown
        run_id = run.info.run_id
        owner = run.data.tags.get(FLOW_RUN_TAG)
        if run.info.status == "RUNNING" and owner != str(current_flow_run.id):
            # Still RUNNING once abandoned runs are settled: its flow run is not over.
            raise RuntimeError(
                f"MLflow run {run_id} is being trained by flow run {owner}, which is not over: "
                "one training at a time goes on in a run. Wait for it, or cancel it (or, if its "
                "process is gone, set it Crashed) in Prefect, then resume")
        if OUTCOME_TAG in run.data.tags:  # it goes on: no longer failed or crashed
            client.delete_tag(run_id, OUTCOME_TAG)
    else:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run_id = client.create_run(experiment_id).info.run_id
        log_params(client, run_id, params)
    client.set_tag(run_id, FLOW_RUN_TAG, str(current_flow_run.id))
    get_run_logger().info("%s MLflow run %s", "resuming" if resume_from else "training in",
                          run_url(client, run_id))
    return run_id


def mark_run_unfinished(flow: object, flow_run: FlowRun, state: State) -> None:
    """Flow hook: the MLflow run of a failed or crashed flow run is FAILED, not RUNNING. The
    engine calls it positionally, the worker (after a killed flow-run process) by keyword."""
    client = MlflowClient()
    for found in client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            f"tags.`{FLOW_RUN_TAG}` = '{flow_run.id}'"):
        end_unfinished(client, found.info.run_id, state.type.value.lower())


@task(name="train", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def train_task(run_id: str, job: TrainJob) -> dict[str, float]:
    """Train `job` in the MLflow run, from its last checkpoint when it has one. With
    `job.processes` > 1, torchrun starts that many data-parallel processes on this worker."""
    logger = get_run_logger()
    logger.info(set_torch_threads(job.processes))
    options = storage_options(job.storage)
    with tempfile.TemporaryDirectory() as out:
        if job.processes == 1:
            trained = train_in_run(job, run_id, out, logger.info, options)
        else:
            trained = train_processes(job, run_id, job.processes, Path(out), logger.info,
                                      options)
    logger.info("trained to step %d at %.1f images/s", trained["step"],
                trained["images_per_second"])
    return trained


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(run_id: str, job: TrainJob, model_name: str
                  ) -> tuple[dict[str, float], Review]:
    """Target accuracy, preservation and, on synthetic data, fidelity to the ground truth, on
    held-out images, logged to the run; and the champion of `model_name` judged on the same
    images by the same classifier."""
    get_run_logger().info(set_torch_threads())
    dev = resolve_device(job.device)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = restore_checkpoint(run_id, tmp)
        g, _, spec, config, _ = load_models(checkpoint, dev)
        step = checkpoint_step(checkpoint.name)
    harness = Harness.build(job.data, spec, config.image_size, images=job.evaluation.images,
                            classifier_steps=job.evaluation.classifier_steps, device=dev,
                            storage_options=storage_options(job.storage))
    results = harness.evaluate(g)
    metrics = flat_metrics(results, spec.is_joint)
    client = MlflowClient()
    logged = client.get_metric_history(run_id, next(iter(metrics)))
    if not any(m.step == step for m in logged):  # a rerun of a finished run logs nothing twice
        with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
            # The judge of the version's verdicts, registered with it (register_task); then
            # the metrics, which say that this task is done.
            judge = harness.judge(config.image_size).save(Path(tmp) / JUDGE_FILE)
            mlflow.log_artifact(str(judge), JUDGE_FOLDER)
            mlflow.log_metrics(metrics, step=step)
    return metrics, review(model_name, spec, config.image_size, harness, results, dev, client)


@task(name="register", cache_policy=NO_CACHE)
def register_task(run_id: str, model_name: str, metrics: dict[str, float], found: Review,
                  auto_promote: bool) -> tuple[str, bool]:
    """Log the generator as an MLflow model and register a new version, alias challenger,
    with its review; promote it when `auto_promote` and the review allow it."""
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        checkpoint = restore_checkpoint(run_id, tmp)
        judge = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{JUDGE_FOLDER}/{JUDGE_FILE}", dst_path=tmp)
        info = log_generator(checkpoint, judge)
        spec, config = spec_and_config(load_checkpoint(checkpoint))
    card_metrics = metrics if "eval/translation_accuracy" in metrics else {
        k.replace(f"eval/{spec.label_sets[0].dataset}/", "eval/", 1): v
        for k, v in metrics.items()}
    card = model_card(card_metrics, run_id, spec, config.to_dict(), FINAL_GRID)
    version = register(info.model_uri, model_name, card)
    record_review(model_name, version, found)
    promoted = auto_promote and found.promote
    if promoted:
        promote_reviewed(model_name, version, "train-stargan (auto_promote)")
    return version, promoted


@flow(name="train-stargan", log_prints=True, on_failure=[mark_run_unfinished],
      on_crashed=[mark_run_unfinished])
def train_stargan(
    job: TrainJob,
    experiment: str | None = None,
    model_name: str | None = None,
    resume_from: str | None = None,
    auto_promote: bool = False,
) -> dict[str, Any]:
    """Train StarGAN on prepared data sets, track it in MLflow and register the generator.

    job: the data, the preset and the training options replacing its values, the device and
        processes, the evaluation and storage (see each field's description).
    experiment / model_name: MLflow experiment and registered model (default
        stargan-<dataset>, stargan-joint for two data sets).
    resume_from: an MLflow run id to continue from its last checkpoint, or `latest`: the
        experiment's newest run that did not finish (failed, crashed, killed).
    auto_promote: make the new version champion when its review against the champion (the
        same held-out images and classifier) finds it worse in no metric beyond the noise, or
        when there is no champion; otherwise a reviewer promotes (`stargan promote`).
    """
    config = job.config()
    spec = data_spec(job.data, job.domains, storage_options(job.storage))  # fails before any
    # work on a wrong manifest, and on wrong GPUs:
    check_gpus(resolve_device(job.device), job.processes, "training processes")
    name = model_name or default_model_name(spec)
    params = config.to_dict() | {"preset": job.preset, "manifest_url": ",".join(job.data),
                                 "domains": ",".join(spec.domains), "device": job.device,
                                 "processes": job.processes, "model_name": name}
    run_id = open_run(experiment or name, params, resume_from)
    trained = train_task(run_id, job)
    metrics, found = evaluate_task(run_id, job, name)
    version, promoted = register_task(run_id, name, metrics, found, auto_promote)
    for label_set in spec.label_sets:
        prefix = f"eval/{label_set.dataset}/" if spec.is_joint else "eval/"
        print(f"{label_set.dataset}: {summarize(metrics, prefix)}")
    if found.comparison is not None:
        print(found.comparison.table())
    print(f"run {run_id}: {trained['step']} steps; registered {name} version {version} as "
          f"challenger; review: {found.detail}; " + (
              "promoted to champion" if promoted else
              f"to promote: stargan promote {name} {version}"))
    return {"run_id": run_id, "model_name": name, "version": version, "metrics": metrics,
            "images_per_second": trained["images_per_second"], "review": found.verdict,
            "promoted": promoted}
