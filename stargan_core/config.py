"""Training configuration: one typed object with the paper's defaults, and named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


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

    def replace(self, **overrides: object) -> TrainConfig:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown training option {unknown} (known: {known})")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


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
