"""Label spaces of StarGAN models: which domains a model knows (how users' targets become label
vectors is `targets.py`).

A `DomainSpec` is one or more `LabelSet`s. A label set is either binary attributes (CelebA:
each domain is its own 0/1 column, trained with BCE; some attributes form a mutually exclusive
group such as hair colour) or one categorical label (RaFD's expression, an ImageFolder's folder
name: one-hot, trained with cross-entropy). Two label sets make a joint model: the label vector
is both sets' labels followed by the mask vector, which says which set is known (paper, Sec. 3.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)
CELEBA_HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
CELEBA_DEFAULT_DOMAINS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")
RAFD_EXPRESSIONS = (
    "angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised",
)


class DomainError(ValueError):
    """A domain or target name that the spec does not know, or a contradictory target."""


@dataclass(frozen=True)
class LabelSet:
    """The domains of one data set, in label-vector order."""

    dataset: str
    domains: tuple[str, ...]
    # Binary sets: groups of domains of which at most one is on (hair colour).
    exclusive: tuple[tuple[str, ...], ...] = ()
    # Categorical sets: the name of the one label whose values the domains are (one-hot).
    category: str | None = None

    @property
    def one_hot(self) -> bool:
        return self.category is not None

    def group_of(self, domain: str) -> tuple[str, ...] | None:
        if self.one_hot:
            return self.domains
        return next((g for g in self.exclusive if domain in g), None)

    def label_vector(self, labels: Mapping[str, object]) -> list[float]:
        """The label vector of one sample from its raw labels (attribute columns or category)."""
        if self.one_hot:
            value = labels.get(self.category)
            if value not in self.domains:
                raise DomainError(
                    f"{self.category} '{value}' is not a domain of {self.dataset} "
                    f"(known: {', '.join(self.domains)})"
                )
            return [float(d == value) for d in self.domains]
        missing = [d for d in self.domains if d not in labels]
        if missing:
            raise DomainError(f"sample has no label for {', '.join(missing)}")
        return [float(int(labels[d]) > 0) for d in self.domains]


@dataclass(frozen=True)
class DomainSpec:
    """The label space of a model; travels with its checkpoints as JSON."""

    label_sets: tuple[LabelSet, ...]

    def __post_init__(self) -> None:
        if not self.label_sets:
            raise ValueError("a DomainSpec needs at least one label set")
        names = [d for ls in self.label_sets for d in ls.domains]
        duplicated = sorted({d for d in names if names.count(d) > 1})
        if duplicated:
            raise ValueError(f"domain names must be unique across label sets: {duplicated}")

    # --- constructors -------------------------------------------------------------------------

    @classmethod
    def celeba(cls, domains: Sequence[str] = CELEBA_DEFAULT_DOMAINS) -> DomainSpec:
        domains = tuple(domains)
        unknown = [d for d in domains if d not in CELEBA_ATTRIBUTES]
        if unknown:
            raise DomainError(
                f"unknown CelebA attribute {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(CELEBA_ATTRIBUTES)})"
            )
        if not domains:
            raise DomainError("select at least one CelebA attribute")
        hair = tuple(d for d in domains if d in CELEBA_HAIR_COLOURS)
        exclusive = (hair,) if len(hair) > 1 else ()
        return cls((LabelSet("celeba", domains, exclusive=exclusive),))

    @classmethod
    def rafd(cls) -> DomainSpec:
        return cls((LabelSet("rafd", RAFD_EXPRESSIONS, category="expression"),))

    @classmethod
    def categorical(cls, dataset: str, domains: Sequence[str]) -> DomainSpec:
        """Custom domains, e.g. an ImageFolder's folder names."""
        if len(domains) < 2:
            raise DomainError(f"{dataset} needs at least two domains, found {list(domains)}")
        return cls((LabelSet(dataset, tuple(domains), category="domain"),))

    @classmethod
    def joint(cls, *specs: DomainSpec) -> DomainSpec:
        return cls(tuple(ls for spec in specs for ls in spec.label_sets))

    # --- sizes --------------------------------------------------------------------------------

    @property
    def is_joint(self) -> bool:
        return len(self.label_sets) > 1

    @property
    def cls_dim(self) -> int:
        """Outputs of D's domain classifier: every domain of every label set."""
        return sum(len(ls.domains) for ls in self.label_sets)

    @property
    def c_dim(self) -> int:
        """Length of G's label input: the domains plus, for joint models, the mask vector."""
        return self.cls_dim + (len(self.label_sets) if self.is_joint else 0)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(d for ls in self.label_sets for d in ls.domains)

    def span(self, index: int) -> slice:
        """Where label set `index` sits in the label vector and in D's classifier output."""
        start = sum(len(ls.domains) for ls in self.label_sets[:index])
        return slice(start, start + len(self.label_sets[index].domains))

    def index_of(self, dataset: str) -> int:
        for i, ls in enumerate(self.label_sets):
            if ls.dataset == dataset:
                return i
        known = ", ".join(ls.dataset for ls in self.label_sets)
        raise DomainError(f"this model has no label set '{dataset}' (known: {known})")

    # --- label vectors ------------------------------------------------------------------------

    def label_vector(self, labels: Mapping[str, object], label_set: int = 0) -> torch.Tensor:
        """G's label input for a sample of label set `label_set`; other sets and mask are zero."""
        c = torch.zeros(self.c_dim)
        c[self.span(label_set)] = torch.tensor(self.label_sets[label_set].label_vector(labels))
        if self.is_joint:
            c[self.cls_dim + label_set] = 1.0
        return c

    def with_label_set(self, c: torch.Tensor, label_set: int) -> torch.Tensor:
        """Labels `c` (batch x c_dim) with every label set but `label_set` zeroed, mask set."""
        if not self.is_joint:
            return c
        out = torch.zeros_like(c)
        out[:, self.span(label_set)] = c[:, self.span(label_set)]
        out[:, self.cls_dim + label_set] = 1.0
        return out

    def labels_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard labels (batch x cls_dim) from domain-classifier logits: sigmoid or argmax."""
        out = torch.zeros_like(logits)
        for i, ls in enumerate(self.label_sets):
            part = logits[:, self.span(i)]
            if ls.one_hot:
                out[:, self.span(i)] = torch.nn.functional.one_hot(
                    part.argmax(1), part.size(1)
                ).to(out.dtype)
            else:
                hard = (part > 0).to(out.dtype)
                for group in ls.exclusive:
                    # At most one colour: keep only the most confident one that is on.
                    idx = [ls.domains.index(d) for d in group]
                    best = part[:, idx].argmax(1)
                    keep = torch.nn.functional.one_hot(best, len(idx)).to(out.dtype)
                    hard[:, idx] = hard[:, idx] * keep
                out[:, self.span(i)] = hard
        return out

    # --- serialisation ------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "label_sets": [
                    {
                        "dataset": ls.dataset,
                        "domains": list(ls.domains),
                        "exclusive": [list(g) for g in ls.exclusive],
                        "category": ls.category,
                    }
                    for ls in self.label_sets
                ]
            }
        )

    @classmethod
    def from_json(cls, text: str) -> DomainSpec:
        data = json.loads(text)
        return cls(
            tuple(
                LabelSet(
                    d["dataset"],
                    tuple(d["domains"]),
                    exclusive=tuple(tuple(g) for g in d.get("exclusive", [])),
                    category=d.get("category"),
                )
                for d in data["label_sets"]
            )
        )
