"""What a translation is worth, measured the same way on any generator.

For every held-out image and every single target that changes its labels:

- target accuracy: the independent attribute classifier finds the target in G(x, c');
- preservation: every domain the target leaves alone keeps the value the classifier read off
  the input (a target that only recolours hair must not change gender or age);
- with ground truth (synthetic faces): PSNR and L1 of G(x, c') to the exact answer, beside the
  same for the untouched input (the do-nothing baseline, which a model worth running beats),
  at model resolution and at the photo's full size (the edit carried back, `editing`);
- the share of the true change made, where the truth differs from the input:
  1 - L1(output, truth) / L1(input, truth) over those pixels (1: the true edit, 0: nothing
  or as far off as nothing, below 0: further off), and the L1 to the truth everywhere else
  (what was changed that should not have been). A classifier can be fooled by a smudge
  where the attribute lives; the true change cannot: a smudge scores 0 or less.

Only pairs whose labels the target changes count, so an identity mapping scores ~0 accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from stargan_core.data.dataset import HeldOut
from stargan_core.domains import DomainSpec
from stargan_core.editing import Editor
from stargan_core.evaluation.classifier import predict_labels
from stargan_core.evaluation.ground_truth import GroundTruth
from stargan_core.io.images import decode_rgb
from stargan_core.preprocessing import Preprocessing
from stargan_core.targets import Target, kept, satisfies, single_targets, target_labels

# Fidelity measures, each for the translation and for doing nothing, at model and full size.
FIDELITY = ("psnr", "l1", "psnr_full", "l1_full")
# The true change: its share made, and the L1 outside it (model and full size; no do-nothing
# beside them: doing nothing makes none of the change and changes nothing outside it).
CHANGE = ("change_share", "l1_outside", "change_share_full", "l1_outside_full")
MAX_PSNR = 100.0  # dB, for an exact match
# Where the truth differs from the input by more than this (in [0, 1] units, any channel) the
# pixel belongs to the true change; below it, JPEG's own differences between the two files.
CHANGE_THRESHOLD = 0.05


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, in dB, of images in [0, 1] (batch, C, H, W)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return (-10 * torch.log10(mse.clamp_min(10 ** (-MAX_PSNR / 10))))


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, mean absolute difference of images in [0, 1]."""
    return (a.float() - b.float()).abs().flatten(1).mean(1)


def true_change(output: torch.Tensor, x: torch.Tensor, truth: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (batch, C, H, W in [0, 1]): the share of the true change `truth - x` that
    `output` made, and the L1 of `output` to the truth outside the change. The share is NaN
    for an image the truth does not change."""
    output, x, truth = output.float(), x.float(), truth.float()
    region = ((truth - x).abs().amax(1, keepdim=True) > CHANGE_THRESHOLD).float()
    missed = ((output - truth).abs() * region).flatten(1).sum(1)
    needed = ((x - truth).abs() * region).flatten(1).sum(1)
    share = torch.where(needed > 0, 1 - missed / needed.clamp_min(1e-12), math.nan)
    outside = 1 - region
    l1_out = ((output - truth).abs() * outside).flatten(1).sum(1) / (
        outside.flatten(1).sum(1) * output.size(1)).clamp_min(1)
    return share, l1_out


@dataclass
class TargetScores:
    """Counts and sums over one target's (image, target) pairs."""

    pairs: int = 0  # pairs whose labels the target changes
    hits: int = 0  # ... in whose translation the classifier finds the target
    untranslated: int = 0  # ... whose input already shows the target to the classifier
    preserved: int = 0  # ... whose other domains all keep their values
    truth_pairs: int = 0  # ... that have a ground truth
    sums: dict[str, float] = field(default_factory=dict)  # fidelity sums over truth_pairs
    # Per pair, in evaluation order: what a paired comparison of two generators needs.
    outcomes: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, values: torch.Tensor) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(values.sum())
        self.record(name, values)

    def record(self, name: str, values: torch.Tensor) -> None:
        self.outcomes.setdefault(name, []).extend(values.float().tolist())

    def mean(self, name: str) -> float:
        return self.sums.get(name, math.nan) / self.truth_pairs if self.truth_pairs else math.nan

    def add_change(self, suffix: str, output: torch.Tensor, x: torch.Tensor,
                   truth: torch.Tensor) -> None:
        """The true change's share and the L1 outside it (`suffix`: '' or '_full')."""
        share, outside = true_change(output, x, truth)
        self.add(f"change_share{suffix}", share.nan_to_num(0.0))
        self.add(f"l1_outside{suffix}", outside)


