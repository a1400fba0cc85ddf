"""A training job, typed once: what the train-stargan flow takes as its parameter (Prefect
renders it as a form and validates it before a run exists), what `train_in_run` trains and
what the torchrun processes read from their job file.

Its training options are `TrainConfig`'s own fields, each optional, with TrainConfig's types
and bounds: one source of truth.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    create_model,
    field_validator,
    model_validator,
)

from stargan_core.config import DEFAULT_GPU_PRESET, PresetName, TrainConfig, preset
from stargan_core.storage import StorageAccess, Url


def _optional(field: Any) -> tuple[Any, Any]:
    """A TrainConfig field as an override: the same type and bounds, or None (the preset's)."""
    typed = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return typed | None, Field(None, description=field.description)


# Every TrainConfig field, None meaning "the preset's value".
TrainOptions = create_model(
    "TrainOptions", __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="Training options that replace the preset's (TrainConfig's fields).",
    **{name: _optional(field) for name, field in TrainConfig.model_fields.items()})


class Evaluation(BaseModel):
    """Evaluation on held-out images, during training and at its end."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: NonNegativeInt = Field(
        0, description="also evaluate at each checkpoint whose step is a multiple of this "
        "(0: only at the end)")
    images: PositiveInt = Field(
        2000, description="held-out images evaluated, and real images the attribute "
        "classifier learns from")
    classifier_steps: PositiveInt = Field(600, description="the classifier's training steps")


class TrainJob(BaseModel):
    """One training: which data, which configuration, where it computes, how it is judged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: Annotated[list[Url], Field(min_length=1, max_length=2)] = Field(
        description="a prepared data set (its folder or manifest.json, local or s3://), or "
        "two (CelebA and RaFD) for joint training with the mask vector")
    domains: list[str] | None = Field(
        None, description="CelebA attributes to learn (default: Black_Hair, Blond_Hair, "
        "Brown_Hair, Male, Young)")
    preset: PresetName = Field(
        DEFAULT_GPU_PRESET, description="faithful edits at 128 px for GPUs (edit-128) or at "
        "32 px for CPUs (edit-32), or the paper's networks and losses (paper-128, tiny at 32 "
        "px); `options` override it")
    options: TrainOptions = Field(  # type: ignore[valid-type]
        default_factory=TrainOptions, description="training options replacing the preset's, "
        "e.g. {\"num_iters\": 50000, \"batch_size\": 8}")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1")
    processes: PositiveInt = Field(
        1, description="data-parallel training processes on the worker, started by torchrun: "
        "one per GPU (the global batch and schedule stay the preset's), or on CPU up to one "
        "per core")
    evaluation: Evaluation = Field(default_factory=Evaluation)
    keep_checkpoints: NonNegativeInt = Field(
        3, description="checkpoints kept in the run (paper-128: ~0.6 GB each): the newest and "
        "the best evaluated one; 0: all")
    storage: StorageAccess | None = Field(
        None, description="how to reach S3, by reference (default: the worker's environment)")

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_two(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _valid_config(self) -> TrainJob:
        self.config()  # fails now, naming the option, rather than in the training task
        return self

    def config(self) -> TrainConfig:
        """The preset with the options given. When only the length (`num_iters`) changes, the
        decay keeps the preset's share of the steps."""
        return preset(self.preset, **self.options.model_dump(exclude_none=True))
