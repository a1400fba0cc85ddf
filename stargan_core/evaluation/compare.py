"""Two generators judged side by side on the same evidence (`Harness`): per metric the
difference over the same (image, target) pairs and its noise, and whether the challenger may
replace the champion.

The noise of a difference is two standard errors of the mean of the paired differences. A
challenger is worse in a metric only when it loses by more than that and by more than the
metric's margin (a difference nobody would see, of the size two seeds of one preset differ
by); it may replace the champion only when it is worse in none.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from stargan_core.evaluation.metrics import Evaluation

# Compared per pair, higher is better: the judge's verdicts (accuracy, preservation) and,
# where a ground truth exists, the truth's (the share of the true change made, which no
# smudge earns, and the fidelity).
COMPARED = ("translation_accuracy", "preservation", "change_share_full", "psnr", "psnr_full")
Z = 2.0  # standard errors: about a 95 % two-sided interval
# Rates in points, PSNR in dB: 1 point of accuracy or preservation, 2 points of the share of
# the true change, 0.2 dB of fidelity.
MARGIN = {"translation_accuracy": 0.01, "preservation": 0.01, "change_share_full": 0.02,
          "psnr": 0.2, "psnr_full": 0.2}


@dataclass(frozen=True)
class MetricComparison:
    metric: str  # `translation_accuracy`, or `celeba/translation_accuracy` for a joint model
    champion: float
    challenger: float
    noise: float  # Z standard errors of the mean paired difference
    pairs: int
    margin: float = 0.0  # differences within it are no difference

    @property
    def difference(self) -> float:
        return self.challenger - self.champion

    @property
    def verdict(self) -> str:
        bound = max(self.noise, self.margin)
        if self.difference < -bound:
            return "worse"
        return "better" if self.difference > bound else "same"


@dataclass(frozen=True)
class Comparison:
    champion_version: str
    metrics: tuple[MetricComparison, ...]

    @property
    def worse(self) -> list[str]:
        return [m.metric for m in self.metrics if m.verdict == "worse"]

    @property
    def better(self) -> list[str]:
        return [m.metric for m in self.metrics if m.verdict == "better"]

    @property
    def promote(self) -> bool:
        """No metric worse beyond its noise."""
        return not self.worse

    def decision(self) -> str:
        against = f"champion version {self.champion_version}"
        if self.worse:
            return f"keep {against}: worse in {', '.join(self.worse)}"
        if self.better:
            return f"promote over {against}: better in {', '.join(self.better)}, worse in none"
        return f"promote over {against}: within the noise in every metric"

    def table(self) -> str:
        """Markdown: one row per metric."""
        lines = [f"| metric | champion v{self.champion_version} | this version | difference "
                 "| noise (2 SE) | margin | pairs | verdict |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for m in self.metrics:
            fmt = "{:+.1f}" if "psnr" in m.metric else "{:+.1%}"
            value = "{:.1f} dB" if "psnr" in m.metric else "{:.1%}"
            lines.append(f"| {m.metric} | {value.format(m.champion)} | "
                         f"{value.format(m.challenger)} | {fmt.format(m.difference)} | "
                         f"{fmt.format(m.noise).lstrip('+')} | "
                         f"{fmt.format(m.margin).lstrip('+')} | {m.pairs} | {m.verdict} |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"champion_version": self.champion_version,
                "metrics": [asdict(m) for m in self.metrics]}

    @classmethod
    def from_dict(cls, data: dict) -> Comparison:
        return cls(data["champion_version"],
                   tuple(MetricComparison(**m) for m in data["metrics"]))


def _paired(champion: list[float], challenger: list[float]) -> tuple[float, float, float]:
    """Means of both and the noise of their difference."""
    n = len(champion)
    diffs = [b - a for a, b in zip(champion, challenger, strict=True)]
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(n - 1, 1)
    return sum(champion) / n, sum(challenger) / n, Z * math.sqrt(var / n)


def compare(champion: dict[str, Evaluation], challenger: dict[str, Evaluation],
            champion_version: str) -> Comparison:
    """Compare two evaluations of one `Harness` (the same data sets, pairs and classifier)."""
    if champion.keys() != challenger.keys():
        raise ValueError("the two evaluations cover different data sets: evaluate both "
                         "generators with the same harness")
    joint = len(challenger) > 1
    rows = []
    for dataset, ours in challenger.items():
        theirs = champion[dataset]
        for metric in COMPARED:
            a = [v for s in theirs.targets.values() for v in s.outcomes.get(metric, [])]
            b = [v for s in ours.targets.values() for v in s.outcomes.get(metric, [])]
            if not b or (metric == "preservation" and not ours.preserves):
                continue
            if len(a) != len(b):
                raise ValueError(f"{metric}: {len(a)} pairs against {len(b)}: evaluate both "
                                 "generators with the same harness")
            name = f"{dataset}/{metric}" if joint else metric
            rows.append(MetricComparison(name, *_paired(a, b), pairs=len(b),
                                         margin=MARGIN[metric]))
    return Comparison(champion_version, tuple(rows))
