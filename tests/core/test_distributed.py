"""Data-parallel training: 2 gloo processes started by torchrun train what one process trains
on the same global batches, a killed 2-process run resumes, and its processes die with
torchrun."""

import contextlib
import os
import subprocess
import sys
import time

import psutil
import pytest
import torch

from stargan_core.checkpoint import (
    build_generator,
    latest_checkpoint,
    load_checkpoint,
    spec_and_config,
)
from stargan_core.cli import main as stargan
from stargan_core.data import read_dataset
from stargan_core.data.dataset import FaceDataset, held_out_batch
from stargan_core.distributed import World
from stargan_core.lease import exclusive
from stargan_core.storage import Location

SMALL = ["--set", "image_size=16", "--set", "g_conv_dim=4", "--set", "d_conv_dim=4",
         "--set", "g_repeat_num=1", "--set", "d_repeat_num=4", "--set", "n_critic=2",
         "--set", "num_workers=0", "--set", "log_every=5", "--set", "sample_every=1000",
         "--set", "checkpoint_every=4", "--set", "mixed_precision=false", "--batch-size", "4",
         "--seed", "3"]
STEPS = 12


def stargan_train(data, out, processes: int, steps: int = STEPS, **popen) -> subprocess.Popen:
    # gloo on the loopback interface only
    env = os.environ | {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "stargan_core.cli", "train", "--data", str(data), "--out",
         str(out), "--preset", "edit-32", "--iters", str(steps), "--device", "cpu",
         "--processes", str(processes), *SMALL],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finished(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out
    return out


def test_two_processes_train_what_one_does_and_resume_after_a_kill(celeba_root, tmp_path):
    one = finished(stargan_train(celeba_root, tmp_path / "one", 1))
    assert "processes" not in one.splitlines()[0]

    # Two processes, killed (torchrun and both training processes) once a checkpoint is
    # written.
    two = tmp_path / "two"
    process = stargan_train(celeba_root, two, 2)
    while latest_checkpoint(two / "checkpoints") is None and process.poll() is None:
        time.sleep(0.01)
    tree = psutil.Process(process.pid)
    for p in [*tree.children(recursive=True), tree]:
        p.kill()
    process.communicate()
    killed_at = latest_checkpoint(two / "checkpoints")
    assert killed_at is not None and killed_at.name != f"step-{STEPS:07d}.ckpt"

    resumed = finished(stargan_train(celeba_root, two, 2))
    assert "2 processes" in resumed and f"resuming at step {int(killed_at.stem[5:])}" in resumed

    # The same networks, up to the order of float sums. G is compared by what it computes:
    # the centre taps of its first convolution on the label channels see a constant that
    # instance norm removes, so their true gradient is 0 and Adam turns rounding noise there
    # into steps of the learning rate's size that change nothing G computes.
    one_ckpt = tmp_path / "one" / "checkpoints" / f"step-{STEPS:07d}.ckpt"
    a, b = load_checkpoint(one_ckpt), load_checkpoint(latest_checkpoint(two / "checkpoints"))
    assert a["step"] == b["step"] == STEPS
    for name, tensor in a["D"].items():
        torch.testing.assert_close(b["D"][name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    raw = read_dataset(celeba_root)
    x, c = held_out_batch(FaceDataset(raw.split("test"), raw.spec, raw.format, 16), 8)
    spec, config = spec_and_config(a)
    for net in ("G", "G_ema"):
        g_a, g_b = build_generator(spec, config), build_generator(spec, config)
        g_a.load_state_dict(a[net])
        g_b.load_state_dict(b[net])
        with torch.no_grad():
            for target in torch.eye(c.size(1)).expand(c.size(0), -1, -1).unbind(1):
                torch.testing.assert_close(g_b(x, target, c), g_a(x, target, c), rtol=1e-4,
                                           atol=1e-5, msg=net)
    # One process wrote the samples and checkpoints; no temporary file is left.
    assert sorted(p.name for p in (two / "samples").iterdir()) == [f"step-{STEPS:07d}.png"]
    assert not list((two / "checkpoints").glob("*.tmp"))


def test_the_batch_splits_evenly_or_the_run_says_what_to_do(celeba_root, tmp_path, capsys):
    world = World(rank=1, size=3)
    assert world.local_batch(12) == 4
    assert world.part(torch.arange(12)).tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="batch size 16 does not split over 3 processes"):
        world.local_batch(16)
    # Said before any process starts.
    args = ["train", "--data", str(celeba_root), "--out", str(tmp_path), "--processes"]
    assert stargan([*args, "3"]) == 2 and stargan([*args, "0"]) == 2
    assert [line for line in capsys.readouterr().err.splitlines()
            if not line.startswith("torch threads:")] == [
        "stargan train: error: batch size 16 does not split over 3 processes: use a multiple "
        "of 3", "stargan train: error: --processes must be 1 or more, got 0"]


@pytest.mark.parametrize("killed", ["torchrun", "its parent"])
def test_the_training_processes_die_with_torchrun(celeba_root, tmp_path, killed):
    """kill -9 of torchrun, or of the `stargan train` that started it, ends both training
    processes within seconds: no checkpoint after, and a rerun finds the run folder free."""
    process = stargan_train(celeba_root, tmp_path, 2, steps=100_000)
    checkpoints, started = tmp_path / "checkpoints", []
    try:
        while latest_checkpoint(checkpoints) is None and process.poll() is None:
            time.sleep(0.01)
        parent = psutil.Process(process.pid)
        (torchrun,) = [p for p in parent.children() if "--nproc-per-node" in p.cmdline()]
        started = [parent, torchrun, *torchrun.children()]
        assert len(started) == 4  # and two training processes
        (torchrun if killed == "torchrun" else parent).kill()
        _, alive = psutil.wait_procs(started[1:], timeout=5)
        assert not alive, f"still running 5 s after the kill: {alive}"
        written = sorted(checkpoints.glob("*.ckpt"))
        time.sleep(1)
        assert sorted(checkpoints.glob("*.ckpt")) == written
        with exclusive(Location.of(str(tmp_path)), "the next training", "-"):
            pass  # the killed run's lease is taken over
    finally:
        for p in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        process.communicate()


SLOW_MAIN = '''"""A tracked training whose process 0 is slow wherever it works alone:
restoring and building the evaluation, uploading checkpoints, evaluating."""
import sys
import time

from stargan_core import tracked_training
from stargan_core.evaluation import Harness
from stargan_core.tracking import RunTracker

SECONDS = float(sys.argv[1])


class SlowHarness(Harness):
    @classmethod
    def build(cls, *args, **kwargs):
        time.sleep(SECONDS)
        return super().build(*args, **kwargs)

    def metrics(self, *args, **kwargs):
        time.sleep(SECONDS)
        return super().metrics(*args, **kwargs)


upload = RunTracker.log_checkpoint


def slow_upload(self, path, step):
    time.sleep(SECONDS)
    upload(self, path, step)


tracked_training.Harness = SlowHarness
RunTracker.log_checkpoint = slow_upload
tracked_training.main_process_job(sys.argv[2])
'''


def test_the_others_wait_out_a_slow_main_process(celeba_root, tmp_path):
    """Process 0 restores, builds the evaluation, uploads checkpoints and evaluates alone, each
    here 4 s, twice the collectives' timeout: the other process waits at the barrier, and the
    run trains, evaluates and logs to the end."""
    import json

    import mlflow

    from stargan_core.config import TrainConfig
    from stargan_core.distributed import COLLECTIVE_TIMEOUT, torchrun_command
    from stargan_core.jobs import TrainJob
    from stargan_core.tracked_training import JobFile

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment("slow")).info.run_id
    config = TrainConfig(image_size=16, g_conv_dim=4, d_conv_dim=4, g_repeat_num=1,
                         d_repeat_num=4, n_critic=2, num_workers=0, log_every=2,
                         sample_every=1000, checkpoint_every=4, mixed_precision=False,
                         batch_size=4, num_iters=8, num_iters_decay=4)
    job = TrainJob(data=[str(celeba_root)], options=config.to_dict(), device="cpu",
                   evaluation={"every": 4, "images": 16, "classifier_steps": 4},
                   keep_checkpoints=0)
    JobFile(job, run_id, str(tmp_path / "run"), str(tmp_path / "result.json")).write(
        tmp_path / "job.json")
    (tmp_path / "slow_main.py").write_text(SLOW_MAIN)
    command = torchrun_command(2, "slow_main", ["4", str(tmp_path / "job.json")])
    env = os.environ | {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
                        COLLECTIVE_TIMEOUT: "2", "MLFLOW_TRACKING_URI": store,
                        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "result.json").read_text())["step"] == 8
    assert [m.step for m in client.get_metric_history(run_id, "lr/G")] == [2, 4, 6, 8]
    evaluated = [k for k in client.get_run(run_id).data.metrics if k.startswith("eval/")]
    assert evaluated and all(
        [m.step for m in client.get_metric_history(run_id, k)] == [4] for k in evaluated)


