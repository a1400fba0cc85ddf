"""The independent attribute classifier that judges translations: trained on real images only,
never on a generator's output, and apart from D (which G learns to satisfy).

A classifier that reads cues can be fooled by a generator that paints them: a dark smudge on
the chin reads as stubble. So the judge learns from faces no model trained on, with
`Artefacts`: what a generator's failures look like (blotches, blur, colour casts) painted
where a domain lives, the labels unchanged; a smudge in the attribute's place seldom flips
it (tested). It is not proof against a generator trained to please a classifier: the share
of the true change (`metrics.true_change`) is, and the review weighs both.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from stargan_core.domains import DomainSpec
from stargan_core.evaluation.ground_truth import GroundTruth
from stargan_core.losses import classification_loss


class AttributeClassifier(nn.Module):
    """A small CNN that predicts a spec's domains from an image in [-1, 1]."""

    def __init__(self, cls_dim: int, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        self.width, self.depth = width, depth
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


class Artefacts:
    """What a generator's failures look like, painted into training images where the change
    of a domain would be, the labels unchanged: a soft blotch of a dark, grey, skin-like or
    random colour, a blur or a colour cast. `rate`: the share of images that get one."""

    def __init__(self, rate: float = 0.6) -> None:
        self.rate = rate

    def __call__(self, x: torch.Tensor, x_changed: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """`x` (batch, 3, H, W) in [-1, 1]; `x_changed`: the same images with one domain
        changed, whose difference says where the artefacts go (without it: anywhere)."""
        n = x.size(0)

        def rand(*size: int) -> torch.Tensor:
            return torch.rand(*size, generator=generator).to(x.device)

        change = (x_changed - x).abs() if x_changed is not None else torch.ones_like(x)
        region = (change.amax(1, keepdim=True) > 0.1).to(x.dtype)
        blobs = self._blobs(region, rand, generator) * region
        palette = torch.tensor([[-0.8, -0.85, -0.85], [0.1, 0.1, 0.1], [0.7, 0.4, 0.2]],
                               device=x.device)
        colour = torch.where(rand(n, 1) < 0.75,
                             palette[(rand(n) * 3).long().clamp(max=2)], rand(n, 3) * 2 - 1)
        blotch = x + blobs * (0.4 + 0.6 * rand(n, 1, 1, 1)) * (colour[:, :, None, None] - x)
        blurred = torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
        blur = x + region * (blurred - x)
        cast = (x + region * (rand(n, 3, 1, 1) - 0.5) * 0.8).clamp(-1, 1)
        kind = (rand(n) * 3).long()[:, None, None, None]
        out = torch.where(kind == 0, blotch, torch.where(kind == 1, blur, cast))
        return torch.where(rand(n, 1, 1, 1) < self.rate, out, x)

    @staticmethod
    def _blobs(region: torch.Tensor, rand, generator: torch.Generator | None) -> torch.Tensor:
        """One to three soft ellipses (batch, 1, H, W) centred on random pixels of `region`."""
        n, _, h, w = region.shape
        yy = torch.arange(h, device=region.device, dtype=torch.float32)[None, :, None]
        xx = torch.arange(w, device=region.device, dtype=torch.float32)[None, None, :]
        weights = region.flatten(1).float().cpu() + 1e-6
        total = torch.zeros(n, h, w, device=region.device)
        count = 1 + (rand(n) * 3).long()
        for i in range(3):
            centre = torch.multinomial(weights, 1, generator=generator).squeeze(1)
            cy, cx = (centre // w).float().to(region.device), (centre % w).float().to(
                region.device)
            ry, rx = 0.06 * h + 0.16 * h * rand(n), 0.06 * w + 0.16 * w * rand(n)
            d2 = ((yy - cy[:, None, None]) / ry[:, None, None]) ** 2 + \
                ((xx - cx[:, None, None]) / rx[:, None, None]) ** 2
            total = total + torch.exp(-2 * d2) * (i < count).float()[:, None, None]
        return total.clamp(max=1)[:, None].to(region.dtype)


def train_classifier(
    dataset: Dataset, spec: DomainSpec, label_set: int = 0, steps: int = 600,
    batch_size: int = 64, lr: float = 2e-3, seed: int = 0, device: str | torch.device = "cpu",
    num_workers: int = 0, artefacts: Artefacts | None = None,
) -> AttributeClassifier:
    """Fit the classifier on real (image, label) pairs, with the training loss of D's head.
    With `artefacts`, they are painted into the images first: where the data set gives
    (image, labels, the image with a domain changed), where that change would be."""
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
    draws = torch.Generator().manual_seed(seed + 1)
    clf.train()
    for _, (x, c, *changed) in zip(range(steps), batches, strict=False):
        x, c = x.to(device), c.to(device)
        if artefacts is not None:
            x = artefacts(x, changed[0].to(device) if changed else None, draws)
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


def train_judge(spec: DomainSpec, label_set: int, real: Dataset, truth: GroundTruth | None,
                *, images: int = 2000, steps: int = 600, device: str | torch.device = "cpu"
                ) -> AttributeClassifier:
    """The classifier that judges a model's translations: trained with `Artefacts`, on faces
    drawn from another seed than the data set's where it is one of ours (`truth`: the
    artefacts then go where a domain lives), else on the real training images `real`."""
    examples = truth.unseen(spec, label_set, images) if truth is not None else real
    return train_classifier(examples, spec, label_set, steps=steps, device=device,
                            artefacts=Artefacts())
