"""The StarGAN config: a typed dataclass read from TOML, with ``--set key=value`` overrides.

A StarGAN config is told apart from a VAE config by its top-level ``family = "stargan"``
(:func:`is_stargan_config`); ``latentdial train`` hands such a config to this package. Tables::

    family = "stargan"
    steps = 200000            # discriminator updates; the generator updates every n_critic of them
    [dataset]                 # as for every run (training/data): dsprites, color_dsprites, ...
    [model]                   # image size, channels, network widths (networks.py)
    [objective]               # labelled factors, num_labelled, the loss weights, n_critic
    [optimizer]               # Adam for G and D

The defaults are the paper's (Choi et al. 2018, "StarGAN: Unified Generative Adversarial
Networks for Multi-Domain Image-to-Image Translation", training details, and the authors' code):
lambda_cls 1, lambda_rec 10, lambda_gp 10, Adam lr 1e-4 for G and D with betas (0.5, 0.999),
n_critic 5, batch 16, 200,000 iterations. The paper's linear lr decay over the second half of
training is not implemented. Overrides and type checks reuse the VAE config's parser (training/config.py).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentdial.training.config import (
    ConfigError,
    _coerce,
    _dataclass_from,
    _reject_unknown,
    apply_overrides,
    read_toml,
)
from latentdial.training.objectives.semi_supervised import CATEGORICAL_CODES

FAMILY = "stargan"


@dataclass(frozen=True)
class StarGANModelConfig:
    """Network sizes (networks.py). The paper's generator has conv_dim 64 and 6 residual
    blocks, its discriminator conv_dim 64; the smaller defaults here train on a CPU."""

    channels: int = 1
    image_size: int = 64
    g_conv_dim: int = 32
    g_res_blocks: int = 3
    d_conv_dim: int = 32
    d_layers: int = 4  # stride-2 convs: 64 -> 4x4 real/fake patches with 4

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError(f"model.channels must be 1 or 3, got {self.channels}")
        if self.image_size % (2 ** self.d_layers) or self.image_size % 4:
            raise ConfigError(f"model.image_size {self.image_size} must be divisible by 4 and by "
                              f"2 ** d_layers = {2 ** self.d_layers}")
        for name in ("g_conv_dim", "g_res_blocks", "d_conv_dim", "d_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class StarGANObjectiveConfig:
    """Which factors are the domains, how many images carry labels, and the loss weights.

    factors: the factors G is conditioned on, laid out as in the semi-supervised VAE's named
        dims (``factor_codes``); [] takes every factor of the dataset.
    num_labelled: labelled training images, the SAME pool the semi-supervised recipe draws from
        the run seed (``BatchStream(num_labelled=...)``); 0 labels every image.
    categorical_code: "centre" or "one_hot", as the semi-supervised objective writes a category.
    lambda_cls, lambda_rec, lambda_gp: the weights of the domain classification, reconstruction
        and gradient-penalty terms (the paper's 1, 10, 10).
    n_critic: discriminator updates per generator update (the paper's 5).
    """

    factors: list[str] = field(default_factory=list)
    num_labelled: int = 0
    categorical_code: str = "centre"
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    n_critic: int = 5

    def __post_init__(self) -> None:
        if self.num_labelled < 0:
            raise ConfigError(f"objective.num_labelled must be >= 0 (0 = every image), got {self.num_labelled}")
        if self.categorical_code not in CATEGORICAL_CODES:
            raise ConfigError(f"objective.categorical_code must be one of {CATEGORICAL_CODES}, "
                              f"got {self.categorical_code!r}")
        if min(self.lambda_cls, self.lambda_rec, self.lambda_gp) < 0:
            raise ConfigError("objective.lambda_cls, lambda_rec and lambda_gp must be >= 0")
        if self.n_critic < 1:
            raise ConfigError(f"objective.n_critic must be >= 1, got {self.n_critic}")


@dataclass(frozen=True)
class StarGANOptimizerConfig:
    """Adam for G and D (the paper: lr 1e-4 each, beta1 0.5, beta2 0.999)."""

    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999

    def __post_init__(self) -> None:
        if self.g_lr <= 0 or self.d_lr <= 0:
            raise ConfigError(f"optimizer.g_lr and d_lr must be > 0, got {self.g_lr}, {self.d_lr}")


@dataclass(frozen=True)
class StarGANConfig:
    """Everything a StarGAN run needs; ``to_dict`` is what config.json stores."""

    family: str = FAMILY
    dataset: dict[str, Any] = field(default_factory=lambda: {"name": "dsprites"})
    model: StarGANModelConfig = field(default_factory=StarGANModelConfig)
    objective: StarGANObjectiveConfig = field(default_factory=StarGANObjectiveConfig)
    optimizer: StarGANOptimizerConfig = field(default_factory=StarGANOptimizerConfig)
    batch_size: int = 16
    steps: int = 200_000
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    device: str = "cpu"
    num_threads: int = 0  # torch intra-op threads; 0 = every core

    def __post_init__(self) -> None:
        if self.family != FAMILY:
            raise ConfigError(f"family must be {FAMILY!r} for a StarGAN config, got {self.family!r}")
        for name in ("batch_size", "steps", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if "name" not in self.dataset:
            raise ConfigError('[dataset] needs a name, e.g. name = "dsprites"')
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StarGANConfig:
        """Build and type-check a config from a nested dict (a parsed TOML file)."""
        tables = {"model": StarGANModelConfig, "objective": StarGANObjectiveConfig,
                  "optimizer": StarGANOptimizerConfig}
        top = {f.name for f in dataclasses.fields(cls)}
        _reject_unknown("top level", raw, top)
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for name, value in raw.items():
            if name in tables:
                kwargs[name] = _dataclass_from(name, tables[name], value)
            elif name == "dataset":
                if not isinstance(value, dict):
                    raise ConfigError(f"[dataset] must be a table, got {value!r}")
                kwargs[name] = dict(value)
            else:
                kwargs[name] = _coerce(name, value, hints[name])
        return cls(**kwargs)


def is_stargan_config(path: Path | str | None, overrides: typing.Sequence[str] = ()) -> bool:
    """Does the config at ``path`` (with ``overrides``) say ``family = "stargan"``?"""
    raw = read_toml(path, "config file", "configs/ for examples") if path is not None else {}
    return apply_overrides(raw, overrides).get("family") == FAMILY


def load_stargan_config(path: Path | str | None, overrides: typing.Sequence[str] = ()) -> StarGANConfig:
    """Read a StarGAN TOML config (the defaults when ``path`` is None) and apply overrides."""
    raw = read_toml(path, "config file", "configs/ for examples") if path is not None else {}
    return StarGANConfig.from_dict(apply_overrides(raw, overrides))
