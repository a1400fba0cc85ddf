"""The generator in the MLflow model registry: versions under `stargan-<dataset>`, resolving a
`models:/` URI to a concrete version, the aliases `challenger` / `champion`, and the model card.
The model a version holds is `serving.StarGANModel`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from stargan_core.config import EDITING_OPTIONS
from stargan_core.domains import DomainSpec
from stargan_core.evaluation.metrics import summarize
from stargan_core.preprocessing import Preprocessing
from stargan_core.serving import StarGANModel  # noqa: F401  (pickled in versions logged before)
from stargan_core.storage import redact

CHALLENGER, CHAMPION = "challenger", "champion"


def default_model_name(spec: DomainSpec) -> str:
    """`stargan-celeba`, `stargan-rafd`, `stargan-joint` (or `stargan-<folder>`)."""
    return "stargan-joint" if spec.is_joint else f"stargan-{spec.label_sets[0].dataset}"


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
    conditioning: str = "target"  # G's labels: target (the paper) | difference (scalable edits)
    judged: bool = False  # logged with a judge of its outputs (`verdicts.Judge`)

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
    try:
        metadata = mlflow.models.get_model_info(f"models:/{name}/{version}").metadata or {}
    except (MlflowException, OSError) as error:
        raise LookupError(
            f"{model_uri} is version {version}, whose files cannot be read ({type(error).__name__}:"
            f" {error}): they are gone from the artifact store or it is unreachable; promote a "
            f"version that loads (`stargan promote {name} VERSION`)") from None
    if "domain_spec" not in metadata:
        raise LookupError(f"models:/{name}/{version} is not a StarGAN generator logged by this "
                          "project (its metadata has no domain_spec)")
    preprocessing = Preprocessing.from_dict(metadata["preprocessing"])
    return RegisteredModel(name, version, model_uri, found.run_id,
                           DomainSpec.from_json(json.dumps(metadata["domain_spec"])),
                           preprocessing,
                           metadata.get("generator", {}).get("g_conditioning", "target"),
                           bool(metadata.get("judge")))


def model_card(metrics: dict[str, float], run_id: str, spec: DomainSpec,
               config: dict[str, Any], sample: str) -> str:
    """A short model card in Markdown for the model version's description."""
    columns = [("translation_accuracy", "target accuracy", "{:.1%}")]
    if "eval/preservation" in metrics:
        columns.append(("preservation", "preservation", "{:.1%}"))
    if "eval/change_share_full" in metrics:
        columns += [("change_share_full", "share of the true change", "{:.1%}"),
                    ("l1_outside_full", "L1 outside it", "{:.4f}")]
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
