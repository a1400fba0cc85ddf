"""The independent attribute classifier that judges translations: trained on real images only,
never on a generator's output, and apart from D (which G learns to satisfy)."""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from stargan_core.domains import DomainSpec
from stargan_core.losses import classification_loss


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
