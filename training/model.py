"""The convolutional encoder/decoder of disentanglement_lib (Locatello et al. 2019).

Encoder (for 64x64 inputs): conv 32-32-64-64 (4x4, stride 2, ReLU) -> dense 256 ->
mean, log_var (D each). Decoder: dense 256 -> dense 64*4*4 -> transposed conv
64-32-32-C (4x4, stride 2) -> logits. The decoder returns *logits*; the sigmoid
is applied by the Bernoulli loss in training and inside the exported graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; stored in every run directory's config.json under "model"."""

    architecture: str = "conv64"
    channels: int = 1
    image_size: int = 64
    latent_dim: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


class ConvEncoder(nn.Module):
    """(N, C, 64, 64) float in [0, 1] -> mean (N, D), log_var (N, D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.image_size != 64:
            raise ValueError(f"conv64 needs 64x64 images, got {cfg.image_size}")
        c = cfg.channels
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 1), nn.ReLU(),  # 32x32
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),  # 16x16
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),  # 8x8
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),  # 4x4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256), nn.ReLU(),
        )
        self.mean = nn.Linear(256, cfg.latent_dim)
        self.log_var = nn.Linear(256, cfg.latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)  # (N, 256)
        return self.mean(h), self.log_var(h)


class DeconvDecoder(nn.Module):
    """(N, D) latents -> (N, C, 64, 64) logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(cfg.latent_dim, 256), nn.ReLU(),
            nn.Linear(256, 64 * 4 * 4), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),  # 8x8
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),  # 16x16
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),  # 32x32
            nn.ConvTranspose2d(32, cfg.channels, 4, 2, 1),  # 64x64
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.fc(latents).view(-1, 64, 4, 4)
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


ARCHITECTURES = {"conv64": VAEModel}


def build_model(cfg: ModelConfig) -> VAEModel:
    """Build an untrained model; unknown architectures list the valid ones."""
    try:
        cls = ARCHITECTURES[cfg.architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {cfg.architecture!r}; valid: {sorted(ARCHITECTURES)}") from None
    return cls(cfg)
