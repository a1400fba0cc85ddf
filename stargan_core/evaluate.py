"""Translation accuracy, the paper's classification metric, measured on any generator.

An attribute classifier is trained on the *real* training images of a data set; a translation
G(x, c) succeeds when the classifier finds the target's domains in it. Only (image, target)
pairs where the target changes the image's labels count, so an identity mapping scores ~0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from stargan_core.domains import DomainSpec, Target
from stargan_core.losses import classification_loss
from stargan_core.model import Generator


class AttributeClassifier(nn.Module):
    """A small CNN that predicts a spec's domains from an image in [-1, 1]."""

    def __init__(self, cls_dim: int, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim_in = 3
        for i in range(depth):
            dim_out = width * 2**i
            layers += [nn.Conv2d(dim_in, dim_out, 3, 2, 1), nn.BatchNorm2d(dim_out),
                       nn.LeakyReLU(0.1)]
            dim_in = dim_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(dim_in, cls_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(
    dataset: Dataset, spec: DomainSpec, label_set: int = 0, steps: int = 600,
    batch_size: int = 64, lr: float = 2e-3, seed: int = 0, device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> AttributeClassifier:
    """Fit the classifier on real (image, label) pairs, with the training loss of D's head."""
    if len(dataset) == 0:
        raise ValueError("no training images for the attribute classifier")
    torch.manual_seed(seed)
    batch_size = min(batch_size, len(dataset))
    clf = AttributeClassifier(spec.cls_dim).to(device)
    opt = torch.optim.Adam(clf.parameters(), lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    loader = DataLoader(dataset, batch_size, shuffle=True, drop_last=True,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(seed))
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    clf.train()
    for _, (x, c) in zip(range(steps), batches, strict=False):
        x, c = x.to(device), c.to(device)
        x = torch.where(torch.rand(x.size(0), 1, 1, 1, device=device) < 0.5, x.flip(-1), x)
        loss = classification_loss(clf(x), c, spec, label_set)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return clf.eval()


@torch.inference_mode()
def predict_labels(clf: nn.Module, spec: DomainSpec, images: torch.Tensor) -> torch.Tensor:
    return spec.labels_from_logits(clf(images).float())


@dataclass
class Evaluation:
    """Metrics of one generator on held-out images (reconstruction L1 in [-1, 1] pixel units)."""

    translation_accuracy: dict[str, float]
    untranslated_rate: dict[str, float]
    pairs: dict[str, int]
    real_accuracy: float
    reconstruction_l1: float
    per_domain_real_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def mean_translation_accuracy(self) -> float:
        """Over all (image, target) pairs, not over targets."""
        total = sum(self.pairs.values())
        return sum(self.translation_accuracy[t] * n for t, n in self.pairs.items()) / max(total, 1)

    @property
    def mean_untranslated_rate(self) -> float:
        total = sum(self.pairs.values())
        return sum(self.untranslated_rate[t] * n for t, n in self.pairs.items()) / max(total, 1)

    def metrics(self) -> dict[str, float]:
        """Flat metric names for trackers: `eval/translation_accuracy/<target>` and friends.

        Targets are written as MLflow allows in names: `Male=0` as `Male:0`, `A,B` as `A and B`.
        """
        out = {
            "eval/translation_accuracy": self.mean_translation_accuracy,
            "eval/untranslated_rate": self.mean_untranslated_rate,
            "eval/real_accuracy": self.real_accuracy,
            "eval/reconstruction_l1": self.reconstruction_l1,
        }
        out |= {f"eval/translation_accuracy/{t.replace('=', ':').replace(',', ' and ')}": v
                for t, v in self.translation_accuracy.items()}
        return out


@torch.inference_mode()
def evaluate(
    g: Generator, clf: nn.Module, spec: DomainSpec, dataset: Dataset, label_set: int = 0,
    targets: Sequence[Target] | None = None, batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> Evaluation:
    """Translation accuracy per target, the classifier's accuracy on real images (the ceiling
    for translations) and the reconstruction L1 of G(G(x, c_trg), c_org)."""
    targets = [t for t in (targets or spec.single_targets()) if t.label_set == label_set]
    g.eval()
    clf.eval()
    span = spec.span(label_set)
    hits = {t.text: 0 for t in targets}
    base = {t.text: 0 for t in targets}
    pairs = {t.text: 0 for t in targets}
    correct = torch.zeros(span.stop - span.start)
    seen, rec_sum, rec_count = 0, 0.0, 0
    for x, c_org in DataLoader(dataset, batch_size):
        x, c_org = x.to(device), c_org.to(device)
        real_pred = predict_labels(clf, spec, x)
        correct += (real_pred[:, span] == c_org[:, span]).float().sum(0).cpu()
        seen += x.size(0)
        for t in targets:
            need = ~spec.satisfies(c_org, t)  # pairs whose labels the target changes
            if not need.any():
                continue
            xs, cs = x[need], c_org[need]
            c_trg = spec.target_labels(cs, t)
            fake = g(xs, c_trg)
            hits[t.text] += int(spec.satisfies(predict_labels(clf, spec, fake), t).sum())
            base[t.text] += int(spec.satisfies(real_pred[need], t).sum())
            pairs[t.text] += int(need.sum())
            rec_sum += float((g(fake, cs) - xs).abs().mean(dim=(1, 2, 3)).sum())
            rec_count += xs.size(0)
    domains = spec.label_sets[label_set].domains
    per_domain = dict(zip(domains, (correct / max(seen, 1)).tolist(), strict=True))
    return Evaluation(
        translation_accuracy={t: hits[t] / n for t, n in pairs.items() if n},
        untranslated_rate={t: base[t] / n for t, n in pairs.items() if n},
        pairs={t: n for t, n in pairs.items() if n},
        real_accuracy=float(correct.sum() / max(seen * len(domains), 1)),
        reconstruction_l1=rec_sum / max(rec_count, 1),
        per_domain_real_accuracy=per_domain,
    )


def train_classifiers(sets: Sequence[tuple[Dataset, Dataset]], spec: DomainSpec,
                      steps: int = 600, device: str | torch.device = "cpu") -> list[nn.Module]:
    """One attribute classifier per label set, from the (train, test) pairs of
    `loading.evaluation_sets`."""
    return [train_classifier(train_set, spec, i, steps=steps, device=device)
            for i, (train_set, _) in enumerate(sets)]


def evaluate_label_sets(
    g: Generator, classifiers: Sequence[nn.Module], spec: DomainSpec,
    sets: Sequence[tuple[Dataset, Dataset]], device: str | torch.device = "cpu",
) -> dict[str, float]:
    """`evaluate` on every label set's held-out images, as flat metrics; with two data sets
    (joint training) the names carry the data set: `eval/celeba/translation_accuracy`."""
    metrics: dict[str, float] = {}
    for i, (clf, (_, test_set)) in enumerate(zip(classifiers, sets, strict=True)):
        prefix = f"{spec.label_sets[i].dataset}/" if spec.is_joint else ""
        result = evaluate(g, clf, spec, test_set, i, device=device)
        metrics |= {k.replace("eval/", f"eval/{prefix}", 1): v
                    for k, v in result.metrics().items()}
    return metrics
