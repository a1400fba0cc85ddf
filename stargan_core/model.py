"""StarGAN's two networks, as in Figure 3 and Appendix A of Choi et al. (arXiv 1711.09020)."""

from __future__ import annotations

import torch
from torch import nn


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    # Affine, but no running statistics: the reference's track_running_stats=True makes eval()
    # normalise with averaged batch statistics, so a trained G behaves differently at test time.
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm and an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            _instance_norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            _instance_norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class Generator(nn.Module):
    """G(x, c): down-sample twice, `repeat_num` residual blocks, up-sample twice, tanh."""

    def __init__(self, c_dim: int, conv_dim: int = 64, repeat_num: int = 6) -> None:
        super().__init__()
        self.c_dim = c_dim
        layers: list[nn.Module] = [
            nn.Conv2d(3 + c_dim, conv_dim, 7, 1, 3, bias=False),
            _instance_norm(conv_dim),
            nn.ReLU(inplace=True),
        ]
        dim = conv_dim
        for _ in range(2):
            layers += [
                nn.Conv2d(dim, dim * 2, 4, 2, 1, bias=False),
                _instance_norm(dim * 2),
                nn.ReLU(inplace=True),
            ]
            dim *= 2
        layers += [ResidualBlock(dim) for _ in range(repeat_num)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(dim, dim // 2, 4, 2, 1, bias=False),
                _instance_norm(dim // 2),
                nn.ReLU(inplace=True),
            ]
            dim //= 2
        layers += [nn.Conv2d(dim, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # The target label is tiled over the image and stacked as extra input channels.
        c = c.to(x.dtype)[:, :, None, None].expand(-1, -1, x.size(2), x.size(3))
        return self.main(torch.cat([x, c], dim=1))


class Discriminator(nn.Module):
    """PatchGAN D(x) -> (real/fake score map, domain logits)."""

    def __init__(
        self, image_size: int = 128, cls_dim: int = 5, conv_dim: int = 64, repeat_num: int = 6
    ) -> None:
        super().__init__()
        if image_size % 2**repeat_num:
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**d_repeat_num ({2**repeat_num})"
            )
        layers: list[nn.Module] = [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
        dim = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            dim *= 2
        self.main = nn.Sequential(*layers)
        self.src = nn.Conv2d(dim, 1, 3, 1, 1, bias=False)
        # One kernel covering the whole final feature map: a per-image domain prediction.
        self.cls = nn.Conv2d(dim, cls_dim, image_size // 2**repeat_num, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        return self.src(h), self.cls(h).flatten(1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
