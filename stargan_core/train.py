"""The StarGAN training loop: D every step, G every n_critic steps, linear LR decay, resume."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from stargan_core.checkpoint import (
    Networks,
    build_networks,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    restore,
    save_checkpoint,
    training_state,
)
from stargan_core.config import TrainConfig
from stargan_core.data.loading import TrainingData
from stargan_core.data.sampling import endless_batches
from stargan_core.devices import native_bf16, resolve_device
from stargan_core.distributed import ONE_PROCESS, World
from stargan_core.domains import DomainSpec
from stargan_core.grids import sample_grid, save_grid
from stargan_core.lease import OutputBusy, exclusive
from stargan_core.losses import (
    adversarial_loss,
    classification_loss,
    gradient_penalty,
    r1_penalty,
    reconstruction_loss,
)
from stargan_core.storage import Location
from stargan_core.targets import single_targets

log = logging.getLogger(__name__)

LOSS_NAMES = (
    "D/loss_real", "D/loss_fake", "D/loss_cls", "D/loss_gp", "G/loss_fake", "G/loss_rec",
    "G/loss_cls",
)


def math_settings(device: torch.device, config: TrainConfig) -> None:
    """The arithmetic training does on `device`, for this process (the bench uses the same):
    - `mixed_precision=false` is fp32 throughout: no TF32 in cuBLAS or cuDNN;
    - cuDNN picks its fastest algorithms for the fixed shapes of training (`benchmark`);
    - with `deterministic`, deterministic algorithms only (cuBLAS given a fixed workspace),
      so that a resumed run repeats an uninterrupted one bit for bit; where an operation has
      no deterministic kernel, torch warns and names it.
    On the CPU, training is deterministic in any case."""
    if device.type != "cuda":
        return
    fp32 = not (config.mixed_precision and native_bf16(device))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not fp32
    torch.backends.cudnn.benchmark = not config.deterministic
    torch.backends.cudnn.deterministic = config.deterministic
    if config.deterministic:
        # Read when cuBLAS first runs in this process; set by then, or the run warns.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier before update `step`: 1, then linear to 0 at `num_iters`.

    This is the decay the paper describes. The reference code subtracts `initial_lr /
    num_iters_decay` every 1,000 steps: linear too, but 1,000 times too slow, so that its rate
    ends at 99.9% of the initial one instead of 0.
    """
    if config.num_iters_decay == 0:
        return 1.0
    return min(1.0, (config.num_iters - step) / config.num_iters_decay)


@torch.no_grad()
def update_ema(nets: Networks, config: TrainConfig, g_updates: int) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G, with beta ramping up from 0 over the first G
    updates (StarGAN v2 uses a fixed 0.999; over a few thousand steps that lags far behind)."""
    beta = min(config.ema_beta, (1 + g_updates) / (10 + g_updates))
    torch._foreach_lerp_(list(nets.G_ema.parameters()), list(nets.G.parameters()), 1 - beta)


def set_learning_rates(nets: Networks, config: TrainConfig, step: int) -> None:
    for opt, base in ((nets.g_opt, config.g_lr), (nets.d_opt, config.d_lr)):
        for group in opt.param_groups:
            group["lr"] = base * lr_factor(step, config)


def signed_labels(c: torch.Tensor, spec: DomainSpec, label_set: int) -> torch.Tensor:
    """A projection critic's labels (batch, cls_dim): 2c - 1 on `label_set`'s span, so that
    an attribute's absence has a direction too, and 0 on the other label sets (unknown)."""
    out = torch.zeros(c.size(0), spec.cls_dim, device=c.device, dtype=c.dtype)
    span = spec.span(label_set)
    out[:, span] = 2 * c[:, span] - 1
    return out


