"""A new model version reviewed against the champion: both generators judged on the same
held-out images by the same classifier (one `Harness`), the decision and its evidence written
into the version (tags and model card), promotion only where the caller allows it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from stargan_core.checkpoint import CheckpointError
from stargan_core.domains import DomainSpec
from stargan_core.evaluation.compare import Comparison, compare
from stargan_core.evaluation.harness import Harness
from stargan_core.evaluation.metrics import Evaluation
from stargan_core.registry import champion_version, promote, resolve_model
from stargan_core.serving import load_registered

TAG = "stargan.review"  # promote | keep | first version | not comparable
PROMOTED_BY_TAG = "stargan.promoted_by"


@dataclass(frozen=True)
class Review:
    outcome: str  # compared | first version | not comparable
    detail: str
    comparison: Comparison | None = None

    @property
    def promote(self) -> bool:
        """Whether the new version may become champion without a person deciding."""
        if self.comparison is not None:
            return self.comparison.promote
        return self.outcome == "first version"

    @property
    def verdict(self) -> str:
        if self.outcome == "compared":
            return "promote" if self.promote else "keep"
        return self.outcome


def review(name: str, spec: DomainSpec, image_size: int, harness: Harness,
           challenger: dict[str, Evaluation], device: torch.device,
           client: MlflowClient | None = None) -> Review:
    """Judge the champion of `name` on the evidence that `challenger` was evaluated on."""
    current = champion_version(name, client)
    if current is None:
        return Review("first version", f"{name} has no champion yet")
    try:
        champion = resolve_model(f"models:/{name}/{current}", client)
        g = load_registered(champion.uri, str(device)).editor.g
    except (LookupError, MlflowException, CheckpointError, OSError) as error:
        return Review("not comparable", f"champion version {current} cannot be loaded "
                      f"({error}): a reviewer decides")
    if champion.spec.to_json() != spec.to_json() or champion.image_size != image_size:
        return Review("not comparable", (
            f"champion version {current} translates {', '.join(champion.spec.domains)} at "
            f"{champion.image_size} px, this version {', '.join(spec.domains)} at {image_size} "
            "px: a reviewer decides"))
    comparison = compare(harness.evaluate(g), challenger, current)
    return Review("compared", comparison.decision(), comparison)


def record_review(name: str, version: str, found: Review, client: MlflowClient | None = None
                  ) -> None:
    """The decision and its evidence on the version: tags a script reads, and a section of
    the model card a reviewer reads."""
    client = client or MlflowClient()
    tags = {TAG: found.verdict, f"{TAG}.detail": found.detail}
    section = [f"## Review against the champion: {found.verdict}", "", found.detail]
    if found.comparison is not None:
        tags[f"{TAG}.champion"] = found.comparison.champion_version
        for m in found.comparison.metrics:
            tags[f"{TAG}.{m.metric}"] = (f"{m.difference:+.4f} (noise {m.noise:.4f}, margin "
                                         f"{m.margin:g}, {m.verdict})")
        section += ["", "Same held-out images and attribute classifier for both versions.", "",
                    found.comparison.table()]
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    card = client.get_model_version(name, version).description or ""
    client.update_model_version(name, version, card.rstrip() + "\n\n" + "\n".join(section))


def promote_reviewed(name: str, version: str, by: str, client: MlflowClient | None = None
                     ) -> None:
    """Make `version` the champion, noting who decided, once it is known to load (a version
    whose files are gone would stop every job that follows the alias)."""
    client = client or MlflowClient()
    load_registered(f"models:/{name}/{version}", "cpu")
    promote(name, version, client)
    client.set_model_version_tag(name, version, PROMOTED_BY_TAG, by)
