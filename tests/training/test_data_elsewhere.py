"""dSprites drawn elsewhere: the dSprites factor grid and its meaning, drawn by other conventions
(grey coverage, other sizes and placement, another heart), in grey and in colour."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from latentdial.training.data import DATASETS, get_dataset
from latentdial.training.data.dsprites_elsewhere import (
    ElsewhereColorDSprites,
    ElsewhereDSprites,
    fill_polygon,
    heart_outline,
)

SQUARE, ELLIPSE, HEART = 0, 1, 2


@pytest.fixture(scope="module")
def elsewhere() -> ElsewhereDSprites:
    return get_dataset("dsprites_elsewhere")


@pytest.fixture(scope="module")
def training():
    return get_dataset("dsprites")


def draw(data, *rows) -> np.ndarray:
    """(len(rows), H, W) grey images of the factor rows (shape, scale, orientation, pos_x, pos_y)."""
    return data.sample_observations_from_factors(np.array(rows))[:, 0]


def centroid(image: np.ndarray) -> np.ndarray:
    """(x, y) in pixel index coordinates (column, row), weighted by the grey level."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    w = image / image.sum()
    return np.array([(w * xx).sum(), (w * yy).sum()])


def axis_angle(image: np.ndarray) -> float:
    """Angle (radians, counter-clockwise on screen from the right, modulo pi) of the principal axis."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    w = image / image.sum()
    cx, cy = (w * xx).sum(), (w * yy).sum()
    x, y = xx - cx, cy - yy  # y up
    sxx, syy, sxy = (w * x * x).sum(), (w * y * y).sum(), (w * x * y).sum()
    return float(np.mod(0.5 * np.arctan2(2 * sxy, sxx - syy), np.pi))


# ------------------------------------------------------------- the grid --
def test_both_are_registered_and_draw_the_dsprites_grid(elsewhere, training):
    assert DATASETS["dsprites_elsewhere"] is ElsewhereDSprites
    assert DATASETS["color_dsprites_elsewhere"] is ElsewhereColorDSprites
    for mine, theirs in ((elsewhere, training), (get_dataset("color_dsprites_elsewhere"), get_dataset("color_dsprites"))):
        assert tuple(mine.factor_names) == tuple(theirs.factor_names)
        assert tuple(mine.factors_num_values) == tuple(theirs.factors_num_values)
        assert tuple(mine.factor_kinds) == tuple(theirs.factor_kinds)
        assert mine.observation_shape == theirs.observation_shape
        for f in range(mine.num_factors):
            np.testing.assert_allclose(mine.factor_grid(f), theirs.factor_grid(f), atol=1e-12)
            assert mine.factor_labels(f) == theirs.factor_labels(f)
            assert mine.circular_symmetry(f) == theirs.circular_symmetry(f)


def test_observations_are_float32_grey_levels_in_the_unit_interval(elsewhere):
    factors, x = elsewhere.sample(64, np.random.default_rng(0))
    assert x.shape == (64, 1, 64, 64) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    grey = (x > 0) & (x < 1)
    assert grey.any(axis=(1, 2, 3)).all()  # every sprite has anti-aliased edge pixels
    assert len(np.unique(x)) >= 10  # 4 x 4 supersampling: 17 levels


def test_the_same_factors_give_the_same_image_alone_or_in_any_batch(elsewhere):
    factors = elsewhere.sample_factors(300, np.random.default_rng(1))
    a = elsewhere.sample_observations_from_factors(factors)
    b = ElsewhereDSprites().sample_observations_from_factors(factors[::-1])[::-1]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[7:8], elsewhere.sample_observations_from_factors(factors[7:8]))


def test_it_differs_from_the_training_renderer_for_the_same_factors(elsewhere, training):
    factors = elsewhere.sample_factors(200, np.random.default_rng(2))
    mine = elsewhere.sample_observations_from_factors(factors)
    theirs = training.sample_observations_from_factors(factors)
    assert set(np.unique(theirs)) <= {0.0, 1.0}
    differing = np.abs(mine - theirs).sum(axis=(1, 2, 3))
    assert (differing > 10).all()  # tens of pixels apart in every image
    # smaller sprites: about 10 % smaller linearly, so clearly less area
    ratio = mine.sum(axis=(1, 2, 3)) / theirs.sum(axis=(1, 2, 3))
    assert 0.6 < ratio.mean() < 0.9


def test_sizes_at_scale_one_are_the_documented_ones(elsewhere):
    square, ellipse = draw(elsewhere, [SQUARE, 5, 0, 16, 16], [ELLIPSE, 5, 0, 16, 16])
    assert abs(square.sum() - 19.8**2) < 0.03 * 19.8**2
    assert abs(ellipse.sum() - np.pi * 27.9 * 13.95 / 4) < 0.03 * np.pi * 27.9 * 13.95 / 4
    cols = np.flatnonzero(ellipse.sum(axis=0) > 0)
    rows = np.flatnonzero(ellipse.sum(axis=1) > 0)
    assert 27 <= len(cols) <= 30 and 13 <= len(rows) <= 16  # long axis horizontal at orientation 0


def test_factor_checks_say_what_is_wrong(elsewhere):
    with pytest.raises(ValueError, match="column 3"):
        elsewhere.sample_observations_from_factors(np.array([[0, 0, 0, 32, 0]]))
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        elsewhere.sample_observations_from_factors(np.zeros((2, 7), np.int64))
    with pytest.raises(ValueError, match="supersample"):
        ElsewhereDSprites(supersample=0)
    assert get_dataset("dsprites_elsewhere", supersample=2).supersample == 2


# ---------------------------------------------------------- conventions --
@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_pos_x_moves_right_and_pos_y_moves_down(elsewhere, shape):
    xs = [centroid(im)[0] for im in draw(elsewhere, *[[shape, 3, 7, p, 10] for p in range(32)])]
    ys = [centroid(im)[1] for im in draw(elsewhere, *[[shape, 3, 7, 10, p] for p in range(32)])]
    assert (np.diff(xs) > 0.9).all() and (np.diff(ys) > 0.9).all()
    assert 31 < xs[-1] - xs[0] < 35 and 31 < ys[-1] - ys[0] < 35  # 32 px of travel


def test_the_centre_of_a_point_symmetric_sprite_sits_at_16_plus_32_pos(elsewhere):
    for p in (0, 9, 31):
        centre = 16 + 32 * p / 31 - 0.5  # continuous canvas -> pixel index coordinates
        for image in draw(elsewhere, [SQUARE, 2, 5, p, p], [ELLIPSE, 4, 13, p, 31 - p]):
            np.testing.assert_allclose(centroid(image)[0], centre, atol=0.05)


def test_every_sprite_stays_inside_the_canvas(elsewhere):
    rows = [[s, 5, o, x, y] for s in range(3) for o in range(0, 40, 3) for x in (0, 31) for y in (0, 31)]
    images = draw(elsewhere, *rows)
    centred = draw(elsewhere, *[[s, 5, o, 16, 16] for s, _, o, _, _ in rows])
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    assert border.max() == 0.0  # at least a pixel of background all round
    # nothing is cut off: the mass is that of the same sprite in the middle (up to the sampling phase)
    np.testing.assert_allclose(images.sum(axis=(1, 2)), centred.sum(axis=(1, 2)), rtol=0.03)


def test_orientation_turns_the_ellipse_counter_clockwise_on_screen(elsewhere, training):
    grid = elsewhere.factor_grid(2)
    for o in (0, 3, 8, 15, 24, 33):
        (image,) = draw(elsewhere, [ELLIPSE, 5, o, 16, 16])
        d = np.mod(axis_angle(image) - grid[o], np.pi)
        assert min(d, np.pi - d) < np.radians(2), o
    # and the training renderer turns it the same way
    for o in (3, 8):
        (mine,), (theirs,) = draw(elsewhere, [ELLIPSE, 5, o, 16, 16]), draw(training, [ELLIPSE, 5, o, 16, 16])
        assert abs(axis_angle(mine) - axis_angle(theirs)) < np.radians(4)


def test_orientation_turns_the_heart_counter_clockwise_from_tip_down(elsewhere):
    # the heart's mass lies above its centre (tip down); turned a quarter counter-clockwise, "up" becomes left
    up, left, down = draw(elsewhere, [HEART, 5, 0, 16, 16], [HEART, 5, 10, 16, 16], [HEART, 5, 20, 16, 16])
    centre = 16 + 32 * 16 / 31 - 0.5  # pos 16 in pixel index coordinates
    assert centroid(up)[1] < centre - 1.5 and abs(centroid(up)[0] - centre) < 0.1
    assert centroid(left)[0] < centre - 1.5 and abs(centroid(left)[1] - centre) < 0.5
    assert centroid(down)[1] > centre + 1.5


def test_orientation_zero_and_two_pi_draw_the_same_image(elsewhere):
    a, b = draw(elsewhere, [HEART, 3, 0, 5, 9], [HEART, 3, 39, 5, 9])
    np.testing.assert_allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------- heart --
def _outline_stats(image: np.ndarray) -> tuple[float, float]:
    """(fill of the bounding box, depth of the cleft / height) of an upright heart."""
    mask = image > 0.5
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    middle = (cols[0] + cols[-1]) // 2
    cleft = np.flatnonzero(mask[:, middle])[0] - rows[0]
    return mask.sum() / (height * width), cleft / height


def test_the_heart_is_another_curve_than_the_training_renderers(elsewhere, training):
    (mine,), (theirs,) = draw(elsewhere, [HEART, 5, 0, 16, 16]), draw(training, [HEART, 5, 0, 16, 16])
    fill_mine, cleft_mine = _outline_stats(mine)
    fill_theirs, cleft_theirs = _outline_stats(theirs)
    # size-free descriptors: the classic heart fills less of its box and has a deeper cleft
    assert fill_theirs - fill_mine > 0.05, (fill_mine, fill_theirs)
    assert cleft_mine > 1.5 * cleft_theirs, (cleft_mine, cleft_theirs)


def test_the_heart_outline_is_the_classic_parametric_heart():
    outline = heart_outline()
    assert outline.shape == (720, 2)
    np.testing.assert_allclose(outline[:, 0].min(), -16, atol=1e-3)
    np.testing.assert_allclose(outline[:, 0].max(), 16, atol=1e-3)
    np.testing.assert_allclose(outline[:, 1].max() + outline[:, 1].min(), 0, atol=1e-2)  # centred on its box
    # the filled polygon has the curve's area (565.49 units^2, by the shoelace formula of a fine sampling)
    step = 0.05
    xs, ys = np.arange(-17, 17, step) + step / 2, np.arange(-16, 16, step) + step / 2
    assert abs(fill_polygon(outline, xs, ys).sum() * step**2 - 565.49) < 2.0


def test_fill_polygon_fills_a_square_by_the_even_odd_rule():
    square = np.array([[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [1.0, 3.0]])
    xs = ys = np.arange(5) + 0.5
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(fill_polygon(square, xs, ys), expected)


# --------------------------------------------------------------- colour --
def test_colour_variant_uses_colour_dsprites_hues_with_the_grey_coverage_as_alpha(elsewhere):
    data = get_dataset("color_dsprites_elsewhere")
    factors = data.sample_factors(40, np.random.default_rng(4))
    x = data.sample_observations_from_factors(factors)
    assert x.shape == (40, 3, 64, 64) and x.dtype == np.float32
    alpha = elsewhere.sample_observations_from_factors(factors[:, :5])  # (N, 1, 64, 64)
    hues = np.arange(8) / 8
    obj = np.array([colorsys.hsv_to_rgb(hues[h], 1.0, 1.0) for h in factors[:, 5]])
    bg = np.array([colorsys.hsv_to_rgb(hues[h], 0.6, 0.35) for h in factors[:, 6]])
    expected = bg[:, :, None, None] + alpha * (obj - bg)[:, :, None, None]
    np.testing.assert_allclose(x, expected, atol=1e-6)
    # background and object pixels carry colour dSprites' own colours, edge pixels a mix of the two
    reference = get_dataset("color_dsprites").sample_observations_from_factors(factors)
    np.testing.assert_allclose(x[:, :, 0, 0], reference[:, :, 0, 0], atol=1e-6)
    inside = alpha[:, 0] == 1.0
    for i in range(len(x)):
        np.testing.assert_allclose(x[i][:, inside[i]].T, np.broadcast_to(obj[i], (inside[i].sum(), 3)), atol=1e-6)
    assert ((alpha > 0) & (alpha < 1)).any(axis=(1, 2, 3)).all()
