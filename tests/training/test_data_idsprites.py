"""Specification of the Infinite dSprites dataset (training/data/idsprites.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("idsprites")

from latentdial.training.data import DATASETS, get_dataset  # noqa: E402
from latentdial.training.data.idsprites import (  # noqa: E402
    BACKGROUND_RGB8,
    COLORS,
    MARKER_RGB8,
    InfiniteDSpritesData,
)

NAMES = ("shape", "color", "scale", "orientation", "pos_x", "pos_y")
# a shape of medium size in the middle of the canvas
MIDDLE = np.array([[0, 0, 3, 0, 8, 8]])


@pytest.fixture(scope="module")
def data() -> InfiniteDSpritesData:
    return get_dataset("idsprites")  # type: ignore[return-value]


def render(data: InfiniteDSpritesData, factors: np.ndarray) -> np.ndarray:
    return data.sample_observations_from_factors(np.asarray(factors), np.random.default_rng(0))


def pixels_rgb8(image: np.ndarray) -> np.ndarray:
    """(3, H, W) float image -> (H * W, 3) int RGB in 0..255."""
    return np.rint(image.reshape(3, -1).T * 255).astype(int)


def object_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that are not background (the shape, marker included)."""
    return np.any(np.rint(image * 255).astype(int) != np.array(BACKGROUND_RGB8)[:, None, None], axis=0)


def test_registered_with_the_documented_grid_and_kinds(data):
    assert DATASETS["idsprites"] is InfiniteDSpritesData
    assert tuple(data.factor_names) == NAMES
    assert tuple(data.factors_num_values) == (3, 4, 6, 40, 16, 16)
    assert tuple(data.factor_kinds) == ("categorical", "categorical", "continuous", "circular",
                                        "continuous", "continuous")
    assert data.observation_shape == (3, 64, 64)
    assert data.factor_labels(0) == ["shape_0", "shape_1", "shape_2"]
    assert data.factor_labels(1) == ["red", "green", "blue", "yellow"]
    assert all(data.factor_labels(f) == [] for f in range(2, 6))
    np.testing.assert_allclose(data.factor_grid(2), np.linspace(0.5, 1.0, 6))
    orientation = data.factor_grid(3)
    assert orientation[0] == 0 and orientation[-1] < 2 * np.pi  # a full turn is not a second value
    np.testing.assert_allclose(np.diff(orientation), 2 * np.pi / 40)
    np.testing.assert_allclose(data.factor_grid(4), np.linspace(0, 1, 16))
    np.testing.assert_allclose(data.factor_grid(5), np.linspace(0, 1, 16))
    assert data.circular_symmetry(3) is None


def test_observations_are_float32_rgb_in_unit_range(data):
    factors = data.sample_factors(5, np.random.default_rng(1))
    x = render(data, factors)
    assert x.shape == (5, 3, 64, 64) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(x * 255, np.rint(x * 255), atol=1e-3)  # 8-bit colours


def test_sampling_is_deterministic_given_the_generator(data):
    f1, x1 = data.sample(6, np.random.default_rng(7))
    f2, x2 = data.sample(6, np.random.default_rng(7))
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(x1, x2)
    assert f1.dtype == np.int64 and f1.shape == (6, 6)
    assert (f1 >= 0).all() and (f1 < np.array(data.factors_num_values)).all()


def test_the_shape_seed_fixes_the_shapes_and_leaves_global_randomness_alone(data):
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    same = InfiniteDSpritesData(shape_seed=0)
    assert np.random.rand() == expected  # the global state was restored
    other = InfiniteDSpritesData(shape_seed=1)
    factors = np.array([[k, 0, 5, 0, 8, 8] for k in range(3)])
    np.testing.assert_array_equal(render(same, factors), render(data, factors))
    assert not np.array_equal(render(other, factors), render(data, factors))


def test_same_factors_same_image_and_each_factor_changes_it(data):
    base = np.array([[1, 2, 3, 5, 7, 9]])
    image = render(data, base)[0]
    np.testing.assert_array_equal(render(data, base)[0], image)
    for f, n in enumerate(data.factors_num_values):
        for step in (1, n // 2):
            moved = base.copy()
            moved[0, f] = (moved[0, f] + step) % n
            assert not np.array_equal(render(data, moved)[0], image), (NAMES[f], step)


def test_the_shapes_are_distinct(data):
    masks = [object_mask(render(data, [[k, 0, 5, 0, 8, 8]])[0]) for k in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.9, (i, j, iou)


def test_colours_are_the_named_colours_on_the_package_background(data):
    for c, (name, rgb) in enumerate(COLORS.items()):
        factors = MIDDLE.copy()
        factors[0, 1] = c
        pixels = pixels_rgb8(render(data, factors)[0])
        found = {tuple(p) for p in np.unique(pixels, axis=0)}
        colour = tuple(int(round(255 * v)) for v in rgb)
        assert found == {BACKGROUND_RGB8, MARKER_RGB8, colour}, (name, found)
        counts = {k: int((pixels == np.array(k)).all(axis=1).sum()) for k in found}
        assert counts[colour] > 50 and counts[MARKER_RGB8] > 50, (name, counts)


def test_a_half_turn_moves_the_orientation_marker(data):
    """The marker breaks every symmetry: a turn by pi changes which half is black."""
    half = MIDDLE.copy()
    half[0, 3] = 20
    a, b = render(data, np.concatenate([MIDDLE, half]))
    black_a = (pixels_rgb8(a) == 0).all(axis=1).reshape(64, 64)
    black_b = (pixels_rgb8(b) == 0).all(axis=1).reshape(64, 64)
    cols = np.arange(64)
    assert cols[black_a.any(axis=0)].mean() > 32 > cols[black_b.any(axis=0)].mean()  # right half, then left


def test_options_image_size_and_validation():
    small = InfiniteDSpritesData(num_shapes=2, image_size=32)
    assert small.observation_shape == (3, 32, 32)
    assert tuple(small.factors_num_values)[0] == 2 and small.factor_labels(0) == ["shape_0", "shape_1"]
    assert render(small, [[1, 3, 5, 0, 8, 8]]).shape == (1, 3, 32, 32)
    for bad in ({"num_shapes": 1}, {"shape_seed": -1}, {"image_size": 8}, {"num_shapes": 2.5}):
        with pytest.raises(ValueError, match="idsprites"):
            InfiniteDSpritesData(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        render(small, [[2, 0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="takes num_shapes=, shape_seed=, image_size="):
        get_dataset("idsprites", colour="red")
