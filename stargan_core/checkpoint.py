"""Checkpoints: both networks (and G's moving average), both optimisers, the schedule position
and the RNG state; written during training, restored to resume it, loaded to translate."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

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


def load_checkpoint(path: str | Path) -> dict:
    """Load with `weights_only=True`: tensors and plain data only, never arbitrary objects.
    Anything else than a checkpoint written by training is a CheckpointError saying so.
    The tensors stay in the file (memory-mapped, on the CPU) until used: whoever uses a part
    moves that part where it computes (`load_models`: the weights alone, not Adam's state)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    hint = ("give a checkpoint written by `stargan train` (a run folder, or one of its "
            "checkpoints/step-*.ckpt files)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
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
                     config.g_conditioning, config.g_upsampling)


def build_discriminator(spec: DomainSpec, config: TrainConfig) -> Discriminator:
    return Discriminator(config.image_size, spec.cls_dim, config.d_conv_dim, config.d_repeat_num,
                         config.d_projection)


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
    """G and D in eval mode on `device`, with the spec, config and preprocessing they were
    trained with."""
    state = load_checkpoint(path)
    spec, config = spec_and_config(state)
    g, d = build_generator(spec, config), build_discriminator(spec, config)
    g.load_state_dict(inference_weights(state))
    d.load_state_dict(state["D"])
    return g.to(device).eval(), d.to(device).eval(), spec, config, preprocessing_of(state)


def preprocessing_of(state: dict) -> Preprocessing:
    """The preprocessing a checkpoint was trained with (older ones name a data format)."""
    saved = state.get("preprocessing") or {"data_format": state["data_format"]}
    return Preprocessing.from_dict({"image_size": state["config"]["image_size"], **saved})


@dataclass
class Networks:
    G: Generator
    D: Discriminator
    g_opt: torch.optim.Adam
    d_opt: torch.optim.Adam
    G_ema: Generator | None = None  # the moving average of G, when the config keeps one
    # G and D under DistributedDataParallel, when several processes train together.
    parallel: tuple[nn.Module, nn.Module] | None = None

    @property
    def inference_G(self) -> Generator:
        """The generator that translations use: the average when there is one."""
        return self.G_ema if self.G_ema is not None else self.G


def build_networks(spec: DomainSpec, config: TrainConfig, device: torch.device) -> Networks:
    g = build_generator(spec, config).to(device)
    d = build_discriminator(spec, config).to(device)
    betas = (config.beta1, config.beta2)
    ema = copy.deepcopy(g).requires_grad_(False) if config.ema_beta else None
    # The fused implementation: one kernel per update for all parameters, the same maths.
    return Networks(
        g, d, torch.optim.Adam(g.parameters(), config.g_lr, betas, fused=True),
        torch.optim.Adam(d.parameters(), config.d_lr, betas, fused=True), ema,
    )


ARCHITECTURE = ("image_size", "g_conv_dim", "d_conv_dim", "g_repeat_num", "d_repeat_num",
                "g_output", "g_conditioning", "g_upsampling", "d_projection")


def training_state(
    nets: Networks, step: int, spec: DomainSpec, config: TrainConfig, device: torch.device
) -> dict:
    """Everything a resumed run needs, as plain data that loads with `weights_only=True`."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    state = {
        "step": step, "G": nets.G.state_dict(), "D": nets.D.state_dict(),
        "g_opt": nets.g_opt.state_dict(), "d_opt": nets.d_opt.state_dict(), "rng": rng,
        "config": config.to_dict(), "spec": spec.to_json(),
    }
    if nets.G_ema is not None:
        state["G_ema"] = nets.G_ema.state_dict()
    return state


def restore(
    nets: Networks, state: dict, spec: DomainSpec, config: TrainConfig, device: torch.device
) -> int:
    """Load a training state into `nets` and the RNG; returns the step to continue from."""
    saved = state["config"]
    paper = TrainConfig()  # checkpoints from before an option existed had the paper's value
    changed = [f"{k}={saved.get(k, getattr(paper, k))} (now {getattr(config, k)})"
               for k in ARCHITECTURE if saved.get(k, getattr(paper, k)) != getattr(config, k)]
    if changed or state["spec"] != spec.to_json():
        old_domains = DomainSpec.from_json(state["spec"]).domains
        what = ", ".join(changed) if changed else f"other domains {old_domains}"
        raise ValueError(
            f"the run folder's checkpoint was trained with {what}: use a new run folder, or "
            "start over with resume off (--no-resume)"
        )
    nets.G.load_state_dict(state["G"])
    nets.D.load_state_dict(state["D"])
    if nets.G_ema is not None:  # a run that starts averaging late starts from G itself
        nets.G_ema.load_state_dict(state.get("G_ema", state["G"]))
    nets.g_opt.load_state_dict(state["g_opt"])
    nets.d_opt.load_state_dict(state["d_opt"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), device)
    return state["step"]
