"""A judge that cannot be fooled: the share of the true change made, which a smudge does not
earn, and an attribute classifier that learns from unseen faces with generator-like artefacts
painted in, which a smudge where the attribute lives does not flip."""

from pathlib import Path

import pytest
import torch

from stargan_core.data import read_dataset, read_rafd
from stargan_core.data.dataset import FaceDataset, held_out
from stargan_core.domains import RAFD_EXPRESSIONS, DomainSpec
from stargan_core.evaluation import Artefacts, ground_truth_for, predict_labels, train_judge
from stargan_core.evaluation.metrics import evaluate, true_change
from stargan_core.io.images import decode_rgb
from stargan_core.preprocessing import Preprocessing
from stargan_core.synthetic import SyntheticRafd, write_celeba, write_rafd


def blob(image, cy, cx, ry, rx, colour, strength=0.8):
    """`image` (3, H, W in [-1, 1]) with a soft ellipse of `colour` painted over it."""
    h, w = image.shape[-2:]
    yy, xx = torch.arange(h)[:, None].float(), torch.arange(w)[None, :].float()
    weight = torch.exp(-2 * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)) * strength
    return image + weight * (torch.tensor(colour)[:, None, None] - image)


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = write_celeba(tmp_path_factory.mktemp("judge") / "celeba", num_images=300, seed=2)
    raw = read_dataset(root)
    test = held_out(FaceDataset(raw.split("test") + raw.split("train")[:170], raw.spec,
                                raw.format, 32), 200)
    return root, raw.spec, test, ground_truth_for(str(root), 32)


def test_the_share_of_the_true_change_is_one_for_the_truth_and_nothing_for_a_smudge(celeba):
    _, spec, test, truth = celeba
    women = [i for i, c in enumerate(test.labels) if c[spec.domains.index("Male")] == 0][:20]
    x = (test.images[women] + 1) / 2
    answer = torch.stack([truth.preprocess(truth.synthetic.truth(test.ids[i], {"Male": 1}))
                          for i in women])
    answer = (answer + 1) / 2
    share, outside = true_change(answer, x, answer)
    assert torch.allclose(share, torch.ones_like(share)) and outside.max() == 0
    share, outside = true_change(x, x, answer)  # doing nothing
    assert share.abs().max() < 1e-6 and outside.max() < 0.01
    # Half of the change (the output halfway between input and truth): half the share.
    share, _ = true_change((x + answer) / 2, x, answer)
    assert torch.allclose(share, torch.full_like(share, 0.5), atol=1e-4)
    # What G painted for `Male`: a dark smudge on the chin, lips and brows left as they were.
    smudged = torch.stack([(blob(im * 2 - 1, 24, 16, 3, 6, [-0.7, -0.75, -0.75]) + 1) / 2
                           for im in x])
    share, outside = true_change(smudged, x, answer)
    assert share.mean() < 0.15, share  # a stroke of stubble is not a man's short hair
    noise = torch.rand_like(x)
    share, outside = true_change(noise, x, answer)
    assert share.mean() < 0 and outside.mean() > 0.2  # further off than doing nothing


def test_the_judge_learns_unseen_faces_and_a_smudge_where_the_attribute_lives_does_not_flip_it(
        celeba):
    _, spec, test, truth = celeba
    unseen = truth.unseen(spec, 0, 1200)
    # None of the judge's faces is one of the set's: another seed draws other faces.
    assert not any(torch.equal(unseen.tensors[0][i], test.images[j])
                   for i in range(50) for j in range(len(test)))
    judge = train_judge(spec, 0, None, truth, images=1200, steps=500)
    labels = test.labels
    male, young = spec.domains.index("Male"), spec.domains.index("Young")
    assert (predict_labels(judge, spec, test.images) == labels).float().mean() >= 0.95

    def kept(select, smudge, domain):
        images = torch.stack([smudge(im) for im in test.images[select]])
        return (predict_labels(judge, spec, images)[:, domain] == labels[select, domain]
                ).float().mean()

    women, men = labels[:, male] == 0, labels[:, male] == 1
    skin = [0.8, 0.5, 0.3]
    # G's failures as its pictures showed them, each where the attribute lives.
    assert kept(women, lambda im: blob(im, 24, 16, 3, 6, [-0.7, -0.75, -0.75]), male) >= 0.85
    assert kept(men, lambda im: blob(im, 21.5, 16, 1.5, 3, [0.6, -0.8, -0.6]), male) >= 0.9
    # Two cues at once (the chin cleared, the lips reddened) flip it more often than one.
    assert kept(men, lambda im: blob(blob(im, 24, 16, 3, 6, skin, 0.6), 21.5, 16, 1.5, 3,
                                     [0.6, -0.8, -0.6]), male) >= 0.75
    assert kept(labels[:, young] == 1,
                lambda im: blob(im, 14.5, 16, 2, 8, [0.25, 0.25, 0.25], 0.7), young) >= 0.9


