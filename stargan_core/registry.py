"""The generator in the MLflow model registry: a pyfunc model with its DomainSpec and
preprocessing, versions under `stargan-<dataset>`, and the aliases `challenger` / `champion`.

A logged model needs nothing but MLflow to load: it carries this package's code, the weights
of G and of D (whose domain classifier reads the labels a target leaves alone), the spec and
the preprocessing.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow import MlflowClient
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
from stargan_core.data.celeba import ALIGNED
from stargan_core.data.images import RejectedImage, decode_rgb, encode
from stargan_core.domains import DomainSpec, Target
from stargan_core.editing import OUTPUT_SIZES, Editor
from stargan_core.evaluation.metrics import summarize
from stargan_core.preprocessing import FRAMINGS, Preprocessing
from stargan_core.storage import redact

CHALLENGER, CHAMPION = "challenger", "champion"
BATCH = 64  # images per forward pass in predict
# What the logged code imports, pinned to the versions it was logged with (without local tags
# such as +cu130, so that an index can resolve them).
REQUIREMENTS = ("torch", "torchvision", "pillow", "numpy", "pandas", "tqdm", "fsspec")
MODEL_NAME = "generator"  # the model's name within its run
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image"), ColSpec("string", "target")]),
    outputs=Schema([ColSpec("binary", "image")]),
    params=ParamSchema([ParamSpec("output_size", "string", "input"),
                        ParamSpec("framing", "string", "auto")]),
)


def default_model_name(spec: DomainSpec) -> str:
    """`stargan-celeba`, `stargan-rafd`, `stargan-joint` (or `stargan-<folder>`)."""
    return "stargan-joint" if spec.is_joint else f"stargan-{spec.label_sets[0].dataset}"


class StarGANModel(mlflow.pyfunc.PythonModel):
    """Input: `image` (JPEG/PNG/WebP bytes) and `target` (`Blond_Hair`, `Male=0,Young`, `happy`)
    per row. Output: `image`, the translation as PNG bytes: the input photo at its own size
    with the edit in it, or the model's square with the parameter `output_size="model"`. The
    parameter `framing` (`preprocessing.FRAMINGS`; default `auto`: every face of a photo that
    is not an aligned face) says where in the photo the model looks."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from stargan_core.train import resolve_device

        self._load(context.artifacts["weights"], resolve_device("auto"))

    @classmethod
    def from_weights(cls, path: str | Path, device: torch.device) -> StarGANModel:
        model = cls()
        model._load(path, device)
        return model

    def _load(self, path: str | Path, device: torch.device) -> None:
        g, d, self.spec, _, preprocessing = load_models(path, device)
        self.editors = {"auto": Editor(g, d, self.spec, preprocessing)}

    @property
    def editor(self) -> Editor:
        return self.editors["auto"]

    @property
    def device(self) -> torch.device:
        return self.editor.device

    def to(self, device: torch.device) -> StarGANModel:
        self.editor.to(device)  # the networks every framing's editor shares
        return self

    def edit(self, photos: Sequence[torch.Tensor], targets: Sequence[Target],
             output_size: str = "input", framing: str = "auto") -> list[list[torch.Tensor]]:
        """uint8 (3, H, W) photos -> per target, per photo, the uint8 translation."""
        return self.framed(framing).edit(photos, targets, output_size)

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
        editor = self.framed(framing)
        missing = model_input.index[model_input["target"].isna()].tolist()
        if missing:
            raise MlflowException.invalid_parameter_value(
                f"rows {missing[:10]} have no target (known: "
                f"{', '.join(t.text for t in self.spec.single_targets())})")
        outputs = pd.Series([None] * len(model_input), index=model_input.index, dtype=object)
        for target_text, group in model_input.groupby("target", sort=False):
            target = self.spec.parse_target(str(target_text))
            for start in range(0, len(group), BATCH):  # bounded memory for any request size
                chunk = group.iloc[start:start + BATCH]
                photos = [self._decode(row, data) for row, data in chunk["image"].items()]
                regions = [self._locate(editor, row, photo) for row, photo in
                           zip(chunk.index, photos, strict=True)]
                edited = editor.edit(photos, [target], output_size, regions=regions)[0]
                for row, image in zip(chunk.index, edited, strict=True):
                    outputs[row] = encode(to_pil_image(image), ".png")
        return pd.DataFrame({"image": outputs}, index=model_input.index)

    @staticmethod
    def _locate(editor: Editor, row: object, photo: torch.Tensor) -> list:
        try:
            return editor.locate(photo)
        except RejectedImage as error:
            raise MlflowException.invalid_parameter_value(f"row {row}: {error}") from None

    def _decode(self, row: object, data: object) -> torch.Tensor:
        try:
            return decode_rgb(data, self.editor.min_side)  # type: ignore[arg-type]
        except RejectedImage as error:
            raise MlflowException.invalid_parameter_value(f"row {row}: {error}") from None
        except TypeError:
            raise MlflowException.invalid_parameter_value(
                f"row {row}: image must be the bytes of an image file, not "
                f"{type(data).__name__}") from None


