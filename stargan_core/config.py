"""Training configuration: one typed object with the paper's defaults, and named presets."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from stargan_core.model import CONDITIONINGS, OUTPUTS, UPSAMPLINGS


class TrainConfig(BaseModel):
    """Hyper-parameters and schedule of one training run (defaults: the paper's CelebA 128)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: PositiveInt = 128
    g_conv_dim: PositiveInt = 64
    d_conv_dim: PositiveInt = 64
    g_repeat_num: NonNegativeInt = 6
    d_repeat_num: PositiveInt = 6
    batch_size: PositiveInt = 16
    num_iters: PositiveInt = 200_000
    num_iters_decay: NonNegativeInt = 100_000  # at most num_iters
    g_lr: PositiveFloat = 1e-4
    d_lr: PositiveFloat = 1e-4
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.5
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    n_critic: PositiveInt = 5
    lambda_cls: NonNegativeFloat = 1.0
    lambda_rec: NonNegativeFloat = 10.0
    lambda_gp: NonNegativeFloat = 10.0  # weight of the gradient penalty (WGAN-GP or R1)
    # wgan-gp (the paper) | non-saturating: softplus losses with R1 on the real images
    gan_loss: Literal["wgan-gp", "non-saturating"] = "wgan-gp"
    # Options for faithful edits (all off in the paper's setting; see model.Generator):
    g_output: Literal[OUTPUTS] = "tanh"  # tanh (the paper) | masked: m * C + (1 - m) * x
    g_conditioning: Literal[CONDITIONINGS] = "target"  # target (the paper) | difference
    g_upsampling: Literal[UPSAMPLINGS] = "transposed"  # the paper | resize: nearest, then conv
    lambda_id: NonNegativeFloat = 0.0  # identity: L1(G(x, c_org), x), no edit asked, none made
    lambda_mask: NonNegativeFloat = 0.0  # L1 of the mask: edit no more than the target needs
    ema_beta: Annotated[float, Field(ge=0, lt=1)] = 0.0  # moving average of G (0: none)
    d_projection: bool = False  # D judges realism for the labels (model.Discriminator)
    seed: int = 0
    log_every: PositiveInt = 10
    sample_every: PositiveInt = 1000
    checkpoint_every: PositiveInt = 10_000
    # and after this many minutes of training since the last one (0: by steps only), so that
    # a run killed before `checkpoint_every` steps can resume too
    checkpoint_minutes: NonNegativeFloat = 10.0
    num_workers: NonNegativeInt = 2
    mixed_precision: bool = True  # bf16 autocast where native (recent GPUs, AMX/AVX-512 CPUs)
    # CUDA: deterministic kernels (cuDNN, cuBLAS), so that a resumed run repeats an
    # uninterrupted one bit for bit on the same GPU and software; slower (train.math_settings)
    deterministic: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.num_iters_decay > self.num_iters:
            raise ValueError(f"num_iters_decay ({self.num_iters_decay}) must lie in [0, "
                             f"num_iters ({self.num_iters})]")
        if self.lambda_mask and self.g_output != "masked":
            raise ValueError("lambda_mask needs g_output='masked'")
        return self

    def replace(self, **overrides: object) -> TrainConfig:
        """A copy with `overrides`, validated as a new config is (an unknown option is an
        error naming the known ones)."""
        unknown = sorted(set(overrides) - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"unknown training option {unknown} (known: "
                             f"{', '.join(type(self).model_fields)})")
        try:
            return TrainConfig(**(self.model_dump() | overrides))
        except ValidationError as error:  # one line per option, without pydantic's URLs
            raise ValueError("invalid training options: " + "; ".join(
                (f"{'.'.join(map(str, e['loc']))}: {e['msg'].lower()} (got {e['input']!r})"
                 if e["loc"] else e["msg"].removeprefix("Value error, "))
                for e in error.errors())) from None

    def to_dict(self) -> dict[str, object]:
        return self.model_dump()


# The options that make edits faithful (all off in the paper's setting).
EDITING_OPTIONS = ("g_output", "g_conditioning", "lambda_id", "lambda_mask", "ema_beta",
                   "d_projection", "g_upsampling", "gan_loss")

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
# warmed up, translates without the last steps' noise; a projection critic asks for a
# target's whole appearance, not the cues its classifier reads (model.Discriminator); resize
# up-sampling and the non-saturating loss with R1 (as StarGAN v2 trains) leave G less noise
# to paint as cues.
_EDITING = dict(g_output="masked", g_conditioning="difference", lambda_id=5.0, lambda_mask=0.02,
                ema_beta=0.999, d_projection=True, g_upsampling="resize",
                gan_loss="non-saturating", lambda_gp=1.0)
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
