import importlib.util
import socket
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

from stargan_core.checkpoint import build_networks, latest_checkpoint, load_checkpoint, load_models
from stargan_core.config import PRESETS, PresetName, TrainConfig, preset
from stargan_core.data import read_dataset, read_datasets
from stargan_core.data.dataset import FaceDataset, preload_if_small
from stargan_core.data.prepare import PrepareConfig, prepare_dataset
from stargan_core.data.sampling import StepSampler
from stargan_core.data.shards import ShardDataset
from stargan_core.domains import DomainSpec
from stargan_core.io.images import ImageRule
from stargan_core.preprocessing import Preprocessing
from stargan_core.train import StepInputs, TrainHooks, lr_factor, train, training_step
from tests.conftest import training_set

SMALL = dict(image_size=16, g_conv_dim=4, d_conv_dim=4, g_repeat_num=1, d_repeat_num=4,
             batch_size=4, n_critic=2, num_workers=0, log_every=1, sample_every=3,
             checkpoint_every=3)
EDITING = dict(g_output="masked", g_conditioning="difference", lambda_id=5.0, lambda_mask=0.02,
               ema_beta=0.999)


@pytest.fixture(scope="module")
def celeba_train(celeba_root):
    raw = read_dataset(celeba_root)
    return raw.spec, FaceDataset(raw.split("train")[:32], raw.spec, raw.format, 16)


@pytest.fixture(scope="module")
def celeba_streamed(celeba_root, tmp_path_factory):
    """The held-out split of a prepared set, streamed from row groups of 2 images: 12 images,
    so that 8 steps of 4 cross several epochs."""
    url = str(tmp_path_factory.mktemp("prepared") / "celeba")
    prepare_dataset(PrepareConfig(str(celeba_root), url, rule=ImageRule(32), rows_per_shard=4,
                                  row_group_size=2))
    spec = read_dataset(celeba_root).spec
    return spec, ShardDataset(url, spec, "test", 16, shuffle_buffer=5, seed=7)


def test_learning_rate_decays_linearly_to_zero():
    cfg = TrainConfig(num_iters=100, num_iters_decay=40)
    assert lr_factor(0, cfg) == lr_factor(60, cfg) == 1.0
    assert lr_factor(80, cfg) == pytest.approx(0.5)
    assert lr_factor(100, cfg) == 0.0
    factors = [lr_factor(s, cfg) for s in range(60, 101)]
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False))


def test_presets_are_the_papers_and_a_tiny_one():
    paper = PRESETS["paper-128"]
    assert (paper.image_size, paper.batch_size, paper.num_iters, paper.num_iters_decay) == (
        128, 16, 200_000, 100_000)
    assert (paper.g_lr, paper.d_lr, paper.beta1, paper.beta2, paper.n_critic) == (
        1e-4, 1e-4, 0.5, 0.999, 5)
    assert (paper.lambda_cls, paper.lambda_rec, paper.lambda_gp) == (1, 10, 10)
    # The paper's networks and losses exactly: none of the options for faithful edits.
    assert (paper.g_output, paper.g_conditioning, paper.lambda_id, paper.lambda_mask,
            paper.ema_beta, paper.d_projection) == ("tanh", "target", 0, 0, 0, False)
    # The editing presets: the same networks with those options.
    for name, base in (("edit-128", paper), ("edit-32", PRESETS["tiny"])):
        edit = PRESETS[name]
        assert (edit.g_output, edit.g_conditioning) == ("masked", "difference")
        assert edit.lambda_id > 0 and edit.lambda_mask > 0 and 0.99 <= edit.ema_beta < 1
        assert edit.d_projection
        assert (edit.image_size, edit.g_conv_dim, edit.g_repeat_num) == (
            base.image_size, base.g_conv_dim, base.g_repeat_num)
    assert set(typing.get_args(PresetName)) == set(PRESETS)
    assert preset("tiny", num_iters=10, num_iters_decay=5).num_iters == 10
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown training option"):
        preset("tiny", learning_rate=1)