@dataclass
class StepInputs:
    """What one training step works on: real images, their labels, and the step's random
    draws (target labels, interpolation weights of the gradient penalty)."""

    x_real: torch.Tensor
    c_org: torch.Tensor
    c_trg: torch.Tensor  # the labels of other images of the batch (reference code)
    alpha: torch.Tensor  # (batch,) in [0, 1)

    @staticmethod
    def draw(x_real: torch.Tensor, c_org: torch.Tensor, world: World = ONE_PROCESS) -> StepInputs:
        """This process's part of a global batch, with the step's random draws: horizontal
        flips, target labels and the penalty's weights. They are drawn for the global batch
        from the CPU generator, the same on every process, so that N processes compute what
        one process computes on the whole batch."""
        size, device = x_real.size(0) * world.size, x_real.device
        # Drawn in the order of the CPU generator, sent to the device in one copy that does
        # not wait (pinned memory; exact: the permutation's indices are below 2^24).
        draws = torch.stack([torch.rand(size), torch.randperm(size).float(), torch.rand(size)])
        if device.type == "cuda":
            draws = draws.pin_memory()
        flip_draw, order, alpha = draws.to(device, non_blocking=True)
        flip = world.part(flip_draw < 0.5)
        c_trg = world.part(world.gather(c_org)[order.long()])
        x_real = torch.where(flip[:, None, None, None], x_real.flip(-1), x_real)
        return StepInputs(x_real, c_org, c_trg, world.part(alpha))


@dataclass
class Passes:
    """The forward passes of a step that its losses share (`batched_passes`)."""

    x_fake: torch.Tensor  # G(x, c_trg); with G's graph in a G-update step
    x_same: torch.Tensor | None  # G(x, c_org), the identity (G-update steps with lambda_id)
    m_fake: torch.Tensor | None  # x_fake's mask (G-update steps, g_output="masked")
    src_real: torch.Tensor  # D(x): realism scores
    cls_real: torch.Tensor  # D(x): domain logits
    src_fake: torch.Tensor  # D(x_fake) before D's update: realism scores
    s_org: torch.Tensor | None  # a projection critic's labels: x's own, x_fake's target
    s_trg: torch.Tensor | None


def batched_passes(nets: Networks, inputs: StepInputs, spec: DomainSpec, label_set: int,
                   config: TrainConfig, update_g: bool) -> Passes:
    """G once on [x; x] for the translation G(x, c_trg) and the identity G(x, c_org), D once
    on [x; x_fake]: fewer, larger passes compute the same numbers, as neither network mixes
    the images of a batch (D has no normalisation, G normalises per image).

    In a G-update step the translation keeps its graph, which serves the G update too (G's
    weights do not change in between); otherwise it is made without one, and alone."""
    G, D = nets.parallel or (nets.G, nets.D)
    x, c_org, c_trg = inputs.x_real, inputs.c_org, inputs.c_trg
    n = x.size(0)
    x_same = m_fake = None
    if update_g:
        k = 2 if config.lambda_id else 1
        out, masks = G(torch.cat([x] * k), torch.cat([c_trg, c_org][:k]),
                       torch.cat([c_org] * k), with_mask=True)
        x_fake = out[:n]
        if config.lambda_id:
            x_same = out[n:]
        if masks is not None:
            m_fake = masks[:n]
    else:
        with torch.no_grad():
            x_fake = nets.G(x, c_trg, c_org)
    s_org, s_trg = (signed_labels(c, spec, label_set) if config.d_projection else None
                    for c in (c_org, c_trg))
    src, cls = D(torch.cat([x, x_fake.detach().to(x.dtype)]),
                 None if s_org is None else torch.cat([s_org, s_trg]))
    return Passes(x_fake, x_same, m_fake, src[:n], cls[:n], src[n:], s_org, s_trg)


