"""The attribute reader's network and its input: a crop centred on the object's centre of mass.

Reading a factor from a centred crop instead of the whole canvas makes the network's job
translation-free: it classifies shape, scale and hue, regresses orientation as
``(cos k theta, sin k theta)`` per shape (k = the shape's rotational symmetry, so a square
is read modulo 90 degrees), and regresses the small offset between the centre of mass and
the sprite's true centre, which gives the position to the pixel (the two coincide for the
point-symmetric square and ellipse, not for a heart).

Tensor shapes: images ``(N, C, 64, 64)`` float32 in [0, 1]; crops ``(N, C, CROP, CROP)``;
centres of mass ``(N, 2)`` float (column, row) canvas pixels; the crop is centred on their
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

#: Side of the crop. A dSprites sprite reaches at most 16 px from its centre and its centre of
#: mass lies within 3 px of that centre, so a 41 px crop always holds the whole sprite.
CROP = 41
_HALF = CROP // 2
#: Foreground below this level (above the image's median, the background) is ignored when
#: locating the object, so a faint haze does not pull the centre of mass.
FOREGROUND_FLOOR = 0.1

#: Rotational symmetry of each dSprites shape (square, ellipse, heart): the sprite looks the
#: same after 2 pi / k. Orientation is read as (cos k theta, sin k theta).
SYMMETRY = (4, 2, 1)


@dataclass(frozen=True)
class Heads:
    """Output layout of the reader: how many logits or values each head has."""

    num_shapes: int = 3
    num_scales: int = 6
    num_hues: int = 0  # 0: no hue heads (binary dSprites); else object and background hue classes

    @property
    def sizes(self) -> dict[str, int]:
        out = {"shape": self.num_shapes, "scale": self.num_scales,
               "orientation": 2 * self.num_shapes, "offset": 2}
        if self.num_hues:
            out |= {"object_hue": self.num_hues, "background_hue": self.num_hues}
        return out


def centre_crop(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop each image around its object's centre of mass.

    The foreground is the per-pixel maximum over channels minus the image's median (the
    background level), floored at ``FOREGROUND_FLOOR``. An image with no foreground is
    cropped at the canvas centre. The canvas is padded by edge replication.

    Args:
        images: (N, C, H, W) float32 in [0, 1].
    Returns:
        crops (N, C, CROP, CROP), centres of mass (N, 2) float (column, row); each crop is
        centred on the rounded centre of mass.
    """
    n, c, h, w = images.shape
    value = images.amax(dim=1)  # (N, H, W)
    background = value.flatten(1).median(dim=1).values[:, None, None]
    weight = (value - background).clamp(min=0)
    weight = torch.where(weight > FOREGROUND_FLOOR, weight, torch.zeros_like(weight))
    mass = weight.sum(dim=(1, 2))
    cols = torch.arange(w, dtype=images.dtype)
    rows = torch.arange(h, dtype=images.dtype)
    safe = mass.clamp(min=1e-6)
    cx = torch.where(mass > 0, (weight.sum(dim=1) * cols).sum(dim=1) / safe, torch.full_like(mass, w / 2))
    cy = torch.where(mass > 0, (weight.sum(dim=2) * rows).sum(dim=1) / safe, torch.full_like(mass, h / 2))
    mass_centres = torch.stack([cx, cy], dim=1)
    centres = mass_centres.round().long()
    padded = F.pad(images, (_HALF, _HALF, _HALF, _HALF), mode="replicate")
    offsets = torch.arange(CROP)
    r = (centres[:, 1:2] + offsets)[:, :, None]  # (N, CROP, 1) rows in padded coordinates
    q = (centres[:, 0:1] + offsets)[:, None, :]  # (N, 1, CROP)
    crops = padded[torch.arange(n)[:, None, None], :, r, q]  # (N, CROP, CROP, C)
    return crops.permute(0, 3, 1, 2).contiguous(), mass_centres


class ReaderNet(nn.Module):
    """A small conv net over the centred crop; ``forward`` returns the raw outputs per head.

    (N, C, CROP, CROP) -> {head: (N, size)}; about 0.2 M parameters, 2.5 M multiply-adds an image.
    A colour crop gets a fourth, hue-free channel: its brightness above the crop's median
    (the background), so that shape, size and place are read the same way at every hue.
    """

    def __init__(self, channels: int, heads: Heads) -> None:
        super().__init__()
        self.heads = heads
        self.colour = channels == 3
        self.features = nn.Sequential(
            nn.Conv2d(channels + int(self.colour), 32, 4, stride=2, padding=1), nn.ReLU(),  # 20
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),  # 10
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # 5
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),  # 3
            nn.Flatten(), nn.Linear(64 * 3 * 3, 256), nn.ReLU(),
        )
        self.out = nn.Linear(256, sum(heads.sizes.values()))

    def forward(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.colour:
            value = crops.amax(dim=1, keepdim=True)
            background = value.flatten(1).median(dim=1).values[:, None, None, None]
            crops = torch.cat([crops, (value - background).clamp(min=0) / (1 - background).clamp(min=0.1)], dim=1)
        flat = self.out(self.features(crops))
        return dict(zip(self.heads.sizes, flat.split(list(self.heads.sizes.values()), dim=1), strict=True))
