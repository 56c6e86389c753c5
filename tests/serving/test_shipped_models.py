"""What the shipped models promise, checked through a real server: turn one dial, only that factor moves.

Each test edits one factor of procedurally rendered sources through EditAttributes and
compares the output with the ground-truth rendering of the edited factors, by a
property a user can see: where the sprite is, what hue it has. Needs the trained
models in ``models/``; without one the test fails and says how to make it.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
from fixtures.server import ServerThread, make_config

from latentdial.client import Client, Edit
from latentdial.training.data import get_dataset

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[2] / "models"
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


def _object_hue(images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) colour dSprites -> (N,) hue in [0, 1) of the bright (object) pixels."""
    rgb = images.transpose(0, 2, 3, 1)
    bright = rgb.max(-1) > 0.6
    hues = []
    for img, mask in zip(rgb, bright, strict=True):
        mean = img[mask].mean(0) if mask.any() else img.reshape(-1, 3).mean(0)
        hues.append(colorsys.rgb_to_hsv(*mean)[0])
    return np.array(hues)


def _circular_distance(a: np.ndarray, b: float) -> np.ndarray:
    d = np.abs(a - b) % 1.0
    return np.minimum(d, 1.0 - d)


@pytest.fixture(scope="module")
def server():
    with ServerThread(make_config(MODELS)) as s:
        yield s


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, H, W) bool pairs -> (N,) intersection over union."""
    return (a & b).sum((1, 2)) / np.maximum((a | b).sum((1, 2)), 1)


@pytest.mark.slow
def test_default_model_turns_a_heart_by_name_to_the_asked_orientation(server):
    _require("dsprites")
    data = get_dataset("dsprites")
    factors = data.sample_factors(SOURCES, np.random.default_rng(2))
    factors[:, 0], factors[:, 1], factors[:, 2] = 2, 5, 0  # large hearts (no symmetry), upright
    target = factors.copy()
    target[:, 2] = 10  # about 92 degrees
    with Client(server.address) as c:
        edited = c.edit(_nhwc(data.sample_observations_from_factors(factors)),
                        [Edit(factor="orientation", set_value=float(data.factor_grid(2)[10]))],
                        model="dsprites").images[..., 0] > 0.5  # float32 in [0, 1]
    turned = _iou(edited, data.sample_observations_from_factors(target)[:, 0] > 0.5)
    unturned = _iou(edited, data.sample_observations_from_factors(factors)[:, 0] > 0.5)
    print(f"orientation: IoU with the turned heart {np.median(turned):.2f}, with the source {np.median(unturned):.2f}")
    # a large heart and itself turned by 92 degrees overlap with IoU about 0.7 already
    assert np.median(turned) > 0.8 and np.median(turned) > np.median(unturned) + 0.1


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
    print(f"{factor}: median error {np.median(errors):.2f} px, other axis {np.median(other_moves):.2f} px")
    # One grid step of position is 64 * (1 / 31) * ~0.8 = ~1.7 px in the official layout.
    assert np.median(errors) < 2.0, f"{factor}: median centroid error {np.median(errors):.2f} px"
    assert np.median(other_moves) < 2.0, f"the other axis moved by {np.median(other_moves):.2f} px"


@pytest.mark.slow
def test_colour_model_repaints_the_object_in_the_asked_hue_and_keeps_the_background(server):
    _require("color_dsprites")
    data = get_dataset("color_dsprites")
    obj = data.factor_names.index("object_hue")
    rng = np.random.default_rng(2)
    factors = data.sample_factors(SOURCES, rng)
    factors[:, 1] = 5  # the largest scale: enough object pixels for a stable hue
    sources = data.sample_observations_from_factors(factors)
    hits, background_kept = [], []
    with Client(server.address) as c:
        for target in range(0, 8, 2):
            value = float(data.factor_grid(obj)[target])
            edited = c.edit(_nhwc(sources), [Edit(factor="object_hue", set_value=value)],
                            model="color_dsprites").images  # (N, H, W, 3) float
            edited = edited.transpose(0, 3, 1, 2)
            # Hue grid step is 1/8: within half a step the hue reads back as the asked one.
            hits.append(_circular_distance(_object_hue(edited), value) < 1 / 16)
            corner = edited[:, :, :4, :4].reshape(len(edited), 3, -1).mean(-1)
            truth_corner = sources[:, :, :4, :4].reshape(len(sources), 3, -1).mean(-1)
            background_kept.append(np.abs(corner - truth_corner).max(1) < 0.1)
    hit_rate, kept = np.concatenate(hits).mean(), np.concatenate(background_kept).mean()
    print(f"object hue right in {hit_rate:.0%}, background kept in {kept:.0%}")
    assert hit_rate >= 0.75, f"object hue right in {hit_rate:.0%} of edits"
    assert kept >= 0.75, f"background colour kept in {kept:.0%} of edits"
