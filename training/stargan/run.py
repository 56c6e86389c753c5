"""Reading a StarGAN run directory back (export/editor.py and tests).

A StarGAN run directory is a run directory (training/run_dir.py) whose ``config.json`` says
``family = "stargan"``; ``model.safetensors`` holds ``generator.*`` and ``discriminator.*``, and
``factor_card.json`` the codes' card, from which the classifier's code tables are rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentdial.factor_card import FactorCard
from latentdial.training.run_dir import CONFIG, FACTOR_CARD, WEIGHTS
from latentdial.training.stargan.codes import CodeLayout
from latentdial.training.stargan.config import FAMILY, StarGANConfig
from latentdial.training.stargan.networks import (
    ClassifierGraph,
    Discriminator,
    Generator,
    build_networks,
)


@dataclass
class LoadedStarGAN:
    """A trained StarGAN with everything recorded beside it (networks in eval mode, on the CPU)."""

    path: Path
    config: dict[str, Any]
    cfg: StarGANConfig
    generator: Generator
    discriminator: Discriminator
    factor_card: FactorCard
    layout: CodeLayout
    weights_metadata: dict[str, str]

    def classifier(self) -> ClassifierGraph:
        """The ``classifier`` graph: images (N, C, H, W) -> codes (N, D), eval mode."""
        return ClassifierGraph(self.discriminator, self.layout).eval()


def is_stargan_run(run_dir: Path) -> bool:
    """Is ``run_dir`` a StarGAN run (its config.json says ``family = "stargan"``)?"""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("family") == FAMILY
    except (json.JSONDecodeError, AttributeError):
        return False


def load_stargan_run(run_dir: Path) -> LoadedStarGAN:
    """Rebuild G and D of a finished StarGAN run (FileNotFoundError names what is missing)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    for p in (run_dir / CONFIG, run_dir / WEIGHTS, run_dir / FACTOR_CARD):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing; is {run_dir} a finished StarGAN run?")
    config = json.loads((run_dir / CONFIG).read_text())
    fields = {f.name for f in dataclasses.fields(StarGANConfig)}
    cfg = StarGANConfig.from_dict({k: v for k, v in config.items() if k in fields})
    card = FactorCard.load(run_dir / FACTOR_CARD)
    layout = CodeLayout.from_card(card)
    g, d = build_networks(cfg.model, layout)
    state = load_file(str(run_dir / WEIGHTS), device="cpu")
    g.load_state_dict({k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")})
    d.load_state_dict({k.removeprefix("discriminator."): v for k, v in state.items()
                       if k.startswith("discriminator.")})
    with safe_open(str(run_dir / WEIGHTS), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
    return LoadedStarGAN(run_dir, config, cfg, g.eval(), d.eval(), card, layout, metadata)
