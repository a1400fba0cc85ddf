"""How users' targets become label vectors: `Blond_Hair`, `Male=0`, `Blond_Hair,Young=0`,
`happy` or `expression=happy` parsed against a model's `DomainSpec`, the target labels of a
batch, the single-domain targets a model offers, and which labels a target leaves alone."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from stargan_core.domains import DomainError, DomainSpec


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


def parse_target(spec: DomainSpec, text: str) -> Target:
    """Parse `Blond_Hair`, `Male=0`, `Blond_Hair,Young=0`, `happy` or `expression=happy`."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise DomainError(f"empty target (known domains: {', '.join(spec.domains)})")
    values: dict[str, int] = {}
    sets: set[int] = set()
    for part in parts:
        name, value = _parse_assignment(spec, part)
        index = next(i for i, ls in enumerate(spec.label_sets) if name in ls.domains)
        if name in values and values[name] != value:
            raise DomainError(f"target '{text}' sets {name} both to 0 and to 1")
        values[name] = value
        sets.add(index)
    if len(sets) > 1:
        names = " and ".join(spec.label_sets[i].dataset for i in sorted(sets))
        raise DomainError(f"target '{text}' mixes domains of {names}; name one data set's")
    index = sets.pop()
    ls = spec.label_sets[index]
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

def _parse_assignment(spec: DomainSpec, part: str) -> tuple[str, int]:
    name, _, value = part.partition("=")
    name, value = name.strip(), value.strip()
    categories = {ls.category: ls for ls in spec.label_sets if ls.category}
    if name in categories and value:
        # `expression=happy`: a categorical label named with its value.
        name, value = value, "1"
    if name not in spec.domains:
        raise DomainError(f"unknown domain '{name}' (known: {', '.join(spec.domains)})")
    if value not in ("", "1", "0"):
        raise DomainError(f"target value for {name} must be 0 or 1, got '{value}'")
    return name, 0 if value == "0" else 1

def target_labels(spec: DomainSpec, c_org: torch.Tensor, target: Target | str) -> torch.Tensor:
    """Target labels for a batch with source labels `c_org` (batch x c_dim).

    Domains the target does not name keep their source value; switching a member of an
    exclusive group on switches the rest of its group off.
    """
    if isinstance(target, str):
        target = parse_target(spec, target)
    ls = spec.label_sets[target.label_set]
    c = spec.with_label_set(c_org.clone(), target.label_set)
    offset = spec.span(target.label_set).start
    for name, value in target.values:
        group = ls.group_of(name)
        if group is not None and value:
            for other in group:
                c[:, offset + ls.domains.index(other)] = 0.0
        c[:, offset + ls.domains.index(name)] = float(value)
    return c

def single_targets(spec: DomainSpec) -> list[Target]:
    """Every single-domain target: each grouped domain, each binary attribute both ways."""
    texts = []
    for ls in spec.label_sets:
        for d in ls.domains:
            texts.append(d)
            if ls.group_of(d) is None:
                texts.append(f"{d}=0")
    return [parse_target(spec, t) for t in texts]

def kept(spec: DomainSpec, target: Target) -> list[int]:
    """Positions in the label vector of the domains that `target` leaves alone: those of
    its label set that it neither names nor switches off through an exclusive group (none
    for a categorical set, whose one label the target sets)."""
    ls = spec.label_sets[target.label_set]
    if ls.one_hot:
        return []
    touched = set()
    for name, _ in target.values:
        touched.update(ls.group_of(name) or (name,))
    offset = spec.span(target.label_set).start
    return [offset + i for i, d in enumerate(ls.domains) if d not in touched]

def satisfies(spec: DomainSpec, labels: torch.Tensor, target: Target) -> torch.Tensor:
    """Per row of hard `labels` (batch x cls_dim or c_dim): does it have the target's values?"""
    offset = spec.span(target.label_set).start
    ls = spec.label_sets[target.label_set]
    ok = torch.ones(labels.size(0), dtype=torch.bool, device=labels.device)
    for name, value in target.values:
        ok &= labels[:, offset + ls.domains.index(name)] == float(value)
    return ok
