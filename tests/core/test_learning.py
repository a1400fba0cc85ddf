"""Evidence that the model learns: the tiny preset on synthetic CelebA, judged by a classifier.

Slow (about 5 minutes on 2 CPU cores); run it alone with `pytest -m slow -s` to see the numbers.
"""

import json
import time

import pytest

from stargan_core.checkpoint import load_models
from stargan_core.config import preset
from stargan_core.data import read_dataset
from stargan_core.data.dataset import FaceDataset, held_out_batch, preload
from stargan_core.evaluate import evaluate, train_classifier
from stargan_core.synthetic import write_celeba
from stargan_core.train import train


@pytest.mark.slow
def test_tiny_preset_learns_the_synthetic_celeba_attributes(tmp_path):
    write_celeba(tmp_path / "celeba", num_images=2000, seed=0)
    raw = read_dataset(tmp_path / "celeba")
    config = preset("tiny")
    train_set = preload(FaceDataset(raw.split("train"), raw.spec, raw.format, config.image_size))
    test_set = preload(FaceDataset(raw.split("test"), raw.spec, raw.format, config.image_size))

    start = time.perf_counter()
    images, labels = held_out_batch(test_set)
    result = train(config, raw.spec, [train_set], tmp_path / "run", sample_images=images,
                   sample_labels=labels, data_format=raw.format)
    train_seconds = time.perf_counter() - start

    g, *_ = load_models(result.checkpoint)
    classifier = train_classifier(train_set, raw.spec)
    ev = evaluate(g, classifier, raw.spec, test_set)
    report = {"train_seconds": round(train_seconds), "images_per_second": round(
        result.images_per_second), **{k: round(v, 3) for k, v in ev.metrics().items()}}
    print(json.dumps(report, indent=2))

    assert ev.real_accuracy >= 0.95  # the classifier itself is trustworthy
    assert ev.mean_untranslated_rate <= 0.1  # inputs do not already show their targets
    assert ev.mean_translation_accuracy >= 0.8
    # Every single target is learnt, not just the easy ones: each far above the inputs' ~0 %.
    assert min(ev.translation_accuracy.values()) >= 0.35, ev.translation_accuracy