def test_step_sampler_is_a_function_of_step():
    full = StepSampler(10, 3, seed=1)
    batches = [b for _, b in zip(range(7), full, strict=False)]
    resumed = [b for _, b in zip(range(3), StepSampler(10, 3, seed=1, start_step=4),
                                 strict=False)]
    assert resumed == batches[4:]
    for epoch_start in (0, 3):  # 3 full batches per epoch, no index twice within an epoch
        seen = sum(batches[epoch_start:epoch_start + 3], [])
        assert len(set(seen)) == 9


def test_training_writes_checkpoints_samples_and_losses(celeba_train, tmp_path):
    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=6, num_iters_decay=3, **SMALL)
    logged = {}
    x = torch.stack([ds[i][0] for i in range(2)])
    c = torch.stack([ds[i][1] for i in range(2)])
    result = train(cfg, training_set(spec, [ds], data_format="celeba", images=x, labels=c),
                   tmp_path, TrainHooks(on_log=lambda s, m: logged.setdefault(s, m)))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-0000003.ckpt", "step-0000006.ckpt"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "step-0000003.png", "step-0000006.png"]
    assert result.checkpoint == tmp_path / "checkpoints" / "step-0000006.ckpt"
    assert {"D/loss_real", "D/loss_fake", "D/loss_cls", "D/loss_gp"} <= set(logged[1])
    assert "G/loss_rec" not in logged[1] and "G/loss_rec" in logged[2]  # G every n_critic
    assert logged[6]["lr/G"] == pytest.approx(cfg.g_lr / 3)
    state = load_checkpoint(result.checkpoint)
    assert state["step"] == 6
    # The decay has reached zero by the final step.
    assert state["g_opt"]["param_groups"][0]["lr"] == 0.0
    assert state["d_opt"]["param_groups"][0]["lr"] == 0.0


def test_checkpoints_load_with_weights_only(celeba_train, tmp_path):
    spec, ds = celeba_train
    train(TrainConfig(num_iters=3, num_iters_decay=1, **SMALL),
          training_set(spec, [ds], data_format="celeba"), tmp_path)
    path = latest_checkpoint(tmp_path / "checkpoints")
    torch.load(path, weights_only=True)  # plain data only: no pickled objects
    g, d, loaded_spec, cfg, preprocessing = load_models(path)
    assert loaded_spec == spec and cfg.image_size == 16
    assert preprocessing == Preprocessing("celeba", 16)
    # Checkpoints from before the preprocessing was saved name their data format.
    state = torch.load(path, weights_only=True)
    legacy = {k: v for k, v in state.items() if k != "preprocessing"} | {"data_format": "rafd"}
    torch.save(legacy, tmp_path / "legacy.ckpt")
    assert load_models(tmp_path / "legacy.ckpt")[4] == Preprocessing("center", 16)
    assert not g.training and not d.training


