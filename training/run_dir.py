"""The run-directory contract between training (writer) and export/evaluate (readers).

A run directory holds:

- ``config.json``      the resolved training config; ``config["model"]`` is a ModelConfig dict,
                       ``config["dataset"]`` names the dataset, ``config["objective"]`` the objective.
- ``model.safetensors`` the final weights of :class:`~latentdial.training.model.VAEModel`
                       (keys ``encoder.*`` and ``decoder.*``), with metadata (step, code version).
- ``checkpoints/``     periodic checkpoints for resume (trainer's own format).
- ``factor_card.json`` (labelled data) and ``metrics.json`` once evaluated.
- ``loss_log.csv``, ``reconstructions.png``, ``traversal.png``, ``report.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from latentdial.factor_card import FactorCard
from latentdial.training.model import ModelConfig, VAEModel, build_model

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
FACTOR_CARD = "factor_card.json"
METRICS = "metrics.json"
LOSS_LOG = "loss_log.csv"
CHECKPOINTS = "checkpoints"


def checkpoint_paths(out: Path) -> list[Path]:
    """Checkpoints of ``out`` from oldest to newest."""
    return sorted((Path(out) / CHECKPOINTS).glob("step_*.pt"))


def write_checkpoint(out: Path, path: Path, state: dict[str, Any], keep: int) -> None:
    """Save ``state`` to ``path`` in one rename (a crash never leaves half a checkpoint), then
    drop all but the newest ``keep`` checkpoints of ``out``."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in checkpoint_paths(out)[:-keep]:
        old.unlink()


def write_loss_log(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """Write the logged rows (step, loss and each term) to ``run_dir/loss_log.csv``; the columns
    are every key in first-seen order (a term logged only later gets an empty cell before)."""
    if not rows:
        return
    import csv

    keys = list(dict.fromkeys(k for row in rows for k in row))
    with (Path(run_dir) / LOSS_LOG).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class LoadedRun:
    """A trained model with everything recorded beside it."""

    path: Path
    model: VAEModel
    config: dict[str, Any]
    factor_card: FactorCard | None
    metrics: dict[str, float]
    weights_metadata: dict[str, str]


def save_weights(model: VAEModel, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state dict as safetensors (contiguous CPU tensors)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata or {})


def load_run(run_dir: Path, *, map_location: str = "cpu") -> LoadedRun:
    """Rebuild the trained model of ``run_dir`` in eval mode."""
    run_dir = Path(run_dir)
    cfg_path, w_path = run_dir / CONFIG, run_dir / WEIGHTS
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing; is {run_dir} a finished training run?")
    config = json.loads(cfg_path.read_text())
    model = build_model(ModelConfig(**config["model"]))
    model.load_state_dict(load_file(str(w_path), device=map_location))
    model.eval()
    from safetensors import safe_open

    with safe_open(str(w_path), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
    card_path, metrics_path = run_dir / FACTOR_CARD, run_dir / METRICS
    card = FactorCard.load(card_path) if card_path.is_file() else None
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return LoadedRun(run_dir, model, config, card, metrics, metadata)


def initial_weights(source: Path) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` / ``decoder.*`` weights to start a run from (``init_from``).

    ``source`` is a finished run directory (its ``model.safetensors``) or an exported model
    version (``models/<name>/<version>``: the ``encoder.pt2`` and ``decoder.pt2`` programs
    export writes beside the ONNX graphs, which carry the same state-dict names).
    """
    source = Path(source)
    if (source / WEIGHTS).is_file():
        return load_file(str(source / WEIGHTS), device="cpu")
    programs = [source / f"{graph}.pt2" for graph in ("encoder", "decoder")]
    if all(p.is_file() for p in programs):
        state: dict[str, torch.Tensor] = {}
        for program in programs:
            state.update({k: v.detach().cpu() for k, v in torch.export.load(str(program)).state_dict.items()})
        return state
    raise FileNotFoundError(
        f"init_from: {source} is neither a finished run (no {WEIGHTS}) nor an exported model version "
        f"with encoder.pt2 and decoder.pt2 (export without --no-programs)"
    )


def representation_fn(model: VAEModel, *, batch_size: int = 256):
    """A numpy representation function for metrics: (N, C, H, W) float32 -> (N, D) posterior means."""
    import numpy as np

    @torch.no_grad()
    def fn(x: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(x), batch_size):
            mean, _ = model.encoder(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])))
            outs.append(mean.numpy())
        return np.concatenate(outs, axis=0)

    return fn
