"""Evaluation of any generator, apart from training: the independent attribute classifier,
target accuracy and preservation, and fidelity to the ground truth where it exists."""

from stargan_core.evaluation.classifier import (
    Artefacts,
    AttributeClassifier,
    predict_labels,
    train_classifier,
    train_judge,
)
from stargan_core.evaluation.compare import Comparison, compare
from stargan_core.evaluation.ground_truth import GroundTruth, ground_truth_for
from stargan_core.evaluation.harness import EvaluationSet, Harness, evaluation_set, flat_metrics
from stargan_core.evaluation.metrics import (
    Evaluation,
    evaluate,
    psnr,
    summarize,
)

__all__ = [
    "Artefacts",
    "AttributeClassifier",
    "Comparison",
    "EvaluationSet",
    "Evaluation",
    "GroundTruth",
    "Harness",
    "compare",
    "evaluate",
    "evaluation_set",
    "flat_metrics",
    "ground_truth_for",
    "predict_labels",
    "psnr",
    "summarize",
    "train_classifier",
    "train_judge",
]
