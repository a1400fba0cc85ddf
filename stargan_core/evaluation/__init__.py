"""Evaluation of any generator, apart from training: the independent attribute classifier,
target accuracy and preservation, and fidelity to the ground truth where it exists."""

from stargan_core.evaluation.classifier import (
    AttributeClassifier,
    predict_labels,
    train_classifier,
    train_classifiers,
)
from stargan_core.evaluation.ground_truth import GroundTruth, ground_truth_for
from stargan_core.evaluation.metrics import (
    Evaluation,
    evaluate,
    evaluate_label_sets,
    psnr,
    summarize,
)

__all__ = [
    "AttributeClassifier",
    "Evaluation",
    "GroundTruth",
    "evaluate",
    "evaluate_label_sets",
    "ground_truth_for",
    "predict_labels",
    "psnr",
    "summarize",
    "train_classifier",
    "train_classifiers",
]
