import pytest
import torch

from stargan_core.domains import (
    CELEBA_ATTRIBUTES,
    RAFD_EXPRESSIONS,
    DomainError,
    DomainSpec,
)
from stargan_core.targets import parse_target, single_targets, target_labels


def celeba_labels(**on):
    return {a: int(on.get(a, 0)) for a in CELEBA_ATTRIBUTES}


def test_celeba_default_selection_and_c_dim():
    spec = DomainSpec.celeba()
    assert spec.domains == ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")
    assert spec.c_dim == spec.cls_dim == 5
    assert spec.label_sets[0].exclusive == (("Black_Hair", "Blond_Hair", "Brown_Hair"),)
    c = spec.label_vector(celeba_labels(Brown_Hair=1, Young=1))
    assert c.tolist() == [0, 0, 1, 0, 1]


def test_rafd_one_hot_and_c_dim():
    spec = DomainSpec.rafd()
    assert spec.c_dim == 8
    c = spec.label_vector({"expression": "happy"})
    assert c.tolist() == [float(e == "happy") for e in RAFD_EXPRESSIONS]


def test_joint_spec_has_mask_vector():
    spec = DomainSpec.joint(DomainSpec.celeba(), DomainSpec.rafd())
    assert spec.cls_dim == 13 and spec.c_dim == 15
    celeba = spec.label_vector(celeba_labels(Blond_Hair=1, Male=1), label_set=0)
    assert celeba[:5].tolist() == [0, 1, 0, 1, 0]
    assert celeba[5:13].sum() == 0
    assert celeba[13:].tolist() == [1, 0]  # mask: CelebA labels are the known ones
    rafd = spec.label_vector({"expression": "sad"}, label_set=1)
    assert rafd[:5].sum() == 0 and rafd[5 + RAFD_EXPRESSIONS.index("sad")] == 1
    assert rafd[13:].tolist() == [0, 1]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Blond_Hair", [0, 1, 0, 1, 1]),  # one hair colour on switches the others off
        ("Male=0", [1, 0, 0, 0, 1]),
        ("Blond_Hair,Young=0", [0, 1, 0, 1, 0]),
        ("Brown_Hair=1, Male", [0, 0, 1, 1, 1]),
    ],
)
def test_targets_from_text(text, expected):
    spec = DomainSpec.celeba()
    c_org = torch.tensor([[1.0, 0, 0, 1, 1]])  # black hair, male, young
    assert target_labels(spec, c_org, text)[0].tolist() == expected


def test_categorical_targets_by_name_or_by_label():
    spec = DomainSpec.rafd()
    c_org = spec.label_vector({"expression": "neutral"})[None]
    for text in ("happy", "expression=happy"):
        c = target_labels(spec, c_org, text)
        assert c[0].tolist() == [float(e == "happy") for e in RAFD_EXPRESSIONS]


def test_joint_target_switches_label_set_and_mask():
    spec = DomainSpec.joint(DomainSpec.celeba(), DomainSpec.rafd())
    c_org = spec.label_vector(celeba_labels(Black_Hair=1, Young=1), 0)[None]
    c = target_labels(spec, c_org, "happy")[0]
    assert c[:5].sum() == 0  # CelebA part unknown when the target is an expression
    assert c[5 + RAFD_EXPRESSIONS.index("happy")] == 1
    assert c[13:].tolist() == [0, 1]
    c = target_labels(spec, c_org, "Blond_Hair")[0]
    assert c[:5].tolist() == [0, 1, 0, 0, 1] and c[13:].tolist() == [1, 0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("Blond",
         r"unknown domain 'Blond' \(known: Black_Hair, Blond_Hair, Brown_Hair, Male, Young\)"),
        ("Male=2", "must be 0 or 1"),
        ("Male,Male=0", "both to 0 and to 1"),
        ("Blond_Hair,Black_Hair", "exclude each other"),
        ("Blond_Hair=0", "name the domain you want instead"),
        ("", "empty target"),
    ],
)
def test_bad_targets_name_the_valid_ones(text, message):
    with pytest.raises(DomainError, match=message):
        parse_target(DomainSpec.celeba(), text)


def test_target_mixing_data_sets_is_rejected():
    spec = DomainSpec.joint(DomainSpec.celeba(), DomainSpec.rafd())
    with pytest.raises(DomainError, match="mixes domains of celeba and rafd"):
        parse_target(spec, "Blond_Hair,happy")


def test_unknown_celeba_attribute_lists_all_forty():
    with pytest.raises(DomainError) as err:
        DomainSpec.celeba(["Blond_Hair", "Purple_Hair"])
    assert "'Purple_Hair'" in str(err.value) and "Wearing_Necktie" in str(err.value)


def test_spec_round_trips_through_json():
    for spec in (
        DomainSpec.celeba(["Blond_Hair", "Gray_Hair", "Smiling"]),
        DomainSpec.rafd(),
        DomainSpec.categorical("pets", ["cat", "dog", "fox"]),
        DomainSpec.joint(DomainSpec.celeba(), DomainSpec.rafd()),
    ):
        assert DomainSpec.from_json(spec.to_json()) == spec


def test_single_targets_cover_every_domain():
    texts = [t.text for t in single_targets(DomainSpec.celeba())]
    assert texts == ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Male=0", "Young",
                     "Young=0"]
    assert [t.text for t in single_targets(DomainSpec.rafd())] == list(RAFD_EXPRESSIONS)


def test_labels_from_logits_respects_groups():
    spec = DomainSpec.celeba()
    logits = torch.tensor([[2.0, 3.0, -1.0, 0.5, -0.5]])  # two hair colours look "on"
    assert spec.labels_from_logits(logits)[0].tolist() == [0, 1, 0, 1, 0]
    rafd = DomainSpec.rafd()
    assert rafd.labels_from_logits(torch.arange(8.0)[None])[0].argmax() == 7
