"""Training inside an MLflow run: in this process, or in N data-parallel processes that
torchrun starts on this machine (`python -m stargan_core.tracked_training --job FILE` each).

The main process restores the run's last checkpoint, logs metrics, sample grids and
checkpoints to the run and evaluates at checkpoints; every process trains. While the main
process works alone, the others wait at `World.barrier`, which outlasts the collectives'
timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch

from stargan_core.checkpoint import load_models
from stargan_core.data.loading import training_data
from stargan_core.devices import resolve_device
from stargan_core.distributed import World, die_with_launcher, torchrun_command
from stargan_core.evaluation import Harness
from stargan_core.jobs import TrainJob
from stargan_core.storage import Credentials
from stargan_core.threads import set_torch_threads, threads_environment
from stargan_core.tracking import RunTracker, restore_checkpoint
from stargan_core.train import TrainHooks, math_settings, train


def train_in_run(job: TrainJob, run_id: str, out: str, log: Callable[..., None],
                 storage_options: dict[str, Any] | None = None) -> dict[str, float]:
    """Train `job` in the MLflow run from its last checkpoint, in this process or as one of
    several torchrun processes: the main process restores, tracks and evaluates; every process
    trains. `storage_options`: the job's storage reference, resolved (they may hold keys)."""
    config, evaluation = job.config(), job.evaluation
    dev = resolve_device(job.device)
    with World.join(dev) as world, contextlib.ExitStack() as stack:
        dev = world.device(dev)
        math_settings(dev, config)  # before the evaluation's classifier first uses cuBLAS
        tracker = None
        if world.is_main:
            tracker = RunTracker(run_id, keep=job.keep_checkpoints)
            stack.enter_context(mlflow.start_run(run_id=run_id, log_system_metrics=True))
            resumed = restore_checkpoint(run_id, out)
            if resumed:
                log("resuming run %s from %s", run_id, resumed.name)
        data = training_data(job.data, config.image_size, domains=job.domains, seed=config.seed,
                             storage_options=storage_options)
        report_at = [0]  # progress in the flow's log about every tenth of the run

        def on_log(step: int, metrics: dict[str, float]) -> None:
            tracker.log_metrics(step, metrics)
            if step >= report_at[0]:
                log("step %d of %d, %.0f images/s", step, config.num_iters,
                    metrics["images_per_second"])
                report_at[0] = step + max(config.num_iters // 10, 1)

        hooks = TrainHooks()
        if tracker:
            hooks = TrainHooks(on_log=on_log, on_sample=tracker.log_sample,
                               on_checkpoint=tracker.log_checkpoint)
        if evaluation.every and tracker:
            harness = Harness.build(job.data, data.spec, config.image_size,
                                    images=evaluation.images,
                                    classifier_steps=evaluation.classifier_steps, device=dev,
                                    storage_options=storage_options)

            def evaluate_at(path: Path, step: int) -> None:
                tracker.log_checkpoint(path, step)
                if step % evaluation.every == 0 and step < config.num_iters:  # the last:
                    # evaluate_task. Evaluating must not move the training's random state,
                    # which the checkpoint just saved: a resumed run would take another path.
                    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                        metrics = harness.metrics(load_models(path, dev)[0])
                    mlflow.log_metrics(metrics, step=step)
            hooks.on_checkpoint = evaluate_at
        # The others wait here, as long as it takes, while process 0 restores the run and
        # trains the evaluation's classifier; in training, where it uploads and evaluates.
        world.barrier()
        result = train(config, data, out, hooks, device=job.device)
        final = Path(out) / "samples" / f"step-{config.num_iters:07d}.png"
        if tracker and final.is_file():
            mlflow.log_artifact(str(final.rename(final.with_name("final.png"))), "samples")
    return {"step": result.step, "images_per_second": result.images_per_second}


@dataclass
class JobFile:
    """What each torchrun process reads: the job, its MLflow run, where to train and where to
    put the result, and the job's storage reference resolved (it may hold keys: the file is
    this user's alone, and never on a command line)."""

    job: TrainJob
    run_id: str
    out: str
    result: str
    storage_options: dict[str, Any] | None = None

    def write(self, path: Path) -> None:
        options = self.storage_options
        if options and isinstance(options.get("credentials"), Credentials):
            options = options | {"credentials": dataclasses.asdict(options["credentials"])}
        path.touch(mode=0o600)
        path.write_text(json.dumps({"job": self.job.model_dump(mode="json"),
                                    "run_id": self.run_id, "out": self.out,
                                    "result": self.result, "storage_options": options}))

    @staticmethod
    def read(path: str | Path) -> JobFile:
        found = json.loads(Path(path).read_text())
        options = found["storage_options"]
        if options and "credentials" in options:
            options["credentials"] = Credentials(**options["credentials"])
        return JobFile(TrainJob.model_validate(found["job"]), found["run_id"], found["out"],
                       found["result"], options)


def train_processes(job: TrainJob, run_id: str, processes: int, folder: Path,
                    log: Callable[..., None], storage_options: dict[str, Any] | None = None
                    ) -> dict[str, float]:
    """`train_in_run` in `processes` torchrun processes, each line of their output passed to
    `log`; they end with this process, even killed (this thread waits for them)."""
    job_file, result_file = folder / "job.json", folder / "result.json"
    JobFile(job, run_id, str(folder / "run"), str(result_file), storage_options).write(job_file)
    command = torchrun_command(processes, "stargan_core.tracked_training",
                               ["--job", str(job_file)])
    log("starting %d training processes: %s", processes, " ".join(command[1:]))
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=threads_environment(processes)) as process:
        for line in process.stdout:
            log("%s", line.rstrip())
    if process.returncode:
        raise RuntimeError(f"the training processes failed (exit status {process.returncode}); "
                           "their output is in the log above")
    return json.loads(result_file.read_text())


def main_process_job(path: str) -> None:
    """Entry point of each torchrun process, which ends with torchrun."""
    die_with_launcher()
    print(set_torch_threads(), flush=True)
    found = JobFile.read(path)
    trained = train_in_run(found.job, found.run_id, found.out,
                           lambda text, *args: print(text % args, flush=True),
                           found.storage_options)
    if World.from_environment().is_main:
        Path(found.result).write_text(json.dumps(trained))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one of the torchrun processes of a tracked "
                                     "training run")
    parser.add_argument("--job", required=True, help="the job file train_processes wrote")
    main_process_job(parser.parse_args().job)