@dataclass
class Evaluation:
    """Metrics of one generator on held-out images (reconstruction L1 in [-1, 1] pixel units,
    fidelity L1 in [0, 1] units, PSNR in dB)."""

    targets: dict[str, TargetScores]
    real_accuracy: float
    reconstruction_l1: float
    per_domain_real_accuracy: dict[str, float] = field(default_factory=dict)
    preserves: bool = True  # whether the label set has domains a target can leave alone
    # A joint model's translations into the other label sets' targets (CelebA faces into
    # expressions), measured against the ground truth alone: the judge knows this set only.
    cross: dict[str, TargetScores] = field(default_factory=dict)

    def _rate(self, part: str) -> dict[str, float]:
        return {t: getattr(s, part) / s.pairs for t, s in self.targets.items() if s.pairs}

    def _mean(self, part: str) -> float:
        total = sum(s.pairs for s in self.targets.values())
        return sum(getattr(s, part) for s in self.targets.values()) / max(total, 1)

    @property
    def pairs(self) -> dict[str, int]:
        return {t: s.pairs for t, s in self.targets.items() if s.pairs}

    @property
    def translation_accuracy(self) -> dict[str, float]:
        return self._rate("hits")

    @property
    def untranslated_rate(self) -> dict[str, float]:
        return self._rate("untranslated")

    @property
    def preservation(self) -> dict[str, float]:
        return self._rate("preserved")

    @property
    def mean_translation_accuracy(self) -> float:
        """Over all (image, target) pairs, not over targets."""
        return self._mean("hits")

    @property
    def mean_untranslated_rate(self) -> float:
        return self._mean("untranslated")

    @property
    def mean_preservation(self) -> float:
        return self._mean("preserved")

    @property
    def has_truth(self) -> bool:
        return any(s.truth_pairs for s in self.targets.values())

    def fidelity(self, name: str) -> float:
        """`psnr`, `l1`, `psnr_full`, ... (or `..._do_nothing`) over every pair with a truth."""
        total = sum(s.truth_pairs for s in self.targets.values())
        found = sum(s.sums.get(name, 0.0) for s in self.targets.values())
        return found / total if total else math.nan

    def metrics(self) -> dict[str, float]:
        """Flat metric names for trackers: `eval/translation_accuracy/<target>` and friends.

        Targets are written as MLflow allows in names: `Male=0` as `Male:0`, `A,B` as `A and B`.
        """
        def name(t: str) -> str:
            return t.replace("=", ":").replace(",", " and ")

        out = {
            "eval/translation_accuracy": self.mean_translation_accuracy,
            "eval/untranslated_rate": self.mean_untranslated_rate,
            "eval/real_accuracy": self.real_accuracy,
            "eval/reconstruction_l1": self.reconstruction_l1,
        }
        per_target = {"translation_accuracy": self.translation_accuracy}
        if self.preserves:
            out["eval/preservation"] = self.mean_preservation
            per_target["preservation"] = self.preservation
        if self.has_truth:
            keys = [k for m in FIDELITY for k in (m, f"{m}_do_nothing")] + [
                k for k in CHANGE if any(k in s.sums for s in self.targets.values())]
            for key in keys:
                out[f"eval/{key}"] = self.fidelity(key)
                per_target[key] = {t: s.mean(key) for t, s in self.targets.items()
                                   if s.truth_pairs}
        for metric, values in per_target.items():
            out |= {f"eval/{metric}/{name(t)}": v for t, v in values.items()}
        if any(s.truth_pairs for s in self.cross.values()):
            cross = Evaluation(self.cross, math.nan, math.nan)
            for key in ("change_share_full", "l1_outside_full", "psnr_full",
                        "psnr_full_do_nothing"):
                out[f"eval/cross/{key}"] = cross.fidelity(key)
                out |= {f"eval/cross/{key}/{name(t)}": s.mean(key)
                        for t, s in self.cross.items() if s.truth_pairs}
        return out


