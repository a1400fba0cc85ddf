"""Label spaces of StarGAN models: which domains a model knows and how targets become labels.

A `DomainSpec` is one or more `LabelSet`s. A label set is either binary attributes (CelebA:
each domain is its own 0/1 column, trained with BCE; some attributes form a mutually exclusive
group such as hair colour) or one categorical label (RaFD's expression, an ImageFolder's folder
name: one-hot, trained with cross-entropy). Two label sets make a joint model: the label vector
is both sets' labels followed by the mask vector, which says which set is known (paper, Sec. 3.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
class Target:
    """A parsed target such as `Blond_Hair,Young=0`: the domains it sets and their values."""

    text: str
    label_set: int
    values: tuple[tuple[str, int], ...] = field(default=())

    @property
    def slug(self) -> str:
        """A file-system friendly name: commas become '+'."""
        return self.text.replace(",", "+").replace(" ", "")


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

    # --- targets ------------------------------------------------------------------------------

    def parse_target(self, text: str) -> Target:
        """Parse `Blond_Hair`, `Male=0`, `Blond_Hair,Young=0`, `happy` or `expression=happy`."""
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise DomainError(f"empty target (known domains: {', '.join(self.domains)})")
        values: dict[str, int] = {}
        sets: set[int] = set()
        for part in parts:
            name, value = self._parse_assignment(part)
            index = next(i for i, ls in enumerate(self.label_sets) if name in ls.domains)
            if name in values and values[name] != value:
                raise DomainError(f"target '{text}' sets {name} both to 0 and to 1")
            values[name] = value
            sets.add(index)
        if len(sets) > 1:
            names = " and ".join(self.label_sets[i].dataset for i in sorted(sets))
            raise DomainError(f"target '{text}' mixes domains of {names}; name one data set's")
        index = sets.pop()
        ls = self.label_sets[index]
        for name, value in values.items():
            group = ls.group_of(name)
            if group is None:
                continue
            if value == 0:
                others = ", ".join(d for d in group if d != name)
                raise DomainError(
                    f"target '{text}': {name} belongs to a mutually exclusive group; "
                    f"name the domain you want instead ({others})"
                )
            on = [d for d in group if values.get(d) == 1]
            if len(on) > 1:
                raise DomainError(
                    f"target '{text}' turns on {' and '.join(on)}, which exclude each other"
                )
        return Target(text, index, tuple(values.items()))

    def _parse_assignment(self, part: str) -> tuple[str, int]:
        name, _, value = part.partition("=")
        name, value = name.strip(), value.strip()
        categories = {ls.category: ls for ls in self.label_sets if ls.category}
        if name in categories and value:
            # `expression=happy`: a categorical label named with its value.
            name, value = value, "1"
        if name not in self.domains:
            raise DomainError(f"unknown domain '{name}' (known: {', '.join(self.domains)})")
        if value not in ("", "1", "0"):
            raise DomainError(f"target value for {name} must be 0 or 1, got '{value}'")
        return name, 0 if value == "0" else 1

    def target_labels(self, c_org: torch.Tensor, target: Target | str) -> torch.Tensor:
        """Target labels for a batch with source labels `c_org` (batch x c_dim).

        Domains the target does not name keep their source value; switching a member of an
        exclusive group on switches the rest of its group off.
        """
        if isinstance(target, str):
            target = self.parse_target(target)
        ls = self.label_sets[target.label_set]
        c = self.with_label_set(c_org.clone(), target.label_set)
        offset = self.span(target.label_set).start
        for name, value in target.values:
            group = ls.group_of(name)
            if group is not None and value:
                for other in group:
                    c[:, offset + ls.domains.index(other)] = 0.0
            c[:, offset + ls.domains.index(name)] = float(value)
        return c

    def single_targets(self) -> list[Target]:
        """Every single-domain target: each grouped domain, each binary attribute both ways."""
        texts = []
        for ls in self.label_sets:
            for d in ls.domains:
                texts.append(d)
                if ls.group_of(d) is None:
                    texts.append(f"{d}=0")
        return [self.parse_target(t) for t in texts]

    def kept(self, target: Target) -> list[int]:
        """Positions in the label vector of the domains that `target` leaves alone: those of
        its label set that it neither names nor switches off through an exclusive group (none
        for a categorical set, whose one label the target sets)."""
        ls = self.label_sets[target.label_set]
        if ls.one_hot:
            return []
        touched = set()
        for name, _ in target.values:
            touched.update(ls.group_of(name) or (name,))
        offset = self.span(target.label_set).start
        return [offset + i for i, d in enumerate(ls.domains) if d not in touched]

    def satisfies(self, labels: torch.Tensor, target: Target) -> torch.Tensor:
        """Per row of hard `labels` (batch x cls_dim or c_dim): does it have the target's values?"""
        offset = self.span(target.label_set).start
        ls = self.label_sets[target.label_set]
        ok = torch.ones(labels.size(0), dtype=torch.bool, device=labels.device)
        for name, value in target.values:
            ok &= labels[:, offset + ls.domains.index(name)] == float(value)
        return ok

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
