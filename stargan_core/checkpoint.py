"""Checkpoints: both networks, both optimisers, the schedule position and the RNG state."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from stargan_core.config import TrainConfig
from stargan_core.domains import DomainSpec
from stargan_core.model import Discriminator, Generator
from stargan_core.preprocessing import Preprocessing


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"step-{step:07d}.ckpt"


def checkpoint_step(name: str) -> int:
    """The step of a checkpoint file name `step-0001000.ckpt` (any path prefix)."""
    return int(name.rsplit("/", 1)[-1].removeprefix("step-").removesuffix(".ckpt"))


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint of the highest step in `folder`, if any (by number: past 10^7 steps the
    names gain a digit)."""
    found = list(Path(folder).glob("step-*.ckpt")) if Path(folder).is_dir() else []
    return max(found, key=lambda p: checkpoint_step(p.name)) if found else None


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write atomically: a crash while saving never leaves a truncated 'latest' checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


class CheckpointError(ValueError):
    """A file that is not a checkpoint of this project."""


CHECKPOINT_KEYS = ("G", "D", "spec", "config")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load with `weights_only=True`: tensors and plain data only, never arbitrary objects.
    Anything else than a checkpoint written by training is a CheckpointError saying so."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    hint = ("give a checkpoint written by `stargan train` (a run folder, or one of its "
            "checkpoints/step-*.ckpt files)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except OSError:
        raise
    except Exception:  # torch's unpickler fails in many ways, and advises unsafe loading
        raise CheckpointError(f"{path} is not a checkpoint (it cannot be read as one): "
                              f"{hint}") from None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise CheckpointError(f"{path} is a torch file but not a StarGAN checkpoint (it lacks "
                              f"{', '.join(CHECKPOINT_KEYS)}): {hint}")
    return state


def spec_and_config(state: dict) -> tuple[DomainSpec, TrainConfig]:
    return DomainSpec.from_json(state["spec"]), TrainConfig(**state["config"])


def build_generator(spec: DomainSpec, config: TrainConfig) -> Generator:
    return Generator(spec.c_dim, config.g_conv_dim, config.g_repeat_num, config.g_output,
                     config.g_conditioning)


def build_discriminator(spec: DomainSpec, config: TrainConfig) -> Discriminator:
    return Discriminator(config.image_size, spec.cls_dim, config.d_conv_dim, config.d_repeat_num)


def inference_weights(state: dict) -> dict:
    """The generator that translates: G's moving average when the run kept one, else G."""
    return state.get("G_ema", state["G"])


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or the latest checkpoint of a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    for folder in (path / "checkpoints", path):
        found = latest_checkpoint(folder)
        if found is not None:
            return found
    raise FileNotFoundError(f"no checkpoint at {path}: give a .ckpt file or a run folder")


def load_models(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Generator, Discriminator, DomainSpec, TrainConfig, Preprocessing]:
    """G and D in eval mode, with the spec, config and preprocessing they were trained with."""
    state = load_checkpoint(path, device)
    spec, config = spec_and_config(state)
    g, d = build_generator(spec, config), build_discriminator(spec, config)
    g.load_state_dict(inference_weights(state))
    d.load_state_dict(state["D"])
    return g.to(device).eval(), d.to(device).eval(), spec, config, preprocessing_of(state)


def preprocessing_of(state: dict) -> Preprocessing:
    """The preprocessing a checkpoint was trained with (older ones name a data format)."""
    saved = state.get("preprocessing") or {"data_format": state["data_format"]}
    return Preprocessing.from_dict({"image_size": state["config"]["image_size"], **saved})
