"""A verdict on every translation: the judge's probabilities against the ground truth (the
true translation is confident, doing nothing and a smudge are not), the changed share, the
judge's file, and verdicts without a judge."""

from __future__ import annotations

import pytest
import torch

from stargan_core.data import read_dataset
from stargan_core.data.dataset import FaceDataset, held_out
from stargan_core.domains import DomainSpec
from stargan_core.editing import Translation, to_uint8
from stargan_core.evaluation import ground_truth_for, train_judge
from stargan_core.evaluation.verdicts import Judge, Verdict, changed_share, verdicts
from stargan_core.synthetic import write_celeba
from stargan_core.targets import parse_target


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Held-out synthetic faces, their ground truth and a judge trained on unseen faces."""
    root = write_celeba(tmp_path_factory.mktemp("verdicts") / "celeba", num_images=200, seed=3)
    raw = read_dataset(root)
    test = held_out(FaceDataset(raw.split("test") + raw.split("train"), raw.spec, raw.format,
                                32), 200)
    truth = ground_truth_for(str(root), 32)
    classifier = train_judge(raw.spec, 0, None, truth, images=1200, steps=500)
    return raw.spec, test, truth, Judge(raw.spec, 32, {0: classifier})


def translation(x: torch.Tensor, fakes: torch.Tensor) -> Translation:
    """A batch translated at model size (output_size=model): one region per photo."""
    return Translation(x, fakes, list(range(x.size(0))), list(to_uint8(x)),
                       [list(to_uint8(f)) for f in fakes])


def test_the_true_translation_is_confident_doing_nothing_and_a_smudge_are_not(judged):
    spec, test, truth, judge = judged
    target = parse_target(spec, "Black_Hair")
    blond = [i for i, c in enumerate(test.labels)
             if c[spec.domains.index("Blond_Hair")] == 1][:24]
    assert len(blond) >= 12
    x = test.images[blond]
    answer = torch.stack([truth.preprocess(truth.truths([test.ids[i]], target)[0])
                          for i in blond])
    smudge = x.clone()
    smudge[:, :, 2:12, 6:26] = smudge[:, :, 2:12, 6:26] * 0.4 - 0.5  # hair darkened, not black
    true, nothing, smudged = (verdicts(judge, translation(x, torch.stack([out])), [target])[0]
                              for out in (answer, x, smudge))

    def mean(found: list[Verdict], name: str) -> float:
        return sum(getattr(v, name) for v in found) / len(found)

    assert mean(true, "confidence") > 0.8, [v.confidence for v in true]
    assert mean(true, "kept_probability") > 0.8
    assert sum(v.not_taken for v in true) <= len(true) // 8
    assert mean(nothing, "target_probability") < 0.1
    assert all(v.changed_share == 0 and v.not_taken for v in nothing)
    assert mean(smudged, "confidence") < 0.5
    assert mean(true, "changed_share") > 0.05


def test_the_judge_is_saved_and_loaded_with_weights_only(judged, tmp_path):
    spec, test, _, judge = judged
    path = judge.save(tmp_path / "judge.pt")
    loaded = Judge.load(path)
    x = test.images[:8]
    assert torch.equal(loaded.classifiers[0](x), judge.classifiers[0](x))
    assert loaded.image_size == 32 and loaded.spec == spec
    (tmp_path / "other.pt").write_bytes(b"not a judge")
    with pytest.raises(Exception):  # noqa: B017  (whatever torch.load raises)
        Judge.load(tmp_path / "other.pt")


def test_without_a_judge_a_verdict_has_the_changed_share_alone():
    x = torch.zeros(2, 3, 8, 8)
    fake = x.clone()
    fake[0, :, :4] = 1.0  # half of the first photo changed
    fake[1, 0, 0, 0] = 0.02  # under the threshold: unchanged
    found = verdicts(None, translation(x, fake[None]),
                     [parse_target(DomainSpec.celeba(), "Male")])[0]
    assert [v.changed_share for v in found] == [0.5, 0.0]
    assert all(v.target_probability is None and v.confidence is None for v in found)
    assert not any(v.not_taken or v.doubtful(0.9) for v in found)
    assert changed_share(to_uint8(fake[0]), to_uint8(x[0])) == 0.5
