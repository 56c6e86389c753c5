"""Training objectives: a base VAE and its disentangling variants, by name.

>>> objective = get_objective("beta_vae")(model, BetaVAEConfig(beta=8))
"""

from __future__ import annotations

from latentdial.training.objectives.ada_gvae import AdaGVAE, AdaGVAEConfig
from latentdial.training.objectives.base import NonFiniteLossError, ObjectiveConfig, VAEObjective
from latentdial.training.objectives.beta_tcvae import BetaTCVAE, BetaTCVAEConfig
from latentdial.training.objectives.beta_vae import (
    AnnealedVAE,
    AnnealedVAEConfig,
    BetaVAE,
    BetaVAEConfig,
)
from latentdial.training.objectives.contrastive import ContrastiveConfig, ContrastivePairs
from latentdial.training.objectives.dip_vae import DIPVAEI, DIPVAEII, DIPVAEIConfig, DIPVAEIIConfig
from latentdial.training.objectives.factor_vae import FactorVAE, FactorVAEConfig
from latentdial.training.objectives.info_vae import InfoVAE, InfoVAEConfig
from latentdial.training.objectives.infogan_cr import InfoGANCR, InfoGANCRConfig
from latentdial.training.objectives.semi_supervised import SemiSupervisedConfig, SemiSupervisedVAE

#: name -> objective class; each class carries its ``Config`` dataclass.
OBJECTIVES: dict[str, type[VAEObjective]] = {
    cls.name: cls
    for cls in (VAEObjective, BetaVAE, AnnealedVAE, BetaTCVAE, FactorVAE, DIPVAEI, DIPVAEII, InfoVAE, AdaGVAE,
                SemiSupervisedVAE, ContrastivePairs, InfoGANCR)
}


def get_objective(name: str) -> type[VAEObjective]:
    """The objective class called ``name``; unknown names list the valid ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(sorted(OBJECTIVES))}") from None


__all__ = [
    "DIPVAEI",
    "DIPVAEII",
    "OBJECTIVES",
    "AdaGVAE",
    "AdaGVAEConfig",
    "AnnealedVAE",
    "AnnealedVAEConfig",
    "BetaTCVAE",
    "BetaTCVAEConfig",
    "BetaVAE",
    "BetaVAEConfig",
    "ContrastiveConfig",
    "ContrastivePairs",
    "DIPVAEIConfig",
    "DIPVAEIIConfig",
    "FactorVAE",
    "FactorVAEConfig",
    "InfoVAE",
    "InfoVAEConfig",
    "InfoGANCR",
    "InfoGANCRConfig",
    "NonFiniteLossError",
    "ObjectiveConfig",
    "SemiSupervisedConfig",
    "SemiSupervisedVAE",
    "VAEObjective",
    "get_objective",
]