def test_each_training_process_takes_a_gpu_of_its_own_or_is_refused(celeba_root, tmp_path,
                                                                   monkeypatch, capsys):
    """Simulated GPUs: process N of a machine takes GPU N; one named GPU for several processes
    and more processes than GPUs are refused before anything starts."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda")
    assert World(1, 2, 1, 2).device(cuda) == torch.device("cuda", 1)
    assert World(2, 4, 0, 2).device(cuda) == torch.device("cuda", 0)  # 2 machines of 2
    assert World().device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="names one GPU, but 2 training processes"):
        World(0, 2, 0, 2).device(torch.device("cuda", 1))
    with pytest.raises(ValueError, match="3 training processes on this machine, but 2 GPUs"):
        World(0, 3, 0, 3).device(cuda)
    args = ["train", "--data", str(celeba_root), "--out", str(tmp_path / "run"), "--processes"]
    assert stargan([*args, "4", "--device", "cuda"]) == 2
    assert stargan([*args, "2", "--device", "cuda:1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("stargan train: error")]
    assert errors[:2] == [
        "stargan train: error: 4 training processes, but 2 GPUs visible (CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): give at most 2 processes, or "
        "--device cpu",
        "stargan train: error: device cuda:1 names one GPU, but 2 training processes would "
        "each need their own: give --device cuda (process N takes GPU N), and choose the GPUs "
        "with CUDA_VISIBLE_DEVICES"]
    assert not (tmp_path / "run").exists()
