"""StarGAN's two networks, as in Figure 3 and Appendix A of Choi et al. (arXiv 1711.09020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OUTPUTS = ("tanh", "masked")
CONDITIONINGS = ("target", "difference")
UPSAMPLINGS = ("transposed", "resize")


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

    `upsampling="resize"` doubles the map by nearest neighbours and then convolves (Odena et
    al. 2016, as StarGAN v2 up-samples) instead of the paper's stride-2 transposed
    convolutions, whose uneven overlap paints checkerboards; a short run keeps them as noise
    that D's classifier reads as a beard or as youth.
    """

    def __init__(self, c_dim: int, conv_dim: int = 64, repeat_num: int = 6,
                 output: str = "tanh", conditioning: str = "target",
                 upsampling: str = "transposed") -> None:
        super().__init__()
        if output not in OUTPUTS or conditioning not in CONDITIONINGS \
                or upsampling not in UPSAMPLINGS:
            raise ValueError(f"unknown generator option: output '{output}' (known: "
                             f"{', '.join(OUTPUTS)}), conditioning '{conditioning}' (known: "
                             f"{', '.join(CONDITIONINGS)}), upsampling '{upsampling}' (known: "
                             f"{', '.join(UPSAMPLINGS)})")
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
                nn.ConvTranspose2d(dim, dim // 2, 4, 2, 1, bias=False)
                if upsampling == "transposed" else
                nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                              nn.Conv2d(dim, dim // 2, 3, 1, 1, bias=False)),
                _instance_norm(dim // 2),
                nn.ReLU(inplace=True),
            ]
            dim //= 2
        if output == "tanh":
            layers += [nn.Conv2d(dim, 3, 7, 1, 3, bias=False), nn.Tanh()]
        else:  # one mask channel, three colour channels
            layers += [nn.Conv2d(dim, 4, 7, 1, 3, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c_trg: torch.Tensor, c_org: torch.Tensor | None = None,
                with_mask: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """x translated to the target labels `c_trg`; `c_org`, the labels x has, is needed
        with difference conditioning only. `with_mask`: the translation and, for a masked
        output, its attention mask (batch, 1, H, W; None for tanh)."""
        c = c_trg
        if self.conditioning == "difference":
            if c_org is None:
                raise ValueError("a generator conditioned on label differences needs c_org")
            c = c_trg - c_org
        # The label is tiled over the image and stacked as extra input channels.
        c = c.to(x.dtype)[:, :, None, None].expand(-1, -1, x.size(2), x.size(3))
        out = self.main(torch.cat([x, c], dim=1))
        if self.output == "tanh":
            return (out, None) if with_mask else out
        mask, colour = torch.sigmoid(out[:, :1]), torch.tanh(out[:, 1:])
        out = mask * colour + (1 - mask) * x
        return (out, mask) if with_mask else out


class PatchMatmulConv2d(nn.Conv2d):
    """A convolution computed on CPUs as one matrix product over the unfolded input patches:
    the same sums. Where the output map is tiny and the weights large (D's last layers: 2x2
    outputs of 1024 x 2048 x 4 x 4 weights at 128 px) the convolution kernels spend their time
    re-laying out the weights; the product ran 1.2-3.3x faster there on 2 cores, forward and
    backward, and the gradient penalty's double backward goes through it unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        h, w = (x.size(2) + 2 * ph - kh) // sh + 1, (x.size(3) + 2 * pw - kw) // sw + 1
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        # (batch x positions, patch) @ (patch, out channels): one matrix product
        out = patches.transpose(1, 2) @ self.weight.flatten(1).t()
        if self.bias is not None:
            out = out + self.bias
        return out.transpose(1, 2).reshape(x.size(0), -1, h, w)


class Discriminator(nn.Module):
    """PatchGAN D(x) -> (real/fake score map, domain logits).

    The paper's critic scores realism alone, whatever the labels: a woman's face with a man's
    short hair passes as real once her lips are red, so G edits the cues D's classifier reads
    and never the shape. `projection=True` (Miyato & Koyama 2018, "cGANs with projection
    discriminator"; StarGAN v2's per-domain heads in the multi-label form) adds to every score
    the inner product of D's features with an embedding of the labels, (2c - 1) so that 0 and
    1 both have a direction: D then judges an image real *for its labels*, and a woman's
    realism includes long hair. D(x, c) is called with the labels the image should have (the
    real image's own, the translation's target); without labels the score is the plain one.
    """

    def __init__(
        self, image_size: int = 128, cls_dim: int = 5, conv_dim: int = 64, repeat_num: int = 6,
        projection: bool = False,
    ) -> None:
        super().__init__()
        if image_size % 2**repeat_num:
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**d_repeat_num ({2**repeat_num})"
            )
        layers: list[nn.Module] = [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
        dim, size = conv_dim, image_size // 2
        for _ in range(1, repeat_num):
            size //= 2
            conv = PatchMatmulConv2d if size <= 2 else nn.Conv2d  # output maps of 2x2, 1x1
            layers += [conv(dim, dim * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            dim *= 2
        self.main = nn.Sequential(*layers)
        self.src = nn.Conv2d(dim, 1, 3, 1, 1, bias=False)
        # One kernel covering the whole final feature map: a per-image domain prediction.
        self.cls = nn.Conv2d(dim, cls_dim, image_size // 2**repeat_num, bias=False)
        self.embed = nn.Linear(cls_dim, dim, bias=False) if projection else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """`c`: signed labels in {-1, 0, 1} (batch, cls_dim; 0 where unknown), used by a
        projection critic only."""
        h = self.main(x)
        src = self.src(h)
        if self.embed is not None and c is not None:
            src = src + (self.embed(c.to(h.dtype))[:, :, None, None] * h).sum(1, keepdim=True)
        return src, self.cls(h).flatten(1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
