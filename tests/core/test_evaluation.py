"""The evaluation can tell a faithful edit from doing nothing and from noise: the ground truth
itself scores near-perfect, the untouched input scores the do-nothing figures, noise scores
badly."""

import math

import pytest
import torch
from torch import nn

from stargan_core.data import read_dataset
from stargan_core.data.dataset import FaceDataset, held_out, preload
from stargan_core.evaluation import evaluate, ground_truth_for, summarize, train_classifier
from stargan_core.synthetic import HAIR_COLOURS, SyntheticCeleba, write_celeba


class Translator(nn.Module):
    """A stand-in generator, called as g(x, c_trg, c_org) like G."""

    def __init__(self, translate):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # for the device
        self.translate = translate

    def forward(self, x, c_trg, c_org):
        return self.translate(x, c_trg, c_org)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = write_celeba(tmp_path_factory.mktemp("gt") / "celeba", num_images=400, seed=1,
                        test_fraction=0.1)
    raw = read_dataset(root)
    spec = raw.spec
    train_set = preload(FaceDataset(raw.split("train"), spec, raw.format, 32))
    test_set = held_out(FaceDataset(raw.split("test"), spec, raw.format, 32), 40)
    clf = train_classifier(train_set, spec, steps=300)
    return root, spec, test_set, clf, ground_truth_for(str(root), 32)


def oracle(spec, test_set, truth):
    """Looks each input up among the held-out images and answers with its ground truth."""
    def translate(x, c_trg, c_org):
        out = []
        for xi, trg, org in zip(x, c_trg, c_org, strict=True):
            index = next((i for i, h in enumerate(test_set.images) if torch.equal(h, xi)), None)
            if index is None:  # not a held-out input (the reconstruction's input): as it is
                out.append(xi)
                continue
            values = {d: int(trg[k]) for k, d in enumerate(spec.domains)
                      if trg[k] != org[k] and not (d in HAIR_COLOURS and trg[k] == 0)}
            data = truth.synthetic.truth(test_set.ids[index], values)
            out.append(truth.preprocess(data) if data else xi)
        return torch.stack(out)
    return Translator(translate)


def test_truth_scores_near_perfect_the_input_scores_doing_nothing_noise_scores_badly(setup):
    _, spec, test_set, clf, truth = setup
    assert truth is not None
    right = evaluate(oracle(spec, test_set, truth), clf, spec, test_set, truth=truth)
    nothing = evaluate(Translator(lambda x, c_trg, c_org: x), clf, spec, test_set, truth=truth)
    torch.manual_seed(0)
    noise = evaluate(Translator(lambda x, c_trg, c_org: torch.rand_like(x) * 2 - 1), clf, spec,
                     test_set, truth=truth)

    assert right.real_accuracy >= 0.9  # the classifier itself can be trusted
    # The truth: every target reached, nothing else changed, the exact pixels at model size.
    assert right.mean_translation_accuracy >= 0.9, right.translation_accuracy
    assert right.mean_preservation >= 0.9, right.preservation
    assert right.fidelity("psnr") >= 90 and right.fidelity("l1") < 1e-6
    # At full size its model-size edit, carried back, beats doing nothing by far.
    assert right.fidelity("psnr_full") >= right.fidelity("psnr_full_do_nothing") + 4
    # Doing nothing: the baseline figures exactly, no target reached, everything preserved.
    for name in ("psnr", "l1", "psnr_full", "l1_full"):
        assert nothing.fidelity(name) == pytest.approx(nothing.fidelity(f"{name}_do_nothing"))
        assert nothing.fidelity(f"{name}_do_nothing") == pytest.approx(
            right.fidelity(f"{name}_do_nothing"))
    assert nothing.mean_translation_accuracy <= 0.1 and nothing.mean_preservation == 1.0
    # Noise: far below doing nothing, and attributes not preserved.
    assert noise.fidelity("psnr") < nothing.fidelity("psnr") - 8
    assert noise.fidelity("psnr_full") < nothing.fidelity("psnr_full") - 3
    assert noise.mean_preservation < 0.6
    # The share of the true change: all of it for the truth (at full size, what the bilinear
    # carry-back keeps of it), none for doing nothing, less than none for noise.
    assert right.fidelity("change_share") == pytest.approx(1.0)
    assert right.fidelity("change_share_full") >= 0.5
    assert right.fidelity("l1_outside") == 0 and right.fidelity("l1_outside_full") < 0.01
    assert nothing.fidelity("change_share") == 0 == nothing.fidelity("change_share_full")
    assert noise.fidelity("change_share") < 0 and noise.fidelity("l1_outside") > 0.2


def test_metrics_per_target_and_overall_with_a_readable_summary(setup):
    _, spec, test_set, clf, truth = setup
    nothing = evaluate(Translator(lambda x, c_trg, c_org: x), clf, spec, test_set, truth=truth)
    metrics = nothing.metrics()
    for name in ("translation_accuracy", "preservation", "psnr", "psnr_do_nothing", "l1",
                 "psnr_full", "psnr_full_do_nothing", "change_share", "change_share_full",
                 "l1_outside", "l1_outside_full"):
        assert f"eval/{name}" in metrics
        assert f"eval/{name}/Blond_Hair" in metrics and f"eval/{name}/Male:0" in metrics
    # Every target that changes a drawn attribute has ground truth for each pair it counts.
    assert all(s.truth_pairs == s.pairs for s in nothing.targets.values())
    text = summarize(metrics)
    assert "preservation 100.0%" in text and "doing nothing" in text
    assert "share of the true change made 0.0%" in text


def test_real_data_gets_accuracy_and_preservation_without_fidelity(setup, tmp_path):
    root, spec, test_set, clf, _ = setup
    real = tmp_path / "celeba"
    real.mkdir()
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        (real / name).write_bytes((root / name).read_bytes())
    (real / "img_align_celeba").symlink_to(root / "img_align_celeba")
    assert ground_truth_for(str(real), 32) is None  # no synthetic.json: nothing to draw
    result = evaluate(Translator(lambda x, c_trg, c_org: x), clf, spec, test_set)
    metrics = result.metrics()
    assert "eval/preservation" in metrics and "eval/psnr" not in metrics
    assert math.isnan(result.fidelity("psnr"))
    assert "no ground truth" in summarize(metrics)


def test_ground_truth_redraws_the_stored_photo_with_other_attributes(setup):
    root, *_ = setup
    synthetic = SyntheticCeleba.read(str(root))
    stored = (root / "img_align_celeba" / "000005.jpg").read_bytes()
    assert synthetic.photo(4) == stored  # the same bytes: the truth shares its every pixel
    face = synthetic.draw(4)[0]
    other = next(h for h in HAIR_COLOURS if h != face.hair)
    assert synthetic.truth("img_align_celeba/000005.jpg", {other: 1}) not in (None, stored)
    assert synthetic.truth("000005.jpg", {face.hair: 1}) is None  # nothing would change
    assert synthetic.truth("000005.jpg", {"Attractive": 1}) is None  # not drawn
    with pytest.raises(ValueError, match="not an image of this synthetic set"):
        synthetic.truth("000999.jpg", {other: 1})
