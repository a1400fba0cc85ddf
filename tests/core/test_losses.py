import torch
from torch import nn

from stargan_core.domains import DomainSpec
from stargan_core.losses import (
    classification_loss,
    gradient_penalty,
    r1_penalty,
    reconstruction_loss,
)


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1), None


def test_gradient_penalty_of_a_linear_critic():
    w = torch.full((1, 3, 4, 4), 0.5)  # ||w|| = 0.5 * sqrt(48)
    gp = gradient_penalty(LinearCritic(w), torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4))
    expected = (0.5 * 48**0.5 - 1) ** 2
    assert abs(gp.item() - expected) < 1e-4


def test_gradient_penalty_is_zero_for_unit_gradient_and_differentiable():
    w = torch.zeros(1, 3, 4, 4)
    w[0, 0, 0, 0] = 1.0
    critic = LinearCritic(w)
    gp = gradient_penalty(critic, torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    assert gp.item() < 1e-10
    w2 = torch.full((1, 3, 4, 4), 0.3)
    critic2 = LinearCritic(w2)
    gradient_penalty(critic2, torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)).backward()
    assert critic2.w.grad is not None and critic2.w.grad.abs().sum() > 0


def test_classification_loss_is_bce_for_attributes_and_ce_for_one_hot():
    celeba = DomainSpec.celeba()
    logits = torch.tensor([[10.0, -10, -10, 10, -10]])
    assert classification_loss(logits, torch.tensor([[1.0, 0, 0, 1, 0]]), celeba) < 1e-3
    assert classification_loss(logits, torch.tensor([[0.0, 1, 0, 0, 1]]), celeba) > 40
    rafd = DomainSpec.rafd()
    labels = torch.nn.functional.one_hot(torch.tensor([2]), 8).float()
    uniform = classification_loss(torch.zeros(1, 8), labels, rafd)
    assert abs(uniform.item() - torch.log(torch.tensor(8.0)).item()) < 1e-6


def test_joint_classification_loss_sees_only_its_label_set():
    spec = DomainSpec.joint(DomainSpec.celeba(), DomainSpec.rafd())
    labels = spec.label_vector({"expression": "happy"}, 1)[None]
    logits = torch.zeros(1, spec.cls_dim)
    logits[0, :5] = 100.0  # wild CelebA logits must not matter for a RaFD batch
    loss = classification_loss(logits, labels, spec, label_set=1)
    assert abs(loss.item() - torch.log(torch.tensor(8.0)).item()) < 1e-6


def test_reconstruction_loss_is_mean_absolute_error():
    x = torch.zeros(2, 3, 4, 4)
    assert reconstruction_loss(x, x + 0.25).item() == 0.25


def test_r1_penalty_of_a_linear_critic_is_half_the_squared_gradient():
    w = torch.full((1, 3, 4, 4), 0.5)  # ||w||^2 = 0.25 * 48
    critic = LinearCritic(w)
    r1 = r1_penalty(critic, torch.randn(5, 3, 4, 4))
    assert abs(r1.item() - 0.5 * 0.25 * 48) < 1e-4
    r1.backward()
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0

