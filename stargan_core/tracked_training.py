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
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import torch

from stargan_core.checkpoint import load_models
from stargan_core.config import TrainConfig
from stargan_core.data.loading import training_data
from stargan_core.devices import resolve_device
from stargan_core.distributed import World, die_with_launcher, torchrun_command
from stargan_core.evaluation import Harness
from stargan_core.threads import set_torch_threads, threads_environment
from stargan_core.tracking import RunTracker, restore_checkpoint
from stargan_core.train import math_settings, train


def train_in_run(run_id: str, urls: list[str], domains: list[str] | None, config: TrainConfig,
                 device: str, evaluation: dict[str, int], keep_checkpoints: int,
                 options: dict[str, Any] | None, out: str, log: Callable[..., None]
                 ) -> dict[str, float]:
    """Train in the MLflow run from its last checkpoint, in this process or as one of several
    torchrun processes: the main process restores, tracks and evaluates; every process trains."""
    dev = resolve_device(device)
    with World.join(dev) as world, contextlib.ExitStack() as stack:
        dev = world.device(dev)
        math_settings(dev, config)  # before the evaluation's classifier first uses cuBLAS
        tracker = None
        if world.is_main:
            tracker = RunTracker(run_id, keep=keep_checkpoints)
            stack.enter_context(mlflow.start_run(run_id=run_id, log_system_metrics=True))
            resumed = restore_checkpoint(run_id, out)
            if resumed:
                log("resuming run %s from %s", run_id, resumed.name)
        data = training_data(urls, config.image_size, domains=domains, seed=config.seed,
                             storage_options=options)
        on_checkpoint = tracker.log_checkpoint if tracker else None
        every = evaluation["every"]
        if every and tracker:
            harness = Harness.build(urls, data.spec, config.image_size,
                                    images=evaluation["images"],
                                    classifier_steps=evaluation["classifier_steps"], device=dev,
                                    storage_options=options)

            def on_checkpoint(path: Path, step: int) -> None:
                tracker.log_checkpoint(path, step)
                if step % every == 0 and step < config.num_iters:  # the last: evaluate_task
                    # Evaluating must not move the training's random state, which the
                    # checkpoint just saved: a resumed run would take another path.
                    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                        metrics = harness.metrics(load_models(path, dev)[0])
                    mlflow.log_metrics(metrics, step=step)
        # The others wait here, as long as it takes, while process 0 restores the run and
        # trains the evaluation's classifier; in training, where it uploads and evaluates.
        world.barrier()

        report_at = [0]  # progress in the flow's log about every tenth of the run

        def on_log(step: int, metrics: dict[str, float]) -> None:
            tracker.log_metrics(step, metrics)
            if step >= report_at[0]:
                log("step %d of %d, %.0f images/s", step, config.num_iters,
                    metrics["images_per_second"])
                report_at[0] = step + max(config.num_iters // 10, 1)

        result = train(config, data.spec, data.datasets, out, sample_images=data.sample_images,
                       sample_labels=data.sample_labels, device=device,
                       on_log=on_log if tracker else None,
                       on_sample=tracker.log_sample if tracker else None,
                       on_checkpoint=on_checkpoint, data_format=data.data_format)
        final = Path(out) / "samples" / f"step-{config.num_iters:07d}.png"
        if tracker and final.is_file():
            mlflow.log_artifact(str(final.rename(final.with_name("final.png"))), "samples")
    return {"step": result.step, "images_per_second": result.images_per_second}


def train_processes(job: dict[str, Any], processes: int, folder: Path,
                    log: Callable[..., None]) -> dict[str, float]:
    """`train_in_run` in `processes` torchrun processes, each line of their output passed to
    `log`; they end with this process, even killed (this thread waits for them). The job
    travels in a file only this user can read (storage options may hold secrets), never on
    the command line."""
    job_file, result_file = folder / "job.json", folder / "result.json"
    job_file.touch(mode=0o600)
    job_file.write_text(json.dumps(job | {"out": str(folder / "run"),
                                          "result": str(result_file)}))
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
    job = json.loads(Path(path).read_text())
    result_file = job.pop("result")
    job["config"] = TrainConfig(**job["config"])
    trained = train_in_run(**job, log=lambda text, *args: print(text % args, flush=True))
    if World.from_environment().is_main:
        Path(result_file).write_text(json.dumps(trained))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one of the torchrun processes of a tracked "
                                     "training run")
    parser.add_argument("--job", required=True, help="the job file train_processes wrote")
    main_process_job(parser.parse_args().job)