def log_generator(checkpoint: str | Path) -> mlflow.models.model.ModelInfo:
    """Log the checkpoint's G and D as the active run's `generator` pyfunc model."""
    state = load_checkpoint(checkpoint)
    spec, options = spec_and_config(state)
    preprocessing = preprocessing_of(state)
    described = preprocessing.to_dict() | {
        "output": "PNG, RGB: the input's size with the edit carried back (output_size=model: "
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
            name=MODEL_NAME, python_model=StarGANModel(), artifacts={"weights": str(weights)},
            signature=SIGNATURE, code_paths=[str(Path(stargan_core.__file__).parent)],
            input_example=pd.DataFrame({"image": [example.getvalue()],
                                        "target": [spec.single_targets()[0].text]}),
            pip_requirements=[f"{p}=={version(p).split('+')[0]}" for p in REQUIREMENTS],
            metadata={"domain_spec": json.loads(spec.to_json()), "preprocessing": described,
                      "generator": generator,
                      "targets": [t.text for t in spec.single_targets()]},
        )


def register(model_uri: str, name: str, description: str,
             client: MlflowClient | None = None) -> str:
    """Register a logged model as a new version of `name`, aliased `challenger`; its version."""
    client = client or MlflowClient()
    version = mlflow.register_model(model_uri, name).version
    client.update_model_version(name, version, description)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return str(version)


def _versions(client: MlflowClient, name: str) -> str:
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    return ", ".join(map(str, versions)) or "none"


def promote(name: str, version: str, client: MlflowClient | None = None) -> None:
    """Move the `champion` alias to `version` (what translate-bulk uses by default)."""
    client = client or MlflowClient()
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        raise ValueError(f"model '{name}' has no version {version} "
                         f"(versions: {_versions(client, name)})") from None
    client.set_registered_model_alias(name, CHAMPION, str(version))


def champion_version(name: str, client: MlflowClient | None = None) -> str | None:
    client = client or MlflowClient()
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