def d_losses(D: torch.nn.Module, passes: Passes, inputs: StepInputs, spec: DomainSpec,
             label_set: int, config: TrainConfig
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's objective (Choi et al. 2018, Sec. 3.1), the total and its terms: judge real images
    real and G's fake, classify the real image's domain, and the penalty on D's gradient
    (WGAN-GP at interpolates, or R1 at the real images with the non-saturating loss)."""
    x_real = inputs.x_real
    loss_real = adversarial_loss(passes.src_real, real=True, kind=config.gan_loss)
    loss_fake = adversarial_loss(passes.src_fake, real=False, kind=config.gan_loss)
    if config.gan_loss == "wgan-gp":
        x_fake = passes.x_fake.detach().to(x_real.dtype)  # D's loss does not reach G
        loss_gp = gradient_penalty(D, x_real, x_fake, inputs.alpha, passes.s_org)
    else:
        loss_gp = r1_penalty(D, x_real, passes.s_org)
    loss_cls = classification_loss(passes.cls_real, inputs.c_org, spec, label_set)
    total = loss_real + loss_fake + config.lambda_cls * loss_cls + config.lambda_gp * loss_gp
    return total, {"D/loss_real": loss_real, "D/loss_fake": loss_fake, "D/loss_cls": loss_cls,
                   "D/loss_gp": loss_gp}


def g_losses(G: torch.nn.Module, D: torch.nn.Module, passes: Passes, inputs: StepInputs,
             spec: DomainSpec, label_set: int, config: TrainConfig
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G's objective (Choi et al. 2018, Sec. 3.1), the total and its terms: have D judge the
    translation real and classify it as the target domain, and give the input back when
    translated to its own domain; with the editing options, make no change when none is
    asked for (identity) and edit as little of the image as the target needs (mask).
    `passes` from a G-update step; `D` frozen by the caller."""
    x_real, c_org, c_trg = inputs.x_real, inputs.c_org, inputs.c_trg
    src_fake, cls_fake = D(passes.x_fake, passes.s_trg)
    loss_fake = adversarial_loss(src_fake, real=True, kind=config.gan_loss)
    loss_cls = classification_loss(cls_fake, c_trg, spec, label_set)
    x_rec, m_rec = G(passes.x_fake, c_org, c_trg, with_mask=True)
    loss_rec = reconstruction_loss(x_real, x_rec.float())
    total = loss_fake + config.lambda_rec * loss_rec + config.lambda_cls * loss_cls
    terms = {"G/loss_fake": loss_fake, "G/loss_rec": loss_rec, "G/loss_cls": loss_cls}
    if config.lambda_id:
        terms["G/loss_id"] = reconstruction_loss(x_real, passes.x_same.float())
        total = total + config.lambda_id * terms["G/loss_id"]
    if config.lambda_mask:
        terms["G/loss_mask"] = (passes.m_fake.float().mean() + m_rec.float().mean()) / 2
        total = total + config.lambda_mask * terms["G/loss_mask"]
    return total, terms


def training_step(
    nets: Networks,
    inputs: StepInputs,
    label_set: int,
    spec: DomainSpec,
    config: TrainConfig,
    update_g: bool,
    autocast: torch.autocast,
) -> dict[str, torch.Tensor]:
    """One D update and, when `update_g`, one G update; the losses by name. Under data
    parallelism the updates go through `nets.parallel`, which averages the gradients over the
    processes."""
    G, D = nets.parallel or (nets.G, nets.D)
    with autocast:
        passes = batched_passes(nets, inputs, spec, label_set, config, update_g)
        d_loss, losses = d_losses(D, passes, inputs, spec, label_set, config)
    nets.d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    nets.d_opt.step()

    if update_g:
        # D's weights are constants here: the plain module, outside the gradient averaging.
        nets.D.requires_grad_(False)
        with autocast:
            g_loss, g_terms = g_losses(G, nets.D, passes, inputs, spec, label_set, config)
        nets.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        nets.g_opt.step()
        nets.D.requires_grad_(True)
        losses |= g_terms
    return {k: v.detach() for k, v in losses.items()}


class MetricsLog:
    """`on_log` in a thread of its own, so that the training loop never waits for it: the loop
    hands over the step's mean losses still on the device (copied to the host without
    waiting) and goes on; the thread waits for the copy and calls `on_log` (an MLflow
    request, a progress bar). Steps are logged in order; `flush` waits for the ones handed
    over, and an error of `on_log` is raised in the loop at the next hand-over or flush."""

    def __init__(self, on_log: Callable[[int, dict[str, float]], None] | None) -> None:
        self.on_log = on_log
        self.pending: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="metrics-log")
        if on_log is not None:
            self.thread.start()

    def put(self, step: int, names: list[str], means: torch.Tensor, extra: dict[str, float]
            ) -> None:
        """Log `names` (their values `means`, a tensor) and `extra` at `step`."""
        self._raise()
        if self.on_log is None:
            return
        ready = None
        if means.is_cuda:
            host = torch.empty(means.shape, pin_memory=True)
            host.copy_(means, non_blocking=True)
            ready, means = torch.cuda.Event(), host
            ready.record()
        self.pending.put((step, names, means, ready, extra))

    def flush(self) -> None:
        if self.on_log is not None:
            self.pending.join()
        self._raise()

    def close(self) -> None:
        """Flush, and end the thread."""
        self.flush()
        self.stop()

    def stop(self) -> None:
        """End the thread after what it was handed (an error of `on_log` is dropped)."""
        if self.thread.is_alive():
            self.pending.put(None)
            self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (item := self.pending.get()) is not None:
            step, names, means, ready, extra = item
            try:
                if ready is not None:
                    ready.synchronize()
                if self.error is None:  # after an error, nothing more is logged
                    self.on_log(step, dict(zip(names, means.tolist(), strict=True)) | extra)
            except BaseException as error:  # noqa: BLE001 - raised in the training loop
                self.error = error
            finally:
                self.pending.task_done()
        self.pending.task_done()