@pytest.mark.parametrize("options", [{}, EDITING, {"num_workers": 2}],
                         ids=["paper", "editing", "streamed"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(celeba_train, celeba_streamed,
                                                               tmp_path, options):
    spec, ds = celeba_streamed if options.get("num_workers") else celeba_train
    cfg = TrainConfig(num_iters=8, num_iters_decay=4, seed=7, **SMALL | options)
    torch.use_deterministic_algorithms(True)
    try:
        straight = train(cfg, training_set(spec, [ds]), tmp_path / "straight")
        # A crash during step 5: the checkpoint of step 3 is the last one on disk.
        with pytest.raises(Crash):
            train(cfg, training_set(spec, [ds]), tmp_path / "stopped",
                  TrainHooks(on_log=crash_at(5)))
        assert latest_checkpoint(tmp_path / "stopped" / "checkpoints").name == (
            "step-0000003.ckpt")
        # The same command again resumes from step 3 and runs to step 8.
        logged = []
        resumed = train(cfg, training_set(spec, [ds]), tmp_path / "stopped",
                        TrainHooks(on_log=lambda s, _: logged.append(s)))
    finally:
        torch.use_deterministic_algorithms(False)
    assert logged == [4, 5, 6, 7, 8]  # no step lost, none repeated twice
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert b["step"] == a["step"] == 8
    assert ("G_ema" in a) == (options == EDITING)
    for net in ("G", "D", "G_ema") if options == EDITING else ("G", "D"):
        for name, tensor in a[net].items():
            torch.testing.assert_close(b[net][name], tensor, rtol=0, atol=0, msg=name)
    for opt in ("g_opt", "d_opt"):
        for key, value in a[opt]["state"][0].items():
            torch.testing.assert_close(b[opt]["state"][0][key], value, rtol=0, atol=0)


def test_editing_options_train_their_losses_and_translate_with_the_average(celeba_train,
                                                                          tmp_path):
    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=4, num_iters_decay=2, **SMALL, **EDITING)
    logged = {}
    result = train(cfg, training_set(spec, [ds]), tmp_path,
                   TrainHooks(on_log=lambda s, m: logged.setdefault(s, m)))
    assert {"G/loss_id", "G/loss_mask"} <= set(logged[2])
    assert 0 < logged[2]["G/loss_mask"] < 1  # the mean of a sigmoid mask
    state = load_checkpoint(result.checkpoint)
    g = load_models(result.checkpoint)[0]
    assert (g.output, g.conditioning) == ("masked", "difference")
    # Translations use the moving average of G, which lags behind G itself.
    for name, tensor in g.state_dict().items():
        torch.testing.assert_close(tensor, state["G_ema"][name], rtol=0, atol=0)
    assert any(not torch.equal(state["G"][k], state["G_ema"][k]) for k in state["G"])


class Crash(Exception):
    pass


def crash_at(step):
    def on_log(s, _):
        if s == step:
            raise Crash
    return on_log


def test_joint_training_uses_both_data_sets_and_the_mask(celeba_root, rafd_root, tmp_path):
    raws, spec = read_datasets([str(celeba_root), str(rafd_root)])
    assert spec.c_dim == 15
    datasets = [FaceDataset(r.split("train")[:16], spec, r.format, 16, i)
                for i, r in enumerate(raws)]
    assert datasets[1].labels[:, 13:].tolist() == [[0, 1]] * 16
    cfg = TrainConfig(num_iters=2, num_iters_decay=1, **SMALL)
    read = [Counting(ds) for ds in datasets]
    result = train(cfg, training_set(spec, read), tmp_path)
    g, d, loaded, _, _ = load_models(result.checkpoint)
    assert g.c_dim == 15 and loaded.is_joint
    assert d.cls.out_channels == 13
    # Each step trains on a CelebA and a RaFD batch.
    assert [r.items for r in read] == [2 * cfg.batch_size] * 2


class Counting(torch.utils.data.Dataset):
    """A data set that counts the items read from it."""

    def __init__(self, ds):
        self.ds, self.items = ds, 0

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, index):
        self.items += 1
        return self.ds[index]


def test_dataset_count_must_match_label_sets(celeba_train, tmp_path):
    spec, ds = celeba_train
    with pytest.raises(ValueError, match="1 label sets, got 2 data sets"):
        train(TrainConfig(num_iters=1, num_iters_decay=0, **SMALL), training_set(spec, [ds, ds]),
              tmp_path)


def test_read_datasets_joint_spec(celeba_root, rafd_root):
    _, spec = read_datasets([str(celeba_root), str(rafd_root)])
    assert [ls.dataset for ls in spec.label_sets] == ["celeba", "rafd"]


def test_resuming_a_run_with_another_architecture_says_what_to_do(celeba_train, tmp_path):
    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=1, num_iters_decay=0, **SMALL)
    train(cfg, training_set(spec, [ds]), tmp_path)
    with pytest.raises(ValueError, match=r"image_size=16 \(now 32\).*--no-resume"):
        train(cfg.replace(image_size=32, num_iters=2), training_set(spec, [ds]), tmp_path)


def test_starting_over_removes_the_old_runs_checkpoints(celeba_train, tmp_path):
    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=6, num_iters_decay=0, **SMALL)
    train(cfg, training_set(spec, [ds]), tmp_path)
    result = train(cfg.replace(num_iters=3), training_set(spec, [ds]), tmp_path, resume=False)
    assert result.checkpoint.name == "step-0000003.ckpt"
    assert latest_checkpoint(tmp_path / "checkpoints") == result.checkpoint
    assert load_checkpoint(result.checkpoint)["step"] == 3


