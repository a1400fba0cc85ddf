"""The StarGAN training loop: D every step, G every n_critic steps, linear LR decay, resume."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

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
from stargan_core.data.sampling import endless_batches
from stargan_core.domains import DomainSpec
from stargan_core.losses import classification_loss, gradient_penalty, reconstruction_loss
from stargan_core.preprocessing import Preprocessing
from stargan_core.targets import single_targets
from stargan_core.translate import sample_grid, save_grid

LOSS_NAMES = (
    "D/loss_real", "D/loss_fake", "D/loss_cls", "D/loss_gp", "G/loss_fake", "G/loss_rec",
    "G/loss_cls",
)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier before update `step`: 1, then linear to 0 at `num_iters`.

    The reference subtracts a fraction of the *current* rate every 1,000 steps, which decays
    geometrically and never reaches zero; this is the linear decay the paper describes.
    """
    if config.num_iters_decay == 0:
        return 1.0
    return min(1.0, (config.num_iters - step) / config.num_iters_decay)


@torch.no_grad()
def update_ema(nets: Networks, config: TrainConfig, g_updates: int) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G, with beta ramping up from 0 over the first G
    updates (StarGAN v2 uses a fixed 0.999; over a few thousand steps that lags far behind)."""
    beta = min(config.ema_beta, (1 + g_updates) / (10 + g_updates))
    for average, current in zip(nets.G_ema.parameters(), nets.G.parameters(), strict=True):
        average.lerp_(current, 1 - beta)


def set_learning_rates(nets: Networks, config: TrainConfig, step: int) -> None:
    for opt, base in ((nets.g_opt, config.g_lr), (nets.d_opt, config.d_lr)):
        for group in opt.param_groups:
            group["lr"] = base * lr_factor(step, config)


def training_step(
    nets: Networks,
    x_real: torch.Tensor,
    c_org: torch.Tensor,
    label_set: int,
    spec: DomainSpec,
    config: TrainConfig,
    update_g: bool,
    autocast: torch.autocast,
) -> dict[str, torch.Tensor]:
    """One D update and, when `update_g`, one G update, with the paper's losses side by side
    (and the terms of the editing options: identity and mask)."""
    G, D = nets.G, nets.D
    # Random target labels: the labels of other images of the batch (reference code).
    c_trg = c_org[torch.randperm(c_org.size(0), device=c_org.device)]

    # Discriminator: real/fake (WGAN-GP) + classify the real image's domain.
    with autocast:
        out_src, out_cls = D(x_real)
        d_loss_real = -out_src.float().mean()
        d_loss_cls = classification_loss(out_cls, c_org, spec, label_set)
        with torch.no_grad():
            x_fake = G(x_real, c_trg, c_org)
        out_src, _ = D(x_fake)
        d_loss_fake = out_src.float().mean()
        d_loss_gp = gradient_penalty(D, x_real, x_fake.to(x_real.dtype))
        d_loss = (d_loss_real + d_loss_fake + config.lambda_cls * d_loss_cls
                  + config.lambda_gp * d_loss_gp)
    nets.d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    nets.d_opt.step()
    losses = {"D/loss_real": d_loss_real, "D/loss_fake": d_loss_fake, "D/loss_cls": d_loss_cls,
              "D/loss_gp": d_loss_gp}

    if update_g:
        # Generator: fool D, be classified as the target domain, and reconstruct the input.
        D.requires_grad_(False)
        with autocast:
            x_fake, m_fake = G.forward_with_mask(x_real, c_trg, c_org)
            out_src, out_cls = D(x_fake)
            g_loss_fake = -out_src.float().mean()
            g_loss_cls = classification_loss(out_cls, c_trg, spec, label_set)
            x_rec, m_rec = G.forward_with_mask(x_fake, c_org, c_trg)
            g_loss_rec = reconstruction_loss(x_real, x_rec.float())
            g_loss = (g_loss_fake + config.lambda_rec * g_loss_rec
                      + config.lambda_cls * g_loss_cls)
            extra = {}
            if config.lambda_id:  # no change asked for: none made
                extra["G/loss_id"] = reconstruction_loss(x_real, G(x_real, c_org, c_org).float())
                g_loss = g_loss + config.lambda_id * extra["G/loss_id"]
            if config.lambda_mask:  # attend to as little of the image as the target needs
                extra["G/loss_mask"] = (m_fake.float().mean() + m_rec.float().mean()) / 2
                g_loss = g_loss + config.lambda_mask * extra["G/loss_mask"]
        nets.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        nets.g_opt.step()
        D.requires_grad_(True)
        losses |= {"G/loss_fake": g_loss_fake, "G/loss_rec": g_loss_rec, "G/loss_cls": g_loss_cls,
                   **extra}
    return {k: v.detach() for k, v in losses.items()}


@dataclass
class TrainResult:
    checkpoint: Path
    step: int
    seconds: float
    images_per_second: float


def train(
    config: TrainConfig,
    spec: DomainSpec,
    datasets: Sequence[Dataset],
    out_dir: str | Path,
    *,
    sample_images: torch.Tensor | None = None,
    sample_labels: torch.Tensor | None = None,
    device: str = "auto",
    resume: bool = True,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    on_sample: Callable[[Path, int], None] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    data_format: str = "imagefolder",
) -> TrainResult:
    """Train G and D on `datasets` (one per label set of `spec`; two for joint training).

    Checkpoints go to `out_dir/checkpoints`, sample grids of `sample_images` x every single
    target to `out_dir/samples`. With `resume`, training continues from the last checkpoint;
    without, the folder's old checkpoints are deleted first.
    `data_format` (the data's layout) sets the `Preprocessing` saved with every checkpoint,
    which every later use of the model repeats.
    `on_log`, `on_sample` and `on_checkpoint` let a tracker follow the run (metrics per logging
    step, each sample grid and each checkpoint file, with its step).
    """
    if len(datasets) != len(spec.label_sets):
        raise ValueError(
            f"spec has {len(spec.label_sets)} label sets, got {len(datasets)} data sets"
        )
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    torch.manual_seed(config.seed)
    nets = build_networks(spec, config, dev)
    if not resume:  # start over: an old run's later checkpoints must not pass for "latest"
        for old in ckpt_dir.glob("step-*.ckpt"):
            old.unlink()
    last = latest_checkpoint(ckpt_dir)
    start = restore(nets, load_checkpoint(last, dev), spec, config, dev) if last else 0

    preprocessing = Preprocessing.of(data_format, config.image_size).to_dict()

    def save(step: int) -> Path:
        state = training_state(nets, step, spec, config, dev) | {"preprocessing": preprocessing}
        return save_checkpoint(checkpoint_path(ckpt_dir, step), state)

    loaders = [endless_batches(ds, config, config.seed + i, start, pin_memory=dev.type == "cuda")
               for i, ds in enumerate(datasets)]
    autocast = torch.autocast(
        dev.type, dtype=torch.bfloat16, enabled=config.mixed_precision and dev.type == "cuda"
    )
    grid_columns = ["input", *(t.text for t in single_targets(spec))]
    nets.G.train()
    nets.D.train()
    t0, images = time.perf_counter(), 0
    window: dict[str, list[torch.Tensor]] = {}
    for step in range(start, config.num_iters):
        set_learning_rates(nets, config, step)
        update_g = (step + 1) % config.n_critic == 0
        # Joint training visits every data set each step, with its part of the mask vector.
        for label_set, batches in enumerate(loaders):
            x_real, labels = next(batches)
            x_real = x_real.to(dev, non_blocking=True)
            labels = labels.to(dev, non_blocking=True)
            flip = torch.rand(x_real.size(0)) < 0.5  # horizontal flip augmentation
            x_real = torch.where(flip.to(dev)[:, None, None, None], x_real.flip(-1), x_real)
            losses = training_step(nets, x_real, labels, label_set, spec, config, update_g,
                                   autocast)
            if update_g and nets.G_ema is not None:
                update_ema(nets, config, (step + 1) // config.n_critic)
            images += x_real.size(0)
            for k, v in losses.items():
                window.setdefault(k, []).append(v)
        done = step + 1
        if on_log and (done % config.log_every == 0 or done == config.num_iters):
            # One host sync per logging step, not one per loss and step.
            metrics = {k: torch.stack(v).mean().item() for k, v in window.items()}
            metrics |= {"lr/G": nets.g_opt.param_groups[0]["lr"],
                        "lr/D": nets.d_opt.param_groups[0]["lr"],
                        "images_per_second": images / (time.perf_counter() - t0)}
            on_log(done, metrics)
            window.clear()
        if sample_images is not None and (done % config.sample_every == 0
                                          or done == config.num_iters):
            grid = sample_grid(nets.inference_G, spec, sample_images.to(dev), sample_labels.to(dev))
            path = save_grid(grid, grid_columns, out_dir / "samples" / f"step-{done:07d}.png")
            if on_sample:
                on_sample(path, done)
        if done % config.checkpoint_every == 0 or done == config.num_iters:
            if done == config.num_iters:
                set_learning_rates(nets, config, done)  # 0: the decay has run its course
            last = save(done)
            if on_checkpoint:
                on_checkpoint(last, done)
    final = out_dir / "samples" / f"step-{config.num_iters:07d}.png"
    if sample_images is not None and not final.is_file():  # resumed after the last step
        grid = sample_grid(nets.inference_G, spec, sample_images.to(dev), sample_labels.to(dev))
        save_grid(grid, grid_columns, final)
        if on_sample:
            on_sample(final, config.num_iters)
    seconds = time.perf_counter() - t0
    return TrainResult(last, config.num_iters, seconds, images / max(seconds, 1e-9))
