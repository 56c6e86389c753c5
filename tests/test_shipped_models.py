"""What the shipped models promise, checked through a real server: turn one dial, only that factor moves.

Each test edits one factor of procedurally rendered sources through EditAttributes and
compares the output with the ground-truth rendering of the edited factors, by a
property a user can see: where the sprite is, what hue it has. Needs the trained
models in ``models/``; without one the test fails and says how to make it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures.server import ServerThread, make_config
from latentdial.training.data import get_dataset

from latentdial.client import Client, Edit

MODELS = Path(__file__).resolve().parents[1] / "models"
SOURCES = 24


def _require(name: str) -> None:
    if not sorted((MODELS / name).glob("*/manifest.json")):
        pytest.fail(f"no trained model in {MODELS / name}; `make ship SHIP={name}` makes it (docs/models.md)")


def _nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, H, W, C) uint8, what a client sends."""
    return (x.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def _centroids(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 2) centre of mass (x, y) in pixels."""
    ys, xs = np.mgrid[: masks.shape[1], : masks.shape[2]]
    area = np.maximum(masks.sum((1, 2)), 1)
    return np.stack([(masks * xs).sum((1, 2)) / area, (masks * ys).sum((1, 2)) / area], axis=1)


@pytest.fixture(scope="module")
def server():
    with ServerThread(make_config(MODELS)) as s:
        yield s


@pytest.mark.slow
@pytest.mark.parametrize("factor, axis", [("pos_x", 0), ("pos_y", 1)])
def test_default_model_moves_the_sprite_where_asked_and_nowhere_else(server, factor, axis):
    _require("dsprites")
    data = get_dataset("dsprites")
    index = data.factor_names.index(factor)
    rng = np.random.default_rng(1)
    factors = data.sample_factors(SOURCES, rng)
    errors, other_moves = [], []
    with Client(server.address) as c:
        for target in (4, 16, 27):  # grid indices: left / middle / right (top / middle / bottom)
            value = float(data.factor_grid(index)[target])
            edited = c.edit(_nhwc(data.sample_observations_from_factors(factors)),
                            [Edit(factor=factor, set_value=value)], model="dsprites").images[..., 0]
            truth_factors = factors.copy()
            truth_factors[:, index] = target
            truth = data.sample_observations_from_factors(truth_factors)[:, 0] > 0.5
            got, want = _centroids(edited > 0.5), _centroids(truth)
            errors.append(np.abs(got[:, axis] - want[:, axis]))
            other_moves.append(np.abs(got[:, 1 - axis] - want[:, 1 - axis]))
    errors, other_moves = np.concatenate(errors), np.concatenate(other_moves)
    print(f"{factor}: median error {np.median(errors):.2f} px, other axis {np.median(other_moves):.2f} px")
    # One grid step of position is 64 * (1 / 31) * ~0.8 = ~1.7 px in the official layout.
    assert np.median(errors) < 2.0, f"{factor}: median centroid error {np.median(errors):.2f} px"
    assert np.median(other_moves) < 2.0, f"the other axis moved by {np.median(other_moves):.2f} px"
