"""The evidence a generator is judged on: per label set, held-out images, the attribute
classifier trained on real images and the ground truth where one exists. Built once, it judges
any number of generators on exactly the same evidence (a champion and its challenger)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from stargan_core.data.dataset import FaceDataset, HeldOut, held_out
from stargan_core.data.folders import detect_format, read_dataset
from stargan_core.data.manifest import is_prepared, manifest_spec, read_manifest
from stargan_core.data.shards import ShardDataset
from stargan_core.domains import DomainSpec
from stargan_core.evaluation.classifier import train_judge
from stargan_core.evaluation.ground_truth import GroundTruth, ground_truth_for
from stargan_core.evaluation.metrics import Evaluation, evaluate
from stargan_core.evaluation.verdicts import Judge
from stargan_core.preprocessing import Framer


@dataclass
class EvaluationSet:
    """One label set's evidence: real images the classifier learns from, held-out images the
    generator is judged on, and their ground truth (synthetic data only)."""

    label_set: int
    train: HeldOut
    test: HeldOut
    truth: GroundTruth | None
    rejected: list[tuple[str, str]] = field(default_factory=list)  # left out by the framing


def evaluation_set(url: str, spec: DomainSpec, image_size: int, *, format: str = "auto",
                   limit: int = 2000, storage_options: dict[str, Any] | None = None,
                   framer: Framer | None = None) -> EvaluationSet:
    """Up to `limit` training and held-out images of a data set (raw or prepared), as the
    label set of `spec` that the data set's labels belong to. Raw images are framed as the
    data set's training images are, or by `framer` (then without ground truth, which is
    drawn in the data set's own framing; images the framer rejects are left out)."""
    prepared = is_prepared(url, storage_options)
    if prepared and framer is not None:
        raise ValueError(f"{url} is a prepared data set, whose images are framed already: "
                         "give its raw folder to frame them otherwise")
    if prepared:
        manifest = read_manifest(url, storage_options)
        dataset = manifest_spec(manifest).label_sets[0].dataset
        label_set = spec.index_of(dataset)
        has_test = bool(manifest["splits"].get("test", {}).get("rows"))

        def open_split(split: str) -> Dataset:
            return ShardDataset(url, spec, split, image_size, label_set, shuffle_buffer=0,
                                storage_options=storage_options)
    else:
        found = detect_format(url, storage_options) if format == "auto" else format
        celeba = next((ls for ls in spec.label_sets if ls.dataset == "celeba"), None)
        domains = list(celeba.domains) if celeba and found == "celeba" else None
        raw = read_dataset(url, found, domains, storage_options)
        label_set = spec.index_of(raw.spec.label_sets[0].dataset)
        has_test = bool(raw.split("test"))

        def open_split(split: str) -> Dataset:
            return FaceDataset(raw.split(split), spec, raw.format, image_size, label_set, framer)

    train, test = open_split("train"), open_split("test" if has_test else "train")
    truth = ground_truth_for(url, image_size, format, storage_options) if framer is None else None
    return EvaluationSet(label_set, held_out(train, limit), held_out(test, limit), truth,
                         getattr(train, "rejected", []) + getattr(test, "rejected", []))


class Harness:
    """Evaluation sets and their attribute classifiers, built once for a domain spec."""

    def __init__(self, spec: DomainSpec, sets: Sequence[EvaluationSet],
                 classifiers: Sequence[nn.Module], device: torch.device) -> None:
        self.spec, self.sets, self.classifiers, self.device = spec, sets, classifiers, device

    @classmethod
    def build(cls, urls: Sequence[str], spec: DomainSpec, image_size: int, *,
              images: int = 2000, classifier_steps: int = 600,
              device: str | torch.device = "cpu", format: str = "auto",
              storage_options: dict[str, Any] | None = None, framer: Framer | None = None
              ) -> Harness:
        """Read the evaluation sets of `urls` and train one judge per set (`train_judge`)."""
        sets = [evaluation_set(u, spec, image_size, format=format, limit=images,
                               storage_options=storage_options, framer=framer) for u in urls]
        classifiers = [train_judge(spec, s.label_set, s.train, s.truth, images=images,
                                   steps=classifier_steps, device=device) for s in sets]
        return cls(spec, sets, classifiers, torch.device(device))

    def evaluate(self, g: nn.Module) -> dict[str, Evaluation]:
        """`g` on every set, by data set name (celeba, rafd, ...)."""
        return {self.spec.label_sets[s.label_set].dataset:
                evaluate(g, clf, self.spec, s.test, s.label_set, device=self.device,
                         truth=s.truth, cross=self.spec.is_joint)
                for s, clf in zip(self.sets, self.classifiers, strict=True)}

    def judge(self, image_size: int) -> Judge:
        """The classifiers as the judge of a version's verdicts (logged with it)."""
        return Judge(self.spec, image_size, {s.label_set: c for s, c in
                                             zip(self.sets, self.classifiers, strict=True)})

    def metrics(self, g: nn.Module) -> dict[str, float]:
        """`evaluate` as flat metric names; for a joint model they carry the data set:
        `eval/celeba/translation_accuracy`."""
        return flat_metrics(self.evaluate(g), self.spec.is_joint)


def flat_metrics(results: dict[str, Evaluation], joint: bool) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for dataset, result in results.items():
        prefix = f"eval/{dataset}/" if joint else "eval/"
        metrics |= {k.replace("eval/", prefix, 1): v for k, v in result.metrics().items()}
    return metrics
