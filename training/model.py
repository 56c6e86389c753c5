"""The convolutional encoder/decoder of disentanglement_lib (Locatello et al. 2019), for 64x64
and 128x128 images.

Two architectures share one layer pattern, built in one place (:func:`encoder_widths`,
:class:`ConvEncoder`, :class:`DeconvDecoder`) from the image side:

- ``conv64`` (disentanglement_lib's own): encoder conv 32-32-64-64 (4x4, stride 2, ReLU)
  -> dense 256 -> mean, log_var (D each); decoder dense 256 -> dense 64*4*4 -> transposed
  conv 64-32-32-C (4x4, stride 2) -> logits.
- ``conv128``: the same with one more stride-2 conv of width 32 at the input end of the
  encoder (conv 32-32-32-64-64: 128 -> 64 -> 32 -> 16 -> 8 -> 4) and one more transposed
  conv at the output end of the decoder (64-32-32-32-C: 4 -> 8 -> 16 -> 32 -> 64 -> 128).

Both end the encoder at (N, 64, 4, 4) and start the decoder there, so everything after the
convolutions (and the latent contract) is the same. conv64's parameter names and shapes are
those of the original fixed stack (``encoder.features.{0,2,4,6,9}``, ``decoder.deconv.{0,2,4,6}``),
so every checkpoint and shipped model still loads and re-exports bit for bit
(``tests/training/test_model_128.py``).

The decoder returns *logits*; the sigmoid is applied by the Bernoulli loss in training and
inside the exported graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise

import torch
from torch import nn

#: architecture name -> the side of the square images it takes (1 or 3 channels, any latent size)
ARCHITECTURES: dict[str, int] = {"conv64": 64, "conv128": 128}

#: side of the feature map where the encoder's convolutions end and the decoder's begin
BOTTLENECK_SIDE = 4
#: channels of the last two encoder convs (and the first two decoder layers)
WIDE = 64
#: channels of every other conv layer
NARROW = 32
HIDDEN = 256


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; stored in every run directory's config.json under "model".

    ``image_size`` must be the side the architecture takes (conv64: 64, conv128: 128); a
    mismatch raises :class:`~latentdial.training.config.ConfigError` (a ValueError) saying
    which architecture fits.
    """

    architecture: str = "conv64"
    channels: int = 1
    image_size: int = 64
    latent_dim: int = 10

    def __post_init__(self) -> None:
        # imported here: config.py imports this module at its top
        from latentdial.training.config import ConfigError

        side = ARCHITECTURES.get(self.architecture)
        if side is None:
            raise ConfigError(f"unknown architecture {self.architecture!r}; "
                              f"valid: {sorted(ARCHITECTURES)}")
        if self.image_size != side:
            size = self.image_size
            fits = [name for name, s in ARCHITECTURES.items() if s == size]
            if fits:
                hint = (f'use architecture = "{fits[0]}" for {size}x{size} '
                        f"(or image_size = {side} for {self.architecture})")
            else:
                hint = "architectures: " + ", ".join(f"{n} ({s}x{s})" for n, s in ARCHITECTURES.items())
            raise ConfigError(f"{self.architecture} needs {side}x{side} images, "
                              f"got model.image_size = {size}; {hint}")

    def to_dict(self) -> dict:
        return asdict(self)


def encoder_widths(image_size: int) -> tuple[int, ...]:
    """Output channels of the encoder's stride-2 convs, input end first.

    One conv per halving from ``image_size`` down to 4x4: the last two are 64 wide, the others
    32 (64 -> (32, 32, 64, 64); 128 -> (32, 32, 32, 64, 64)). The decoder mirrors them.
    """
    halvings = (image_size // BOTTLENECK_SIDE).bit_length() - 1
    if image_size != BOTTLENECK_SIDE << halvings or halvings < 2:
        raise ValueError(f"the conv stack needs a power-of-two image side >= 16, got {image_size}")
    return (NARROW,) * (halvings - 2) + (WIDE, WIDE)


class ConvEncoder(nn.Module):
    """(N, C, S, S) float in [0, 1] -> mean (N, D), log_var (N, D); S = ``cfg.image_size``.

    ``features`` (conv 4x4, stride 2, padding 1, each followed by a ReLU), shapes per layer::

        conv64                           conv128
        input       (N, C, 64, 64)       input       (N, C, 128, 128)
                                         conv C->32  (N, 32, 64, 64)
        conv C->32  (N, 32, 32, 32)      conv 32->32 (N, 32, 32, 32)
        conv 32->32 (N, 32, 16, 16)      conv 32->32 (N, 32, 16, 16)
        conv 32->64 (N, 64, 8, 8)        conv 32->64 (N, 64, 8, 8)
        conv 64->64 (N, 64, 4, 4)        conv 64->64 (N, 64, 4, 4)
        flatten     (N, 1024)            flatten     (N, 1024)
        dense+ReLU  (N, 256)             dense+ReLU  (N, 256)

    then ``mean`` and ``log_var``: dense 256 -> D each.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cfg.channels
        for width in encoder_widths(cfg.image_size):
            layers += [nn.Conv2d(c, width, 4, 2, 1), nn.ReLU()]
            c = width
        self.features = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(c * BOTTLENECK_SIDE**2, HIDDEN), nn.ReLU(),
        )
        self.mean = nn.Linear(HIDDEN, cfg.latent_dim)
        self.log_var = nn.Linear(HIDDEN, cfg.latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)  # (N, 256)
        return self.mean(h), self.log_var(h)


class DeconvDecoder(nn.Module):
    """(N, D) latents -> (N, C, S, S) logits; S = ``cfg.image_size``.

    ``fc``: dense D -> 256, ReLU, dense 256 -> 1024, ReLU, viewed as (N, 64, 4, 4); then
    ``deconv`` (transposed conv 4x4, stride 2, padding 1; a ReLU after all but the last)::

        conv64                           conv128
        (N, 64, 4, 4)                    (N, 64, 4, 4)
        deconv 64->64 (N, 64, 8, 8)      deconv 64->64 (N, 64, 8, 8)
        deconv 64->32 (N, 32, 16, 16)    deconv 64->32 (N, 32, 16, 16)
        deconv 32->32 (N, 32, 32, 32)    deconv 32->32 (N, 32, 32, 32)
        deconv 32->C  (N, C, 64, 64)     deconv 32->32 (N, 32, 64, 64)
                                         deconv 32->C  (N, C, 128, 128)
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        widths = encoder_widths(cfg.image_size)[::-1]  # bottleneck end first
        self.bottleneck = (widths[0], BOTTLENECK_SIDE, BOTTLENECK_SIDE)
        self.fc = nn.Sequential(
            nn.Linear(cfg.latent_dim, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, widths[0] * BOTTLENECK_SIDE**2), nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in pairwise(widths):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(widths[-1], cfg.channels, 4, 2, 1))  # logits
        self.deconv = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.fc(latents).view(-1, *self.bottleneck)
        return self.deconv(h)


class VAEModel(nn.Module):
    """Encoder + decoder. Objectives (training/objectives/) wrap this with a loss."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = ConvEncoder(cfg)
        self.decoder = DeconvDecoder(cfg)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (N, C, H, W) -> (logits (N, C, H, W), mean, log_var, z), z ~ q(z|x) reparameterised."""
        mean, log_var = self.encoder(images)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        return self.decoder(z), mean, log_var, z


def build_model(cfg: ModelConfig) -> VAEModel:
    """Build an untrained model of ``cfg.architecture`` (validated by ModelConfig)."""
    return VAEModel(cfg)
