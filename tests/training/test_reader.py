"""The attribute reader: reads every factor of ground-truth renders, orientation modulo symmetry,
does not mistake a blob for a heart, and lives in shipped weights, a cache or a fresh training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentdial.training.data import get_dataset
from latentdial.training.data.dsprites import ORIENTATIONS
from latentdial.training.reader import EDIT_TOLERANCE, EXACT, Reading, agreement, load_reader, store
from latentdial.training.reader.fit import blur, fit_reader, heldout_accuracy
from latentdial.training.reader.network import CROP, centre_crop
from latentdial.training.reader.reading import ORIENTATION_STEP, READABLE, symmetric_distance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dsprites_reader():
    return load_reader("dsprites", train=False)


def test_shipped_dsprites_reader_reads_fresh_renders_exactly(dsprites_reader):
    accuracy = heldout_accuracy(dsprites_reader, get_dataset("dsprites"), num=2000, seed=123)
    for factor in ("shape", "scale", "pos_x", "pos_y"):
        assert accuracy[factor]["exact"] >= 0.99, (factor, accuracy[factor])
    assert accuracy["orientation"]["edit_tolerance"] >= 0.97


def test_shipped_dsprites_reader_reads_slightly_soft_renders_too(dsprites_reader):
    accuracy = heldout_accuracy(dsprites_reader, get_dataset("dsprites"), num=1000, seed=7, soft=True)
    for factor in ("shape", "scale", "pos_x", "pos_y"):
        assert accuracy[factor]["exact"] >= 0.98, (factor, accuracy[factor])


def test_shipped_colour_reader_reads_hues_and_shapes():
    reader = load_reader("color_dsprites", train=False)
    accuracy = heldout_accuracy(reader, get_dataset("color_dsprites"), num=1000, seed=5)
    for factor in ("shape", "scale", "pos_x", "pos_y", "object_hue", "background_hue"):
        assert accuracy[factor]["exact"] >= 0.99, (factor, accuracy[factor])
    assert accuracy["orientation"]["edit_tolerance"] >= 0.97


def test_rotating_a_square_by_90_degrees_reads_as_the_same_orientation(dsprites_reader):
    ds = get_dataset("dsprites")
    # orientation grid step is 2 pi / 39, so 90 degrees is 9.75 steps: compare index 0 with 10 (92.3 deg)
    factors = np.array([[0, 5, 0, 16, 16], [0, 5, 10, 16, 16], [2, 5, 0, 16, 16], [2, 5, 10, 16, 16]])
    reading = dsprites_reader.read(ds.sample_observations_from_factors(factors))
    square = symmetric_distance(reading.angle[0:1], reading.angle[1:2], np.array([0]))[0]
    heart = symmetric_distance(reading.angle[2:3], reading.angle[3:4], np.array([2]))[0]
    assert square < 1.5 * ORIENTATION_STEP  # 92.3 deg is 2.3 deg from 90
    assert heart > 8 * ORIENTATION_STEP  # a heart has no such symmetry


def test_symmetric_distance_wraps_at_each_shapes_period():
    quarter, half = np.pi / 2, np.pi
    d = symmetric_distance(np.array([0.1, 0.1, 0.1]), np.array([0.1 + quarter, 0.1 + half, 0.1 + half]),
                           np.array([0, 1, 2]))
    np.testing.assert_allclose(d, [0.0, 0.0, np.pi], atol=1e-12)


def test_agreement_applies_each_factors_tolerance():
    names = READABLE["dsprites"]
    truth = np.array([[1, 3, 20, 10, 10]])
    angle = ORIENTATIONS[20] - np.pi  # an ellipse turned by 180 degrees looks the same
    near = Reading(np.array([[1, 4, 0, 11, 9]]), np.array([np.mod(angle, np.pi) + 2 * ORIENTATION_STEP]))
    far = Reading(np.array([[2, 5, 0, 12, 8]]), np.array([np.mod(angle, np.pi) + 3 * ORIENTATION_STEP]))
    assert agreement(names, near, truth, EDIT_TOLERANCE).tolist() == [[True] * 5]
    assert agreement(names, far, truth, EDIT_TOLERANCE).tolist() == [[False] * 5]
    assert agreement(names, near, truth, EXACT).tolist() == [[True, False, False, False, False]]


def _discs(n: int, rng: np.random.Generator, radii: tuple[float, float] = (6, 9)) -> tuple[np.ndarray, np.ndarray]:
    """Soft round blobs where dSprites puts its sprites: (images (n,1,64,64), pos (n,2))."""
    pos = rng.integers(0, 32, size=(n, 2))
    radius = rng.uniform(*radii, size=n)
    yy, xx = np.mgrid[0:64, 0:64]
    d = np.hypot(xx[None] - (16 + pos[:, 0, None, None]), yy[None] - (16 + pos[:, 1, None, None]))
    images = 1 / (1 + np.exp((d - radius[:, None, None]) / 0.7))
    return images[:, None].astype(np.float32), pos


def test_a_blob_is_read_in_its_place_but_not_as_a_heart(dsprites_reader):
    images, pos = _discs(300, np.random.default_rng(0))
    reading = dsprites_reader.read(images)
    assert (reading.factors[:, 0] != 2).mean() >= 0.97  # 2: heart
    np.testing.assert_array_less(np.abs(reading.factors[:, 3:5] - pos), 1.01)


def test_a_blob_the_size_of_the_smallest_heart_is_ambiguous_and_read_as_one_at_most_a_third_of_the_time(
        dsprites_reader):
    # a heart at scale 0.5 is about 12 px across and nearly round; a 10-12 px disc is close to it
    images, _ = _discs(300, np.random.default_rng(1), radii=(5, 6))
    assert (dsprites_reader.read(images).factors[:, 0] == 2).mean() <= 0.35


def test_centre_crop_centres_the_sprite_and_keeps_it_whole():
    ds = get_dataset("dsprites")
    factors = ds.sample_factors(64, np.random.default_rng(3))
    images = torch.from_numpy(ds.sample_observations_from_factors(factors))
    crops, centres = centre_crop(images)
    assert crops.shape == (64, 1, CROP, CROP)
    assert torch.equal(crops.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)))  # nothing cut off
    true_centre = torch.from_numpy(factors[:, 3:5] + 16.0)
    assert (centres - true_centre).abs().max() < 3.0


def test_blur_keeps_the_mass_and_sigma_zero_is_the_identity():
    x = torch.zeros(2, 1, 64, 64)
    x[:, :, 30:34, 30:34] = 1
    out = blur(x, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out[0], x[0])
    assert out[1].max() < 1 and abs(float(out[1].sum()) - 16.0) < 1e-3


def test_a_short_training_already_reads_shape_and_scale(tmp_path):
    ds = get_dataset("dsprites")
    reader = fit_reader(ds, "dsprites", steps=120, batch_size=64, progress=False)
    accuracy = heldout_accuracy(reader, ds, num=500)
    assert accuracy["shape"]["exact"] > 0.8 and accuracy["scale"]["exact"] > 0.6


def test_the_cache_is_used_only_for_the_same_recipe(tmp_path, monkeypatch, dsprites_reader):
    monkeypatch.setenv("LATENTDIAL_CACHE", str(tmp_path))
    monkeypatch.setattr(store, "SHIPPED", tmp_path / "nothing shipped")
    with pytest.raises(FileNotFoundError, match="train-reader"):
        load_reader("dsprites", train=False)
    store.save_reader(dsprites_reader, store.cached_path("dsprites"), {"clean": {}})
    assert store.cached_path("dsprites").parent == tmp_path / "reader"
    loaded = load_reader("dsprites", train=False)
    images = get_dataset("dsprites").sample_observations(16, np.random.default_rng(0))
    np.testing.assert_array_equal(loaded.read(images).factors, dsprites_reader.read(images).factors)
    monkeypatch.setattr(store, "RECIPE", "another recipe")
    with pytest.raises(FileNotFoundError):
        load_reader("dsprites", train=False)


def test_unknown_datasets_and_wrong_image_shapes_are_refused(dsprites_reader):
    with pytest.raises(ValueError, match="readable: dsprites, color_dsprites"):
        load_reader("shapes3d")
    with pytest.raises(ValueError, match=r"\(N, 1, 64, 64\)"):
        dsprites_reader.read(np.zeros((2, 64, 64, 1), np.float32))


def test_train_reader_writes_weights_with_their_accuracy_and_refuses_unknown_datasets(tmp_path, capsys):
    from latentdial.cli import main

    out = tmp_path / "reader.safetensors"
    assert main(["train-reader", "--dataset", "dsprites", "--steps", "3", "--out", str(out), "--quiet"]) == 0
    meta = store.read_metadata(out)
    assert meta["dataset"] == "dsprites" and meta["recipe"] == store.RECIPE
    assert "held-out accuracy" in capsys.readouterr().out
    assert store.load_file_reader(out).read(np.zeros((1, 1, 64, 64), np.float32)).factors.shape == (1, 5)
    assert main(["train-reader", "--dataset", "shapes3d", "--quiet"]) == 2
    assert "no attribute reader" in capsys.readouterr().err