Translate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _denorm(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


@torch.inference_mode()
def evaluate(
    g: nn.Module, clf: nn.Module, spec: DomainSpec, dataset: HeldOut, label_set: int = 0,
    targets: Sequence[Target] | None = None, batch_size: int = 32,
    device: str | torch.device = "cpu", truth: GroundTruth | None = None,
    full_size: bool = True, cross: bool = False,
) -> Evaluation:
    """Target accuracy, preservation and (given `truth`) fidelity per target, the classifier's
    accuracy on real images (the ceiling for translations) and the reconstruction L1 of
    G(G(x, c_trg), c_org). `g` is called as g(x, c_trg, c_org). With `cross` and `truth`, a
    joint model's translations into the other label sets' targets are measured against the
    ground truth too (`Evaluation.cross`)."""
    targets = [t for t in (targets or single_targets(spec)) if t.label_set == label_set]
    others = [t for t in single_targets(spec) if t.label_set != label_set] \
        if cross and truth is not None else []
    cross_scores = {t.text: TargetScores() for t in others}
    g.eval()
    clf.eval()
    span = spec.span(label_set)
    scores = {t.text: TargetScores() for t in targets}
    correct = torch.zeros(span.stop - span.start)
    seen, rec_sum, rec_count = 0, 0.0, 0
    editor = Editor(g, None, spec, Preprocessing.of(truth.raw_format, dataset.images.size(-1)),
                    framing="model") if truth is not None and full_size else None
    for start, (x, c_org) in zip(range(0, len(dataset), batch_size),
                                 DataLoader(dataset, batch_size), strict=True):
        ids = dataset.ids[start:start + batch_size]
        x, c_org = x.to(device), c_org.to(device)
        real_pred = predict_labels(clf, spec, x)
        correct += (real_pred[:, span] == c_org[:, span]).float().sum(0).cpu()
        seen += x.size(0)
        for t in targets:
            need = ~satisfies(spec, c_org, t)  # pairs whose labels the target changes
            if not need.any():
                continue
            s = scores[t.text]
            xs, cs = x[need], c_org[need]
            c_trg = target_labels(spec, cs, t)
            fake = g(xs, c_trg, cs)
            fake_pred = predict_labels(clf, spec, fake)
            left_alone = kept(spec, t)
            hits = satisfies(spec, fake_pred, t)
            preserved = (fake_pred[:, left_alone] == real_pred[need][:, left_alone]).all(1)
            s.pairs += int(need.sum())
            s.hits += int(hits.sum())
            s.untranslated += int(satisfies(spec, real_pred[need], t).sum())
            s.preserved += int(preserved.sum())
            s.record("translation_accuracy", hits)
            s.record("preservation", preserved)
            rec_sum += float((g(fake, cs, c_trg) - xs).abs().mean(dim=(1, 2, 3)).sum())
            rec_count += xs.size(0)
            if truth is not None:
                pair_ids = [i for i, n in zip(ids, need.tolist(), strict=True) if n]
                _fidelity(s, truth, t, pair_ids, xs, cs, fake, editor)
        for t in others:  # the other label set's part of c_org is unknown: every image
            fake = g(x, target_labels(spec, c_org, t), spec.with_label_set(c_org, t.label_set))
            _fidelity(cross_scores[t.text], truth, t, ids, x, c_org, fake, editor)
    domains = spec.label_sets[label_set].domains
    return Evaluation(
        targets=scores,
        real_accuracy=float(correct.sum() / max(seen * len(domains), 1)),
        reconstruction_l1=rec_sum / max(rec_count, 1),
        per_domain_real_accuracy=dict(zip(domains, (correct / max(seen, 1)).tolist(),
                                          strict=True)),
        preserves=any(kept(spec, t) for t in targets),
        cross=cross_scores,
    )


def _fidelity(s: TargetScores, truth: GroundTruth, target: Target, ids: list[str],
              x: torch.Tensor, c_org: torch.Tensor, fake: torch.Tensor,
              editor: Editor | None) -> None:
    """Add the fidelity of one batch's translations into `target` to its scores."""
    files = truth.truths(ids, target)
    have = [i for i, f in enumerate(files) if f is not None]
    if not have:
        return
    s.truth_pairs += len(have)
    expected = _denorm(torch.stack([truth.preprocess(files[i]) for i in have])).to(x.device)
    for key, output in (("", fake[have]), ("_do_nothing", x[have])):
        s.add(f"psnr{key}", psnr(_denorm(output), expected))
        s.add(f"l1{key}", l1(_denorm(output), expected))
    s.add_change("", _denorm(fake[have]), _denorm(x[have]), expected)
    if editor is None:
        return
    photos = [truth.photo(ids[i]) for i in have]
    edited = editor.edit(photos, [target], c_org=c_org[have])[0]
    for i, photo, out in zip(have, photos, edited, strict=True):
        answer = decode_rgb(files[i])[None] / 255
        for key, output in (("", out), ("_do_nothing", photo)):
            s.add(f"psnr_full{key}", psnr(output[None] / 255, answer))
            s.add(f"l1_full{key}", l1(output[None] / 255, answer))
        s.add_change("_full", out[None] / 255, photo[None] / 255, answer)


def summarize(metrics: dict[str, float], prefix: str = "eval/") -> str:
    """One paragraph a person reads: accuracy, preservation and fidelity against doing nothing."""
    def get(name: str) -> float | None:
        return metrics.get(prefix + name)

    parts = [f"target accuracy {get('translation_accuracy'):.1%} (untranslated inputs "
             f"{get('untranslated_rate'):.1%}; classifier on real images "
             f"{get('real_accuracy'):.1%})"]
    if get("preservation") is not None:
        parts.append(f"preservation {get('preservation'):.1%}")
    if get("change_share") is not None:
        full = get("change_share_full")
        parts.append(f"share of the true change made {get('change_share'):.1%} at model size"
                     + (f", {full:.1%} at full size" if full is not None else ""))
    if get("psnr") is not None:
        parts.append(f"PSNR to the truth {get('psnr'):.1f} dB at model size, "
                     f"{get('psnr_full'):.1f} dB at full size (doing nothing: "
                     f"{get('psnr_do_nothing'):.1f} and {get('psnr_full_do_nothing'):.1f} dB)")
    else:
        parts.append("no ground truth for this data set")
    return "; ".join(parts)
