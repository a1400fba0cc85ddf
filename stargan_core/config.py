"""Training configuration: one typed object with the paper's defaults, and named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from stargan_core.model import CONDITIONINGS, OUTPUTS


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and schedule of one training run (defaults: the paper's CelebA 128)."""

    image_size: int = 128
    g_conv_dim: int = 64
    d_conv_dim: int = 64
    g_repeat_num: int = 6
    d_repeat_num: int = 6
    batch_size: int = 16
    num_iters: int = 200_000
    num_iters_decay: int = 100_000
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 5
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    # Options for faithful edits (all off in the paper's setting; see model.Generator):
    g_output: str = "tanh"  # tanh (the paper) | masked: m * C + (1 - m) * x
    g_conditioning: str = "target"  # target (the paper) | difference: c_trg - c_org
    lambda_id: float = 0.0  # identity: L1(G(x, c_org), x), no edit asked, none made
    lambda_mask: float = 0.0  # L1 of the attention mask: edit no more than the target needs
    ema_beta: float = 0.0  # exponential moving average of G for inference (0: none)
    seed: int = 0
    log_every: int = 10
    sample_every: int = 1000
    checkpoint_every: int = 10_000
    num_workers: int = 2
    mixed_precision: bool = True  # bf16 autocast; only on CUDA

    def __post_init__(self) -> None:
        if not 0 <= self.num_iters_decay <= self.num_iters:
            raise ValueError(
                f"num_iters_decay ({self.num_iters_decay}) must lie in [0, num_iters "
                f"({self.num_iters})]"
            )
        for name in ("batch_size", "num_iters", "n_critic", "log_every", "sample_every",
                     "checkpoint_every", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

        if self.g_output not in OUTPUTS:
            raise ValueError(f"g_output must be one of {', '.join(OUTPUTS)}, got {self.g_output}")
        if self.g_conditioning not in CONDITIONINGS:
            raise ValueError(f"g_conditioning must be one of {', '.join(CONDITIONINGS)}, got "
                             f"{self.g_conditioning}")
        if self.lambda_mask and self.g_output != "masked":
            raise ValueError("lambda_mask needs g_output='masked'")
        if not 0 <= self.ema_beta < 1:
            raise ValueError(f"ema_beta must lie in [0, 1), got {self.ema_beta}")

    def replace(self, **overrides: object) -> TrainConfig:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown training option {unknown} (known: {known})")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


# The options that make edits faithful (all off in the paper's setting).
EDITING_OPTIONS = ("g_output", "g_conditioning", "lambda_id", "lambda_mask", "ema_beta")

PRESETS: dict[str, TrainConfig] = {
    # Choi et al. 2018, Sec. 4 and the reference code: 200k iterations, decay over the last 100k.
    "paper-128": TrainConfig(),
    # Learns the synthetic CelebA set on 2 CPU cores in about 5 minutes. The paper's losses and
    # n_critic, smaller networks at 32 px, and a 4x faster D (two time-scale update rule,
    # Heusel et al. 2017): with the paper's equal rates, this short a run leaves D's domain
    # classifier behind and G collapses to noise.
    "tiny": TrainConfig(
        image_size=32,
        g_conv_dim=32,
        d_conv_dim=32,
        g_repeat_num=3,
        d_repeat_num=5,
        batch_size=16,
        num_iters=2000,
        num_iters_decay=1000,
        g_lr=1e-4,
        d_lr=4e-4,
        log_every=10,
        sample_every=250,
        checkpoint_every=250,
        num_workers=0,
    ),
}
# Faithful edits with the same networks (model.Generator; chosen by bench/quality.py against
# the ground truth): a masked output and label differences keep what the target leaves alone;
# the identity term keeps G(x, c_org) = x; the mask term keeps edits small; the average of G,
# warmed up, translates without the last steps' noise.
_EDITING = dict(g_output="masked", g_conditioning="difference", lambda_id=5.0, lambda_mask=0.02,
                ema_beta=0.999)
PRESETS["edit-128"] = PRESETS["paper-128"].replace(**_EDITING)
# On 2 CPU cores in about 12 minutes. G every second step, not every fifth: 2.5x the G updates
# in the same time, which gender edits (growing or removing long hair) need.
PRESETS["edit-32"] = PRESETS["tiny"].replace(
    **_EDITING, n_critic=2, num_iters=3600, num_iters_decay=1800, sample_every=300,
    checkpoint_every=900)


PresetName = Literal["edit-32", "edit-128", "paper-128", "tiny"]  # the keys of PRESETS
DEFAULT_CPU_PRESET, DEFAULT_GPU_PRESET = "edit-32", "edit-128"


def preset(name: str, **overrides: object) -> TrainConfig:
    """A named preset with some fields replaced. When only the length (`num_iters`) changes,
    the decay keeps the preset's share of the steps."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}' (known: {', '.join(PRESETS)})")
    base = PRESETS[name]
    if "num_iters" in overrides and "num_iters_decay" not in overrides:
        share = base.num_iters_decay / base.num_iters
        overrides["num_iters_decay"] = round(share * int(str(overrides["num_iters"])))
    return base.replace(**overrides)
