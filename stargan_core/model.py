"""StarGAN's two networks, as in Figure 3 and Appendix A of Choi et al. (arXiv 1711.09020)."""

from __future__ import annotations

import torch
from torch import nn

OUTPUTS = ("tanh", "masked")
CONDITIONINGS = ("target", "difference")


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
    """G(x, c): down-sample twice, `repeat_num` residual blocks, up-sample twice, tanh.

    The paper's network is `output="tanh"`, `conditioning="target"`. Two options that later
    work found make edits local and faithful (both change no layer but the last one's width):

    - `output="masked"` (GANimation, Pumarola et al. 2018): the last convolution gives an
      attention mask m and a colour C, and G returns m * C + (1 - m) * x: where m is 0 the
      input passes through untouched;
    - `conditioning="difference"` (STGAN, Liu et al. 2019): G sees c_trg - c_org, so an
      attribute that does not change is a zero input and a zero vector asks for no edit.
    """

    def __init__(self, c_dim: int, conv_dim: int = 64, repeat_num: int = 6,
                 output: str = "tanh", conditioning: str = "target") -> None:
        super().__init__()
        if output not in OUTPUTS or conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown generator option: output '{output}' (known: "
                             f"{', '.join(OUTPUTS)}), conditioning '{conditioning}' (known: "
                             f"{', '.join(CONDITIONINGS)})")
        self.c_dim, self.output, self.conditioning = c_dim, output, conditioning
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
        if output == "tanh":
            layers += [nn.Conv2d(dim, 3, 7, 1, 3, bias=False), nn.Tanh()]
        else:  # one mask channel, three colour channels
            layers += [nn.Conv2d(dim, 4, 7, 1, 3, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c_trg: torch.Tensor,
                c_org: torch.Tensor | None = None) -> torch.Tensor:
        """x translated to the target labels `c_trg`; `c_org`, the labels x has, is needed
        with difference conditioning only."""
        return self.forward_with_mask(x, c_trg, c_org)[0]

    def forward_with_mask(self, x: torch.Tensor, c_trg: torch.Tensor,
                          c_org: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The translation and, for a masked output, its attention mask (batch, 1, H, W)."""
        c = c_trg
        if self.conditioning == "difference":
            if c_org is None:
                raise ValueError("a generator conditioned on label differences needs c_org")
            c = c_trg - c_org
        # The label is tiled over the image and stacked as extra input channels.
        c = c.to(x.dtype)[:, :, None, None].expand(-1, -1, x.size(2), x.size(3))
        out = self.main(torch.cat([x, c], dim=1))
        if self.output == "tanh":
            return out, None
        mask, colour = torch.sigmoid(out[:, :1]), torch.tanh(out[:, 1:])
        return mask * colour + (1 - mask) * x, mask


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
