"""A verdict on every translation: did the edit take, was the rest kept, how much of the photo
changed. The judge is the attribute classifier that evaluated the version before it was
registered (`classifier.train_judge`: never D's head, which G was trained to please), logged
with it; a version logged before judges were gets verdicts with the changed share alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stargan_core.checkpoint import save_checkpoint
from stargan_core.domains import DomainSpec
from stargan_core.editing import Translation
from stargan_core.evaluation.classifier import AttributeClassifier
from stargan_core.evaluation.metrics import CHANGE_THRESHOLD
from stargan_core.targets import Target, kept

JUDGE_FORMAT = 1
NOT_TAKEN_BELOW = 0.5  # a verdict's confidence under which the edit did not take
VERDICT_FIELDS = ("target_probability", "kept_probability", "confidence", "changed_share")


@dataclass(frozen=True)
class Verdict:
    """One output's verdict: the judge's probability that it shows the target
    (`target_probability`) and that it keeps every domain the target leaves alone as the
    judge reads it on the input (`kept_probability`; 1 where the target leaves none), over
    all the faces of a photo the least; and the share of the output's pixels that differ
    from the input by more than `CHANGE_THRESHOLD` in any channel. Without a judge the two
    probabilities are None."""

    changed_share: float
    target_probability: float | None = None
    kept_probability: float | None = None

    @property
    def confidence(self) -> float | None:
        """That the edit took and nothing else moved: the product of the two probabilities."""
        if self.target_probability is None or self.kept_probability is None:
            return None
        return self.target_probability * self.kept_probability

    @property
    def not_taken(self) -> bool:
        """The judge finds the edit did not take (confidence under `NOT_TAKEN_BELOW`)."""
        return self.doubtful(NOT_TAKEN_BELOW)

    def doubtful(self, min_confidence: float) -> bool:
        """Below `min_confidence` (never, without a judge)."""
        confidence = self.confidence
        return confidence is not None and confidence < min_confidence


class Judge:
    """Per label set, the attribute classifier that reads a model's squares in [-1, 1]."""

    def __init__(self, spec: DomainSpec, image_size: int,
                 classifiers: dict[int, AttributeClassifier]) -> None:
        self.spec, self.image_size, self.classifiers = spec, image_size, classifiers

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(Path(path), {
            "format": JUDGE_FORMAT, "spec": self.spec.to_json(), "image_size": self.image_size,
            "classifiers": {str(i): c.state_dict() for i, c in self.classifiers.items()},
            "shape": {str(i): [c.width, c.depth] for i, c in self.classifiers.items()}})

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Judge:
        state = torch.load(path, map_location=device, weights_only=True)
        if state.get("format") != JUDGE_FORMAT:
            raise ValueError(f"{path} is not a judge of format {JUDGE_FORMAT}")
        spec = DomainSpec.from_json(state["spec"])
        classifiers = {}
        for key, weights in state["classifiers"].items():
            width, depth = state["shape"][key]
            clf = AttributeClassifier(spec.cls_dim, width, depth).to(device)
            clf.load_state_dict(weights)
            classifiers[int(key)] = clf.eval()
        return cls(spec, state["image_size"], classifiers)

    def to(self, device: torch.device | str) -> Judge:
        self.classifiers = {i: c.to(device) for i, c in self.classifiers.items()}
        return self

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Per domain, the probability that it is on: sigmoid, or softmax over a categorical
        label set."""
        out = torch.sigmoid(logits.float())
        for i, ls in enumerate(self.spec.label_sets):
            if ls.one_hot:
                out[:, self.spec.span(i)] = logits[:, self.spec.span(i)].float().softmax(1)
        return out

    @torch.inference_mode()
    def judge(self, translation: Translation, targets: list[Target]
              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per target, per region: the probability of the target and of the rest kept (NaN
        for a label set without a classifier)."""
        n = translation.x.size(0)
        reached, still = [], []
        read_input: dict[int, torch.Tensor] = {}
        for t, fakes in zip(targets, translation.fakes, strict=True):
            clf = self.classifiers.get(t.label_set)
            if clf is None:
                reached.append(torch.full((n,), float("nan")))
                still.append(torch.full((n,), float("nan")))
                continue
            if t.label_set not in read_input:
                read_input[t.label_set] = self.spec.labels_from_logits(
                    clf(translation.x).float())
            p = self.probabilities(clf(fakes))
            ls, offset = self.spec.label_sets[t.label_set], self.spec.span(t.label_set).start
            target = torch.ones(n, device=p.device)
            for name, value in t.values:
                on = p[:, offset + ls.domains.index(name)]
                target = target * (on if value else 1 - on)
            left = kept(self.spec, t)
            was = read_input[t.label_set][:, left]
            same = torch.where(was > 0.5, p[:, left], 1 - p[:, left]).prod(1)
            reached.append(target.cpu())
            still.append(same.cpu())
        return reached, still


def changed_share(output: torch.Tensor, input: torch.Tensor) -> float:
    """The share of pixels of a uint8 output that differ from its input (same size) by more
    than `CHANGE_THRESHOLD` in any channel."""
    differs = (output.int() - input.int()).abs().amax(0) > CHANGE_THRESHOLD * 255
    return float(differs.float().mean())


def _verdicts(translation: Translation, reached: list[torch.Tensor] | None,
              still: list[torch.Tensor] | None) -> list[list[Verdict]]:
    owners = torch.tensor(translation.owners)
    out = []
    for k, outputs in enumerate(translation.outputs):
        row = []
        for i, (output, input) in enumerate(zip(outputs, translation.inputs, strict=True)):
            share = changed_share(output, input)
            if reached is None or still is None or torch.isnan(reached[k][owners == i]).any():
                row.append(Verdict(share))
                continue
            row.append(Verdict(share, float(reached[k][owners == i].min()),
                               float(still[k][owners == i].min())))
        out.append(row)
    return out


def verdicts(judge: Judge | None, translation: Translation, targets: list[Target]
             ) -> list[list[Verdict]]:
    """Per target, per photo, its `Verdict`; with no judge, the changed share alone."""
    if judge is None:
        return _verdicts(translation, None, None)
    return _verdicts(translation, *judge.judge(translation, targets))
