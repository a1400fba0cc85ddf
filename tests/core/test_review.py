"""A new version against the champion: the same held-out images and classifier for both, a
verdict per metric beyond its noise, and the decision written into the registry."""

from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient

from stargan_core.domains import DomainSpec
from stargan_core.evaluation import Harness, compare
from stargan_core.evaluation.metrics import Evaluation, TargetScores
from stargan_core.review import TAG, record_review, review
from stargan_core.serving import load_registered


def evaluation(hits: list[int], preserved: list[int]) -> dict[str, Evaluation]:
    scores = TargetScores(pairs=len(hits), hits=sum(hits), preserved=sum(preserved),
                          outcomes={"translation_accuracy": hits, "preservation": preserved})
    return {"celeba": Evaluation({"Male": scores}, real_accuracy=1.0, reconstruction_l1=0.1)}


def test_a_metric_is_worse_only_beyond_its_noise():
    champion = evaluation([1, 0] * 100, [1] * 200)  # 50 % accurate, all preserved
    better = compare(champion, evaluation([1] * 180 + [0] * 20, [1] * 200), "3")
    assert better.promote and better.better == ["translation_accuracy"]
    assert "better in translation_accuracy" in better.decision()
    # Two hits fewer in 200 pairs: within the noise of a paired difference.
    close = compare(champion, evaluation([1, 0] * 98 + [0] * 4, [1] * 200), "3")
    assert close.promote and close.worse == [] and close.better == []
    # More accurate, but preservation lost on 30 of 200 pairs: worse, the champion stays.
    trade = compare(champion, evaluation([1] * 200, [1] * 170 + [0] * 30), "3")
    assert not trade.promote and trade.worse == ["preservation"]
    assert trade.decision().startswith("keep champion version 3: worse in preservation")
    assert "| preservation | 100.0% | 85.0% | -15.0% |" in trade.table()
    # Beyond the sample's noise but within the margin: 15 of 2,000 pairs lost where all else
    # agrees is no difference anyone would see.
    tiny_loss = compare(evaluation([1] * 2000, [1] * 2000),
                        evaluation([1] * 1985 + [0] * 15, [1] * 2000), "3")
    assert tiny_loss.metrics[0].noise < 0.01 and tiny_loss.promote
    with pytest.raises(ValueError, match="same harness"):
        compare(champion, evaluation([1] * 10, [1] * 10), "3")


class Black(torch.nn.Module):
    """A generator that paints every image black: far from every ground truth."""

    def __init__(self, g):
        super().__init__()
        self.g = g
        self.output, self.conditioning = g.output, g.conditioning

    def forward(self, x, c_trg, c_org=None, with_mask=False):
        out = torch.full_like(x, -1.0)
        return (out, None) if with_mask else out


def test_the_champion_and_the_challenger_are_judged_on_the_same_evidence(registered_model,
                                                                        celeba_root):
    client = MlflowClient()
    spec = DomainSpec.celeba()
    harness = Harness.build([str(celeba_root)], spec, 32, images=24, classifier_steps=20)
    champion_g = load_registered("models:/stargan-celeba@champion", "cpu").editor.g

    same = review("stargan-celeba", spec, 32, harness, harness.evaluate(champion_g),
                  torch.device("cpu"), client)
    assert same.outcome == "compared" and same.promote
    assert {m.verdict for m in same.comparison.metrics} == {"same"}
    assert [m.metric for m in same.comparison.metrics] == [
        "translation_accuracy", "preservation", "change_share_full", "psnr", "psnr_full"]

    black = review("stargan-celeba", spec, 32, harness, harness.evaluate(Black(champion_g)),
                   torch.device("cpu"), client)
    assert not black.promote
    assert {"change_share_full", "psnr", "psnr_full"} <= set(black.comparison.worse)

    other = review("stargan-celeba", DomainSpec.celeba(["Male"]), 32, harness, {},
                   torch.device("cpu"), client)
    assert other.outcome == "not comparable" and not other.promote
    assert review("stargan-rafd", spec, 32, harness, {}, torch.device("cpu"),
                  client).outcome == "first version"

    # Written into the version: tags a script reads, a section of the model card.
    record_review("stargan-celeba", "1", black, client)
    version = client.get_model_version("stargan-celeba", "1")
    assert version.tags[TAG] == "keep" and version.tags[f"{TAG}.champion"] == "1"
    assert version.tags[f"{TAG}.psnr"].endswith("worse)")
    assert version.description.startswith("an untrained generator for tests")
    assert "## Review against the champion: keep" in version.description
    assert "| psnr |" in version.description