@dataclass
class TrainResult:
    checkpoint: Path
    step: int
    seconds: float
    images_per_second: float


@dataclass
class TrainHooks:
    """How a tracker follows a run: metrics per logging step, each sample grid and each
    checkpoint file, with its step. `on_log` runs in a thread of its own, which the loop does
    not wait for (`MetricsLog`), but before each checkpoint."""

    on_log: Callable[[int, dict[str, float]], None] | None = None
    on_sample: Callable[[Path, int], None] | None = None
    on_checkpoint: Callable[[Path, int], None] | None = None


def train(
    config: TrainConfig,
    data: TrainingData,
    out_dir: str | Path,
    hooks: TrainHooks | None = None,
    *,
    device: str = "auto",
    resume: bool = True,
) -> TrainResult:
    """Train G and D on `data` (a data set per label set of its spec; two for joint training).

    Checkpoints go to `out_dir/checkpoints` every `checkpoint_every` steps and every
    `checkpoint_minutes` of training, each with the data's `Preprocessing`; sample grids of the
    data's sample images x every single target to `out_dir/samples`. With `resume`, training
    continues from the last checkpoint; without, the folder's old checkpoints are deleted
    first. A folder another training still writes into is refused (OutputBusy; `lease`).
    """
    spec, datasets, sample_images = data.spec, data.datasets, data.sample_images
    if len(datasets) != len(spec.label_sets):
        raise ValueError(
            f"spec has {len(spec.label_sets)} label sets, got {len(datasets)} data sets"
        )
    hooks = hooks or TrainHooks()
    on_log, on_sample, on_checkpoint = hooks.on_log, hooks.on_sample, hooks.on_checkpoint
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    # Under torchrun, one of several processes: each its own part of every batch, the
    # gradients averaged; one process logs, samples and writes checkpoints.
    with World.join(dev) as world, contextlib.ExitStack() as held:
        dev = world.device(dev)
        math_settings(dev, config)
        if not world.is_main:
            on_log = on_sample = on_checkpoint = None
        # One training writes into a run folder: process 0 holds it, and every process learns
        # whether it could.
        refused = None
        if world.is_main:
            try:
                held.enter_context(exclusive(
                    Location.of(str(out_dir)), f"training {config.num_iters} steps",
                    "train into another folder (--out)"))
            except OutputBusy as error:
                refused = str(error)
        refused = world.share(refused)
        if refused:
            raise OutputBusy(refused)
        ckpt_dir = out_dir / "checkpoints"
        world.local_batch(config.batch_size)  # splits evenly, or says what would
        torch.manual_seed(config.seed)
        nets = build_networks(spec, config, dev)
        if not resume and world.is_main:  # start over: old checkpoints must not pass for "latest"
            for old in ckpt_dir.glob("step-*.ckpt"):
                old.unlink()
        world.barrier()
        last = latest_checkpoint(ckpt_dir)
        found = last.name if last else None
        if world.share(found) != found:
            raise RuntimeError(
                f"training process {world.rank} finds checkpoint {found} in {ckpt_dir}, process 0 "
                "another: every process must see the same run folder (on several machines, a "
                "shared volume)")
        start = restore(nets, load_checkpoint(last), spec, config, dev) if last else 0
        if data.preprocessing.image_size != config.image_size:  # (a resumed run: said above)
            raise ValueError(f"the data's images are made for {data.preprocessing.image_size} "
                             f"px, the model's are {config.image_size} px")
        if world.parallel:  # every process restored the same state; DDP checks the shapes
            ids = [dev.index] if dev.type == "cuda" else None
            nets.parallel = (DistributedDataParallel(nets.G, device_ids=ids),
                             DistributedDataParallel(nets.D, device_ids=ids))

        preprocessing = data.preprocessing.to_dict()

        def save(step: int) -> Path:
            state = training_state(nets, step, spec, config, dev) | {"preprocessing": preprocessing}
            return save_checkpoint(checkpoint_path(ckpt_dir, step), state)

        loaders = [endless_batches(ds, config, config.seed + i, start, dev.type == "cuda", world)
                   for i, ds in enumerate(datasets)]
        autocast = torch.autocast(
            dev.type, dtype=torch.bfloat16, enabled=config.mixed_precision and native_bf16(dev)
        )
        grid_columns = ["input", *(t.text for t in single_targets(spec))]

        def sample(step: int) -> None:
            grid = sample_grid(nets.inference_G, spec, sample_images.to(dev),
                               data.sample_labels.to(dev))
            path = save_grid(grid, grid_columns, out_dir / "samples" / f"step-{step:07d}.png")
            if on_sample:
                on_sample(path, step)
        nets.G.train()
        nets.D.train()
        t0, images = time.perf_counter(), 0
        window: dict[str, list[torch.Tensor]] = {}
        period = 60 * config.checkpoint_minutes or math.inf
        due = time.monotonic() + period
        metrics_log = MetricsLog(on_log)
        held.callback(metrics_log.stop)
        for step in range(start, config.num_iters):
            set_learning_rates(nets, config, step)
            update_g = (step + 1) % config.n_critic == 0
            # Joint training visits every data set each step, with its part of the mask vector.
            for label_set, batches in enumerate(loaders):
                x_real, labels = next(batches)
                inputs = StepInputs.draw(x_real.to(dev, non_blocking=True),
                                         labels.to(dev, non_blocking=True), world)
                losses = training_step(nets, inputs, label_set, spec, config, update_g, autocast)
                if update_g and nets.G_ema is not None:
                    update_ema(nets, config, (step + 1) // config.n_critic)
                images += x_real.size(0) * world.size
                for k, v in losses.items():
                    window.setdefault(k, []).append(v)
            done = step + 1
            by_time = False
            if done % config.log_every == 0 or done == config.num_iters:
                # The losses stay on the device: their means over the window and over the
                # processes go to the host and the log without the loop waiting (MetricsLog).
                names = sorted(window)
                means = world.mean(torch.stack([torch.stack(window[k]).mean() for k in names]))
                metrics_log.put(done, names, means, {
                    "lr/G": nets.g_opt.param_groups[0]["lr"],
                    "lr/D": nets.d_opt.param_groups[0]["lr"],
                    "images_per_second": images / (time.perf_counter() - t0)})
                window.clear()
                # A checkpoint by time too, so that a run killed before `checkpoint_every` can
                # resume: process 0's clock decides for all, at logging steps only.
                by_time = world.share(world.is_main and time.monotonic() >= due)
            # One process samples and writes checkpoints; the others wait for it at a barrier
            # (not in the next step's collectives, which time out sooner).
            alone = False
            if sample_images is not None and (done % config.sample_every == 0
                                              or done == config.num_iters):
                alone = True
                if world.is_main:
                    sample(done)
            if done % config.checkpoint_every == 0 or done == config.num_iters or by_time:
                alone = True
                metrics_log.flush()  # the run's metrics reach the checkpoint's step first
                if done == config.num_iters:
                    set_learning_rates(nets, config, done)  # 0: the decay has run its course
                last = save(done) if world.is_main else checkpoint_path(ckpt_dir, done)
                if on_checkpoint:
                    on_checkpoint(last, done)
                due = time.monotonic() + period
            if alone:
                world.barrier()
        metrics_log.close()
        final = out_dir / "samples" / f"step-{config.num_iters:07d}.png"
        if world.is_main and sample_images is not None and not final.is_file():  # resumed there
            sample(config.num_iters)
        seconds = time.perf_counter() - t0
        return TrainResult(last, config.num_iters, seconds, images / max(seconds, 1e-9))
