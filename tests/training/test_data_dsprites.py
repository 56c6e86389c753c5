"""Specification of the procedural dSprites (training/data/dsprites.py)."""

from __future__ import annotations

import numpy as np
import pytest

from latentdial.training.data.dsprites import ProceduralDSprites

SHAPE, SCALE, ORIENT, POS_X, POS_Y = range(5)


@pytest.fixture(scope="module")
def data() -> ProceduralDSprites:
    return ProceduralDSprites()


def render(data: ProceduralDSprites, rows: list[list[int]]) -> np.ndarray:
    return data.sample_observations_from_factors(np.array(rows), np.random.default_rng(0))[:, 0]


def centroid(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(img)
    return float(rows.mean()), float(cols.mean())


def test_factor_grid_is_exactly_the_official_one(data):
    assert tuple(data.factor_names) == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert tuple(data.factors_num_values) == (3, 6, 40, 32, 32)
    assert tuple(data.factor_kinds) == ("categorical", "continuous", "circular", "continuous", "continuous")
    assert data.observation_shape == (1, 64, 64)
    assert data.factor_labels(SHAPE) == ["square", "ellipse", "heart"]
    np.testing.assert_array_equal(data.factor_grid(SCALE), np.linspace(0.5, 1, 6))
    np.testing.assert_array_equal(data.factor_grid(ORIENT), np.linspace(0, 2 * np.pi, 40))
    np.testing.assert_array_equal(data.factor_grid(POS_X), np.linspace(0, 1, 32))
    np.testing.assert_array_equal(data.factor_grid(POS_Y), np.linspace(0, 1, 32))
    values = data.factor_values(np.array([[2, 5, 39, 31, 0]]))
    np.testing.assert_allclose(values, [[2, 1.0, 2 * np.pi, 1.0, 0.0]])


def test_observations_are_binary_float32_and_never_empty(data):
    x = data.sample_observations(256, np.random.default_rng(1))
    assert x.shape == (256, 1, 64, 64) and x.dtype == np.float32
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert (x.reshape(256, -1).sum(1) > 0).all()


def test_rendering_is_deterministic_for_a_seed(data):
    f1, x1 = data.sample(64, np.random.default_rng(7))
    f2, x2 = data.sample(64, np.random.default_rng(7))
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, data.sample_observations(64, np.random.default_rng(8)))


def test_every_sprite_stays_whole_inside_the_canvas_at_every_corner(data):
    combos = np.array([(s, k, o) for s in range(3) for k in range(6) for o in range(40)])
    counts = []
    for px, py in [(15, 15), (0, 0), (31, 31), (0, 31), (31, 0)]:
        pos = np.tile([px, py], (len(combos), 1))
        counts.append(render(data, np.hstack([combos, pos]).tolist()).sum(axis=(1, 2)))
    for corner in counts[1:]:
        np.testing.assert_array_equal(corner, counts[0])


def test_different_shapes_render_differently(data):
    imgs = render(data, [[s, 5, 3, 16, 16] for s in range(3)])
    for a in range(3):
        for b in range(a + 1, 3):
            assert (imgs[a] != imgs[b]).sum() > 20


def test_larger_scale_gives_more_pixels(data):
    for shape in range(3):
        for orient in (0, 7, 23):
            counts = render(data, [[shape, k, orient, 10, 10] for k in range(6)]).sum(axis=(1, 2))
            assert np.all(np.diff(counts) > 0), (shape, orient, counts)
    full = render(data, [[0, 5, 0, 16, 16]])[0]
    _, cols = np.nonzero(full)
    extent = cols.max() - cols.min() + 1
    assert 64 / 4 <= extent <= 64 / 2  # a scale-1 square spans about a third of the canvas


def test_pos_x_moves_the_centroid_right_and_pos_y_moves_it_down(data):
    """Convention: pos_x grows with the column index, pos_y with the row index (image y down)."""
    along_x = [centroid(img) for img in render(data, [[2, 3, 5, i, 10] for i in range(32)])]
    along_y = [centroid(img) for img in render(data, [[2, 3, 5, 10, i] for i in range(32)])]
    np.testing.assert_allclose(np.diff([c for _, c in along_x]), 1.0)  # one pixel right per step
    np.testing.assert_allclose(np.diff([r for r, _ in along_x]), 0.0)
    np.testing.assert_allclose(np.diff([r for r, _ in along_y]), 1.0)  # one pixel down per step
    np.testing.assert_allclose(np.diff([c for _, c in along_y]), 0.0)


def test_orientation_is_circular_zero_and_two_pi_render_identically(data):
    for shape in range(3):
        for scale in (0, 5):
            a, b = render(data, [[shape, scale, 0, 9, 20], [shape, scale, 39, 9, 20]])
            np.testing.assert_array_equal(a, b)


def test_heart_at_a_quarter_turn_differs_from_upright(data):
    quarter = int(np.argmin(np.abs(data.factor_grid(ORIENT) - np.pi / 2)))
    upright, turned = render(data, [[2, 5, 0, 16, 16], [2, 5, quarter, 16, 16]])
    assert (upright != turned).sum() > 40
    # The upright heart has its lobes on top: more pixels in its upper half.
    rows = np.nonzero(upright)[0]
    centre = (rows.min() + rows.max()) / 2
    assert (rows < centre).sum() > (rows > centre).sum()


def test_orientation_turns_counter_clockwise_on_screen(data):
    """The ellipse lies horizontally at 0; an eighth of a turn tilts it up to the right."""
    eighth = int(np.argmin(np.abs(data.factor_grid(ORIENT) - np.pi / 4)))
    flat, tilted = render(data, [[1, 5, 0, 16, 16], [1, 5, eighth, 16, 16]])
    rows, cols = np.nonzero(flat)
    assert np.ptp(cols) > 1.8 * np.ptp(rows)
    rows, cols = np.nonzero(tilted)
    assert np.corrcoef(cols, rows)[0, 1] < -0.5  # row index falls (up) as the column grows


def test_invalid_factors_raise_errors_that_name_the_problem(data):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        data.sample_observations_from_factors(np.zeros((2, 4), int), rng)
    with pytest.raises(ValueError, match="column 3 .* outside 0..31"):
        data.sample_observations_from_factors(np.array([[0, 0, 0, 32, 0]]), rng)
    with pytest.raises(ValueError, match="column 1"):
        data.sample_observations_from_factors(np.array([[0, -1, 0, 0, 0]]), rng)