def test_joint_training_chooses_celeba_domains_and_keeps_rafds(celeba_root, rafd_root):
    from stargan_core.data.loading import training_data

    data = training_data([str(celeba_root), str(rafd_root)], 16, domains=["Blond_Hair", "Male"],
                         preload=False)
    assert [ls.dataset for ls in data.spec.label_sets] == ["celeba", "rafd"]
    assert data.spec.label_sets[0].domains == ("Blond_Hair", "Male")
    assert len(data.spec.label_sets[1].domains) == 8  # the expressions, untouched
    with pytest.raises(ValueError, match="CelebA only"):  # alone, RaFD has nothing to choose
        training_data([str(rafd_root)], 16, domains=["Blond_Hair"], preload=False)


def test_images_are_decoded_when_first_asked_for_and_only_once(celeba_train):
    _, ds = celeba_train
    calls = []

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, index):
            calls.append(index)
            return ds[index]

    lazy = preload_if_small(Counting())
    assert calls == [0, 0]  # the size check, and the shape of the memory kept
    for index in (5, 3, 5, 3):
        image, labels = lazy[index]
        torch.testing.assert_close(image, ds[index][0], rtol=0, atol=0)
        torch.testing.assert_close(labels, ds[index][1], rtol=0, atol=0)
    assert calls == [0, 0, 5, 3]  # training started before anything else was decoded


@pytest.mark.parametrize("options", [{}, EDITING], ids=["paper", "editing"])
def test_the_faster_step_computes_the_gradients_of_the_step_it_replaced(options):
    """The training step against the step as it was (bench/train_throughput.py's baseline:
    one pass per image set, G's translation computed twice), fp32, on the same networks and
    draws: a G-update step gives both networks the same gradients."""
    spec = DomainSpec.celeba()
    path = Path(__file__).parents[2] / "bench" / "train_throughput.py"
    bench = importlib.util.module_from_spec(importlib.util.spec_from_file_location("b", path))
    bench.__spec__.loader.exec_module(bench)
    config = TrainConfig(**SMALL | options | {"batch_size": 6})
    torch.manual_seed(0)
    nets = build_networks(spec, config, torch.device("cpu"))
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    c = (torch.rand(6, spec.c_dim) > 0.5).float()
    inputs = StepInputs.draw(x, c)
    off = torch.autocast("cpu", enabled=False)
    grads = []
    for step in (bench.reference_step, training_step):
        copy = build_networks(spec, config, torch.device("cpu"))
        copy.G.load_state_dict(nets.G.state_dict())
        copy.D.load_state_dict(nets.D.state_dict())
        step(copy, inputs, 0, spec, config, True, off)
        grads.append([p.grad for p in [*copy.G.parameters(), *copy.D.parameters()]])
    for reference, fast in zip(*grads, strict=True):
        torch.testing.assert_close(fast, reference, rtol=1e-3, atol=1e-6)


def test_a_projection_critic_trains_on_the_labels_and_its_run_remembers_it(celeba_train,
                                                                           tmp_path):
    """With `d_projection`, D scores real images for their labels and translations for their
    targets; the option is part of the architecture a run resumes with."""
    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=2, num_iters_decay=0, d_projection=True, **SMALL | EDITING)
    torch.manual_seed(cfg.seed)  # as training starts: the same initial weights
    before = build_networks(spec, cfg, torch.device("cpu")).D.embed.weight.clone()
    result = train(cfg, training_set(spec, [ds]), tmp_path)
    _, d, *_ = load_models(result.checkpoint)
    assert not torch.equal(d.embed.weight, before)  # the label embedding learns
    with pytest.raises(ValueError, match=r"d_projection=True \(now False\).*--no-resume"):
        train(cfg.replace(d_projection=False, num_iters=3), training_set(spec, [ds]), tmp_path)