def test_artefacts_go_where_the_change_of_a_domain_would_be():
    x = torch.zeros(64, 3, 16, 16)
    changed = x.clone()
    changed[:, :, 4:12, 4:12] = 1.0  # the change lives in the middle
    out = Artefacts(rate=1.0)(x, changed, torch.Generator().manual_seed(1))
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[4:12, 4:12] = False
    assert out[:, :, outside].abs().max() == 0  # nothing painted where the change is not
    assert (out.abs().flatten(1).sum(1) > 0).float().mean() > 0.6
    anywhere = Artefacts(rate=1.0)(x, None, torch.Generator().manual_seed(1))
    assert anywhere[:, :, outside].abs().sum() > 0


def test_synthetic_rafd_photos_are_face_filling_crops_with_exact_truth(tmp_path):
    write_rafd(tmp_path, num_identities=3, seed=4, test_identities=1)
    samples, others = read_rafd(str(tmp_path))
    assert not others  # synthetic.json is the set's description, not a stray input
    synthetic = SyntheticRafd.read(str(tmp_path))
    sample = next(s for s in samples if s.labels["expression"] == "neutral")
    stored = Path(sample.path).read_bytes()
    assert synthetic.input_photo(sample.path) == stored
    assert synthetic.truth(sample.path, {"neutral": 1}) is None  # nothing would change
    frame = Preprocessing("center", 32)
    x = frame(decode_rgb(stored))
    for expression in RAFD_EXPRESSIONS:
        if expression == "neutral":
            continue
        answer = frame(decode_rgb(synthetic.truth(sample.path, {expression: 1})))
        changed = (answer - x).abs().amax(0) > 0.1
        # At 32 px every expression is there to see: the face fills the frame, as in RaFD's
        # crops, and the change is the expression's alone (rows of the mouth and eyes).
        assert changed.sum() >= 10, (expression, int(changed.sum()))
        rows = changed.any(1).nonzero().flatten()
        assert rows.min() >= 8 and rows.max() <= 28, (expression, rows)
    # The judge's RaFD faces are other identities' photos, labelled by expression.
    truth = ground_truth_for(str(tmp_path), 32)
    spec = DomainSpec.rafd()
    unseen = truth.unseen(spec, 0, 30)
    assert len(unseen) == 30 and unseen.tensors[1].sum(1).eq(1).all()
    assert not torch.equal(unseen.tensors[0], unseen.tensors[2])


def test_a_joint_models_faces_are_measured_in_the_other_data_sets_targets_too(celeba):
    """Figure 5 of the paper: CelebA faces given RaFD's expressions. The synthetic faces draw
    the truth of those edits as well; doing nothing makes none of it."""
    root, _, _, truth = celeba
    raw = read_dataset(root)
    spec = DomainSpec.joint(raw.spec, DomainSpec.rafd())
    test = held_out(FaceDataset(raw.split("test"), spec, raw.format, 32), 12)
    assert truth.synthetic.truth(test.ids[0], {"surprised": 1}) not in (
        None, truth.synthetic.photo(truth.synthetic.index_of(test.ids[0])))

    class Nothing(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # for the device

        def forward(self, x, c_trg, c_org):
            return x

    judge = train_judge(spec, 0, None, truth, images=64, steps=5)
    result = evaluate(Nothing(), judge, spec, test, 0, truth=truth, cross=True)
    metrics = result.metrics()
    assert set(result.cross) == set(RAFD_EXPRESSIONS)
    assert metrics["eval/cross/change_share_full/surprised"] == 0
    assert metrics["eval/cross/psnr_full/surprised"] == pytest.approx(
        metrics["eval/cross/psnr_full_do_nothing/surprised"])
    # A smiling face made happy draws what it was: no truth, the pair left out.
    assert result.cross["happy"].truth_pairs < result.cross["surprised"].truth_pairs
