"""The paper's objectives: WGAN-GP adversarial loss, domain classification, reconstruction;
and the non-saturating loss with R1 that StarGAN v2 trains with."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stargan_core.domains import DomainSpec


def adversarial_loss(out_src: torch.Tensor, real: bool, kind: str = "wgan-gp") -> torch.Tensor:
    """The adversarial term on D's realism scores for images it should judge `real` (D on
    real images, G on its own) or fake (D on G's images), averaged over the batch: WGAN's
    -D(x) or D(x); the non-saturating loss's softplus(-D(x)) or softplus(D(x))."""
    out_src = out_src.float()
    if kind == "wgan-gp":
        return -out_src.mean() if real else out_src.mean()
    if kind == "non-saturating":
        return F.softplus(-out_src if real else out_src).mean()
    raise ValueError(f"unknown adversarial loss '{kind}'")


def gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor | None = None, labels: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)||_2 - 1)^2 on the interpolates
    x_hat = alpha * real + (1 - alpha) * fake, alpha per image (default: uniform draws).
    `labels`: a projection critic's labels for the interpolates (the real images')."""
    if alpha is None:
        alpha = torch.rand(real.size(0), device=real.device)
    alpha = alpha.to(real.dtype)[:, None, None, None]
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out_src, _ = d(x_hat) if labels is None else d(x_hat, labels)
    (grad,) = torch.autograd.grad(out_src.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(d: nn.Module, real: torch.Tensor, labels: torch.Tensor | None = None
               ) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): half the squared norm of D's gradient at the real images,
    per image, averaged; `labels` for a projection critic."""
    real = real.detach().requires_grad_(True)
    out_src, _ = d(real) if labels is None else d(real, labels)
    (grad,) = torch.autograd.grad(out_src.float().sum(), real, create_graph=True)
    return 0.5 * grad.float().pow(2).flatten(1).sum(1).mean()


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, spec: DomainSpec, label_set: int = 0
) -> torch.Tensor:
    """Domain classification loss on the span of `label_set` only (the mask vector's role).

    Binary attributes: BCE summed over attributes, averaged over the batch (the paper's
    multi-label loss); categorical domains: cross-entropy against the one-hot label.
    """
    span = spec.span(label_set)
    logits, labels = logits[:, span].float(), labels[:, span].float()
    if spec.label_sets[label_set].one_hot:
        # Cross-entropy written out: F.cross_entropy's CUDA reduction (nll_loss) adds in a
        # varying order, which deterministic training cannot have.
        target = F.one_hot(labels.argmax(1), logits.size(1)).to(logits.dtype)
        return -(F.log_softmax(logits, 1) * target).sum(1).mean()
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / logits.size(0)


def reconstruction_loss(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Cycle-consistency: L1 between x and G(G(x, c_trg), c_org)."""
    return (x - x_rec).abs().mean()