def test_the_non_saturating_loss_and_resize_upsampling_train_and_the_run_remembers_them(
        celeba_train, tmp_path):
    """The non-saturating loss with R1 and resize up-sampling train (the losses finite, D's
    real term a softplus, so positive); up-sampling is architecture a run resumes with, the
    loss is not."""
    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=2, num_iters_decay=0, d_projection=True, gan_loss="non-saturating",
                      lambda_gp=1.0, g_upsampling="resize", **SMALL | EDITING)
    logged: list[dict[str, float]] = []
    result = train(cfg, training_set(spec, [ds]), tmp_path,
                   TrainHooks(on_log=lambda step, values: logged.append(values)))
    assert logged and all(v == v and abs(v) < 1e3 for values in logged for v in values.values())
    assert all(values["D/loss_real"] > 0 and values["D/loss_gp"] >= 0 for values in logged)
    g, *_ = load_models(result.checkpoint)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    train(cfg.replace(gan_loss="wgan-gp", lambda_gp=10.0, num_iters=3), training_set(spec, [ds]),
          tmp_path)
    with pytest.raises(ValueError, match=r"g_upsampling=resize \(now transposed\)"):
        train(cfg.replace(g_upsampling="transposed", num_iters=4), training_set(spec, [ds]),
              tmp_path)


HOLDER = """
import sys, time
from stargan_core.lease import exclusive
from stargan_core.storage import Location
with exclusive(Location.of(sys.argv[1]), "training elsewhere", "-"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_run_folder_has_one_writer_until_it_is_gone(celeba_train, tmp_path, caplog):
    """A second training into a folder is refused while the first one lives, naming it, even
    in the same process; once the first is killed, the next one takes the folder over."""
    from stargan_core.lease import OutputBusy, exclusive
    from stargan_core.storage import Location

    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=3, num_iters_decay=0, **SMALL)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        refused = (rf"being written by another job: training elsewhere \(process {holder.pid} "
                   rf"on {socket.gethostname()}, .*train into another folder \(--out\)")
        with pytest.raises(OutputBusy, match=refused):
            train(cfg, training_set(spec, [ds]), tmp_path)
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    result = train(cfg, training_set(spec, [ds]), tmp_path)
    assert result.checkpoint.name == "step-0000003.ckpt"
    assert f"from process {holder.pid} on {socket.gethostname()}, which is gone" in caplog.text
    assert not (tmp_path / ".job-lease").exists()  # released
    with exclusive(Location.of(str(tmp_path)), "a first training here", "-"), \
            pytest.raises(OutputBusy, match="a first training here"):
        train(cfg, training_set(spec, [ds]), tmp_path)


def test_a_run_checkpoints_by_time_and_resumes_from_there(celeba_train, tmp_path):
    """With `checkpoint_every` beyond the run, checkpoints come every `checkpoint_minutes` of
    training (here at every logging step), and a run killed between them resumes from the
    last one, to the same weights; a checkpoint of a config without the field resumes too."""
    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=8, num_iters_decay=4, seed=7, **SMALL | {
        "checkpoint_every": 1000, "log_every": 2, "checkpoint_minutes": 1e-6})
    torch.use_deterministic_algorithms(True)
    try:
        straight = train(cfg.replace(checkpoint_minutes=0), training_set(spec, [ds]),
                         tmp_path / "straight")
        assert [p.name for p in (tmp_path / "straight" / "checkpoints").iterdir()] == [
            "step-0000008.ckpt"]
        with pytest.raises(Crash):
            train(cfg, training_set(spec, [ds]), tmp_path / "stopped",
                  TrainHooks(on_log=crash_at(6)))
        assert sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir()) == [
            "step-0000002.ckpt", "step-0000004.ckpt"]
        last = tmp_path / "stopped" / "checkpoints" / "step-0000004.ckpt"
        state = torch.load(last, weights_only=True)
        del state["config"]["checkpoint_minutes"]  # as saved before the field existed
        torch.save(state, last)
        logged = []
        resumed = train(cfg, training_set(spec, [ds]), tmp_path / "stopped",
                        TrainHooks(on_log=lambda s, _: logged.append(s)))
    finally:
        torch.use_deterministic_algorithms(False)
    assert logged == [6, 8]
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for net in ("G", "D"):
        for name, tensor in a[net].items():
            torch.testing.assert_close(b[net][name], tensor, rtol=0, atol=0, msg=name)


def test_the_log_runs_beside_the_loop_and_is_complete_before_each_checkpoint(celeba_train,
                                                                            tmp_path):
    """on_log runs in a thread of its own: a slow one does not hold the loop back, yet every
    step up to a checkpoint is logged before the checkpoint is handed on, and in order."""
    import threading
    import time

    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=8, num_iters_decay=4, **SMALL | {"checkpoint_every": 4})
    events, threads = [], set()

    def on_log(step, metrics):
        time.sleep(0.2)
        threads.add(threading.current_thread().name)
        events.append(("log", step, sorted(metrics)))

    hooks = TrainHooks(on_log=on_log,
                       on_checkpoint=lambda _, step: events.append(("checkpoint", step)))
    train(cfg, training_set(spec, [ds]), tmp_path, hooks)
    assert threads == {"metrics-log"}
    assert [e[:2] for e in events] == [("log", 1), ("log", 2), ("log", 3), ("log", 4),
                                       ("checkpoint", 4), ("log", 5), ("log", 6), ("log", 7),
                                       ("log", 8), ("checkpoint", 8)]
    assert events[0][2] == sorted(["D/loss_real", "D/loss_fake", "D/loss_cls", "D/loss_gp",
                                   "lr/G", "lr/D", "images_per_second"])
    assert "G/loss_rec" in events[1][2]  # step 2 updates G


def test_the_cuda_arithmetic_is_what_the_config_asks(monkeypatch):
    """On CUDA (simulated: only torch's switches are set): fp32 without TF32, bf16 with it;
    cuDNN's fastest algorithms, or deterministic ones with a fixed cuBLAS workspace."""
    from stargan_core import train as training

    backends = torch.backends
    saved = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32,
             backends.cudnn.benchmark, backends.cudnn.deterministic)
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cuda = torch.device("cuda")
    try:
        training.math_settings(cuda, TrainConfig(mixed_precision=False))
        assert not backends.cuda.matmul.allow_tf32 and not backends.cudnn.allow_tf32
        assert backends.cudnn.benchmark and not backends.cudnn.deterministic
        assert not torch.are_deterministic_algorithms_enabled()
        training.math_settings(cuda, TrainConfig(deterministic=True))
        assert backends.cuda.matmul.allow_tf32 and backends.cudnn.allow_tf32
        assert not backends.cudnn.benchmark and backends.cudnn.deterministic
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert training.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
        (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32,
         backends.cudnn.benchmark, backends.cudnn.deterministic) = saved


