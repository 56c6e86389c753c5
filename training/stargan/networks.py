"""StarGAN's generator and discriminator (Choi et al. 2018, the appendix's network architecture), sized here
for 64x64 images, and the two exported graphs built from them.

Generator G(x, c): the target codes c (N, D) are tiled into D constant channels and
concatenated to the image; conv 7x7 -> two stride-2 convs 4x4 (down-sampling, x2 channels
each) -> residual blocks -> two stride-2 transposed convs 4x4 (up-sampling) -> conv 7x7 to C
channels. Instance normalisation and ReLU as in the paper; the last layer ends in a sigmoid
(the paper's tanh, moved to [0, 1] where every image of the project lives).

Discriminator D(x): ``d_layers`` stride-2 convs 4x4 with leaky ReLU (slope 0.01), no
normalisation (WGAN-GP); a PatchGAN head (conv 3x3 -> one score per patch, (N, 1, h, w) with
h = H / 2 ** d_layers) and an auxiliary head (a conv as large as the last feature map -> (N, H_aux),
the per-factor predictions of :mod:`~latentdial.training.stargan.codes`).

Both networks take images in [0, 1] and map them to [-1, 1] inside (the paper's input range).
"""

from __future__ import annotations

import torch
from torch import nn

from latentdial.training.stargan.codes import CodeLayout, CodesFromHead
from latentdial.training.stargan.config import StarGANModelConfig


class ResidualBlock(nn.Module):
    """conv 3x3 - IN - ReLU - conv 3x3 - IN, plus the input: (N, c, h, w) -> (N, c, h, w)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv_in_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels, affine=True), nn.ReLU(inplace=True)]


class Generator(nn.Module):
    """G(images (N, C, H, W) in [0, 1], codes (N, D)) -> images (N, C, H, W) in [0, 1]."""

    def __init__(self, cfg: StarGANModelConfig, code_dim: int) -> None:
        super().__init__()
        c, w = cfg.channels, cfg.g_conv_dim
        layers: list[nn.Module] = _conv_in_relu(nn.Conv2d(c + code_dim, w, 7, 1, 3, bias=False), w)
        for _ in range(2):  # down-sampling: H -> H / 4, w -> 4 w
            layers += _conv_in_relu(nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), 2 * w)
            w *= 2
        layers += [ResidualBlock(w) for _ in range(cfg.g_res_blocks)]
        for _ in range(2):  # up-sampling back to H
            layers += _conv_in_relu(nn.ConvTranspose2d(w, w // 2, 4, 2, 1, bias=False), w // 2)
            w //= 2
        layers.append(nn.Conv2d(w, c, 7, 1, 3, bias=False))
        self.main = nn.Sequential(*layers)
        self.code_dim = code_dim

    def forward(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        tiled = codes[:, :, None, None].expand(n, self.code_dim, h, w)  # (N, D, H, W)
        x = torch.cat([images * 2.0 - 1.0, tiled], dim=1)
        return torch.sigmoid(self.main(x))


class Discriminator(nn.Module):
    """D(images (N, C, H, W) in [0, 1]) -> (real/fake scores (N, 1, h, w), auxiliary head (N, H_aux))."""

    def __init__(self, cfg: StarGANModelConfig, head_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, w = cfg.channels, cfg.d_conv_dim
        for _ in range(cfg.d_layers):
            layers += [nn.Conv2d(c_in, w, 4, 2, 1), nn.LeakyReLU(0.01)]
            c_in, w = w, w * 2
        self.main = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** cfg.d_layers
        self.src = nn.Conv2d(c_in, 1, 3, 1, 1, bias=False)
        self.cls = nn.Conv2d(c_in, head_dim, side, bias=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(images * 2.0 - 1.0)
        return self.src(h), self.cls(h).flatten(1)


class ClassifierGraph(nn.Module):
    """The exported ``classifier``: images (N, C, H, W) in [0, 1] -> codes (N, D) (the card's values)."""

    def __init__(self, discriminator: Discriminator, layout: CodeLayout) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.decode = CodesFromHead(layout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, head = self.discriminator(images)
        return self.decode(head)


def build_networks(cfg: StarGANModelConfig, layout: CodeLayout) -> tuple[Generator, Discriminator]:
    """Fresh (G, D) for ``layout``'s codes (the caller seeds torch)."""
    return Generator(cfg, layout.code_dim), Discriminator(cfg, layout.head_dim)