@dataclass(frozen=True)
class RegisteredModel:
    """One concrete version of a registered generator and what it needs of its inputs."""

    name: str
    version: str
    requested: str  # the URI it was resolved from, e.g. models:/stargan-celeba@champion
    run_id: str
    spec: DomainSpec
    preprocessing: Preprocessing

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve_model(model_uri: str, client: MlflowClient | None = None) -> RegisteredModel:
    """`models:/<name>@<alias>` or `models:/<name>/<version>` as a concrete version; a missing
    model, alias or version is a LookupError that says what exists."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/@]+)|/(\d+))", model_uri.strip())
    if match is None:
        raise ValueError(f"model URI '{model_uri}' does not name a registered model version: "
                         "use models:/<name>@<alias> or models:/<name>/<version>")
    name, alias, number = match.groups()
    client = client or MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        raise LookupError(
            f"no registered model '{name}' in the registry at {redact(mlflow.get_registry_uri())}: "
            "train and "
            "register one first (the train-stargan flow), or point MLFLOW_TRACKING_URI at the "
            "registry that has it") from None
    try:
        found = (client.get_model_version_by_alias(name, alias) if alias
                 else client.get_model_version(name, number))
    except MlflowException:
        if alias:
            known = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
            raise LookupError(
                f"model '{name}' has no alias '{alias}' (aliases: {known}): promote a version "
                f"(`stargan promote {name} VERSION`) or give models:/{name}/<version>") from None
        raise LookupError(f"model '{name}' has no version {number} "
                          f"(versions: {_versions(client, name)})") from None
    version = str(found.version)
    metadata = mlflow.models.get_model_info(f"models:/{name}/{version}").metadata or {}
    if "domain_spec" not in metadata:
        raise LookupError(f"models:/{name}/{version} is not a StarGAN generator logged by this "
                          "project (its metadata has no domain_spec)")
    preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
    return RegisteredModel(name, version, model_uri, found.run_id,
                           DomainSpec.from_json(json.dumps(metadata["domain_spec"])),
                           preprocessing)


def load_registered(model_uri: str, device: str = "auto", tracking_uri: str | None = None,
                    registry_uri: str | None = None) -> StarGANModel:
    """The StarGANModel of a registered version, on `device` (auto: CUDA when present).

    Only its weights are loaded, with `weights_only=True`: the version's pickled python_model
    is never unpickled, so a registry entry cannot run code where it is loaded.
    """
    from stargan_core.train import resolve_device

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp,
                                                    tracking_uri=tracking_uri,
                                                    registry_uri=registry_uri)
        flavor = Model.load(local).flavors["python_function"]
        weights = Path(local) / flavor["artifacts"]["weights"]["path"]
        return StarGANModel.from_weights(weights, resolve_device(device))


def model_card(metrics: dict[str, float], run_id: str, spec: DomainSpec,
               config: dict[str, Any], sample: str) -> str:
    """A short model card in Markdown for the model version's description."""
    columns = [("translation_accuracy", "target accuracy", "{:.1%}")]
    if "eval/preservation" in metrics:
        columns.append(("preservation", "preservation", "{:.1%}"))
    if "eval/psnr" in metrics:
        columns += [("psnr", "PSNR to truth (dB)", "{:.1f}"),
                    ("psnr_do_nothing", "doing nothing (dB)", "{:.1f}"),
                    ("psnr_full", "full size (dB)", "{:.1f}"),
                    ("psnr_full_do_nothing", "doing nothing, full size (dB)", "{:.1f}")]
    targets = sorted(k.rsplit("/", 1)[-1] for k in metrics
                     if k.startswith("eval/translation_accuracy/"))

    def cell(key: str, style: str) -> str:
        value = metrics.get(key)
        return style.format(value) if value is not None else "-"

    editing = ", ".join(f"{k} {config.get(k)}" for k in EDITING_OPTIONS if k in config)
    lines = [
        f"StarGAN generator for {', '.join(spec.domains)} "
        f"({config['image_size']} px; G {config['g_conv_dim']} wide, "
        f"{config['g_repeat_num']} residual blocks; {editing}), {config['num_iters']} steps, "
        f"run `{run_id}`.",
        "",
        f"- {summarize(metrics)}",
        f"- reconstruction L1 of G(G(x, c), c_org): {metrics['eval/reconstruction_l1']:.3f}",
        "",
        "| target | " + " | ".join(title for _, title, _ in columns) + " |",
        "| --- |" + " --- |" * len(columns),
        "| **all** | " + " | ".join(cell(f"eval/{m}", f) for m, _, f in columns) + " |",
        *("| " + t + " | " + " | ".join(cell(f"eval/{m}/{t}", f) for m, _, f in columns) + " |"
          for t in targets),
        "",
        f"Sample grid (held-out images x every target): run artifact `{sample}`.",
    ]
    return "\n".join(lines)