def test_gpus_that_torch_cannot_use_are_said_loudly(monkeypatch, caplog):
    from stargan_core import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "nvidia_gpus", lambda: ("GPU 0: NVIDIA H100 80GB HBM3",))
    monkeypatch.setattr(devices, "_cuda_unusable_reason",
                        lambda: "The NVIDIA driver on your system is too old")
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert ("this machine has 1 NVIDIA GPU (GPU 0: NVIDIA H100 80GB HBM3) but this torch "
            "cannot use them") in caplog.text
    assert "driver on your system is too old" in caplog.text
    caplog.clear()
    assert devices.resolve_device("cpu") == torch.device("cpu")  # chosen: nothing to say
    monkeypatch.setattr(devices, "nvidia_gpus", lambda: ())
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert not caplog.text


def test_a_model_loads_its_weights_alone(celeba_train, tmp_path):
    """load_models reads G and D only: the optimisers' state (here made 400 MB) stays in the
    file, so loading for translation or evaluation costs the weights' memory, on any device."""
    from stargan_core.checkpoint import save_checkpoint

    spec, ds = celeba_train
    cfg = TrainConfig(num_iters=1, num_iters_decay=0, **SMALL)
    result = train(cfg, training_set(spec, [ds]), tmp_path)
    state = torch.load(result.checkpoint, weights_only=True)
    state["d_opt"]["state"][0]["exp_avg"] = torch.ones(100_000_000)
    save_checkpoint(tmp_path / "big.ckpt", state)
    del state
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident memory starts again

    def peak_mib() -> float:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024

    before = peak_mib()
    g, d, *_ = load_models(tmp_path / "big.ckpt", "cpu")
    assert peak_mib() - before < 100
    torch.testing.assert_close(g.state_dict(), load_models(result.checkpoint)[0].state_dict())
