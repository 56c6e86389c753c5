"""Specification of the official-file loaders, on small files in the official layout."""

from __future__ import annotations

import itertools
import pickle

import h5py
import numpy as np
import pytest

from latentdial.training.data.official import DSpritesNPZ, Shapes3D, mixed_radix_strides

# Reduced grids in the official column order.
DSPRITES_SIZES = (1, 3, 2, 4, 3, 2)  # colour, shape, scale, orientation, pos_x, pos_y
SHAPES3D_SIZES = (2, 3, 2, 2, 4, 3)  # floor, wall, object hue, scale, shape, orientation


def grid_rows(sizes: tuple[int, ...]) -> np.ndarray:
    """Every combination in row-major order, (prod(sizes), len(sizes)) int."""
    return np.array(list(itertools.product(*[range(n) for n in sizes])), dtype=np.int64)


def write_dsprites(path, classes: np.ndarray, imgs: np.ndarray) -> None:
    grids = [
        np.array([1.0]),
        np.arange(1.0, 4.0),
        np.linspace(0.5, 1, DSPRITES_SIZES[2]),
        np.linspace(0, 2 * np.pi, DSPRITES_SIZES[3]),
        np.linspace(0, 1, DSPRITES_SIZES[4]),
        np.linspace(0, 1, DSPRITES_SIZES[5]),
    ]
    values = np.stack([grids[f][classes[:, f]] for f in range(6)], axis=1)
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=values)


@pytest.fixture()
def dsprites_file(tmp_path):
    classes = grid_rows(DSPRITES_SIZES)
    imgs = np.random.default_rng(0).integers(0, 2, size=(len(classes), 64, 64), dtype=np.uint8)
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    write_dsprites(path, classes, imgs)
    return path, classes, imgs


def test_mixed_radix_strides_put_the_last_factor_fastest():
    np.testing.assert_array_equal(mixed_radix_strides([3, 6, 40, 32, 32]), [245760, 40960, 1024, 32, 1])
    rows = grid_rows((2, 3, 4))
    np.testing.assert_array_equal(rows @ mixed_radix_strides((2, 3, 4)), np.arange(24))


def test_dsprites_npz_round_trips_a_reduced_grid_and_drops_colour(dsprites_file):
    path, classes, imgs = dsprites_file
    data = DSpritesNPZ(path)
    assert tuple(data.factor_names) == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert tuple(data.factors_num_values) == DSPRITES_SIZES[1:]
    assert data.observation_shape == (1, 64, 64)
    assert data.factor_labels(0) == ["square", "ellipse", "heart"]
    np.testing.assert_allclose(data.factor_grid(1), np.linspace(0.5, 1, DSPRITES_SIZES[2]))
    np.testing.assert_allclose(data.factor_grid(2), np.linspace(0, 2 * np.pi, DSPRITES_SIZES[3]))
    factors = data.sample_factors(50, np.random.default_rng(1))
    x = data.sample_observations_from_factors(factors, np.random.default_rng(2))
    assert x.shape == (50, 1, 64, 64) and x.dtype == np.float32
    for f, img in zip(factors, x, strict=True):
        (row,) = np.nonzero(np.all(classes[:, 1:] == f, axis=1))[0]
        np.testing.assert_array_equal(img[0], imgs[row].astype(np.float32))


def test_dsprites_npz_rejects_rows_out_of_grid_order(tmp_path, dsprites_file):
    _, classes, imgs = dsprites_file
    order = np.random.default_rng(0).permutation(len(classes))
    path = tmp_path / "shuffled.npz"
    write_dsprites(path, classes[order], imgs[order])
    with pytest.raises(ValueError, match="row-major"):
        DSpritesNPZ(path)


def test_dsprites_npz_rejects_missing_rows_missing_keys_and_missing_files(tmp_path, dsprites_file):
    _, classes, imgs = dsprites_file
    write_dsprites(tmp_path / "short.npz", classes[:-1], imgs[:-1])
    with pytest.raises(ValueError, match="every combination exactly once"):
        DSpritesNPZ(tmp_path / "short.npz")
    np.savez(tmp_path / "nokeys.npz", imgs=imgs)
    with pytest.raises(ValueError, match="missing keys .*latents_classes"):
        DSpritesNPZ(tmp_path / "nokeys.npz")
    with pytest.raises(FileNotFoundError, match="dsprites"):
        DSpritesNPZ(tmp_path / "absent.npz")


def test_dsprites_npz_requires_a_single_colour(tmp_path):
    sizes = (2,) + DSPRITES_SIZES[1:]
    classes = grid_rows(sizes)
    imgs = np.zeros((len(classes), 64, 64), np.uint8)
    values = classes.astype(float)
    np.savez(tmp_path / "colours.npz", imgs=imgs, latents_classes=classes, latents_values=values)
    with pytest.raises(ValueError, match="colour"):
        DSpritesNPZ(tmp_path / "colours.npz")


def write_shapes3d(path, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    classes = grid_rows(SHAPES3D_SIZES)
    grids = [
        np.arange(SHAPES3D_SIZES[0]) / 10,
        np.arange(SHAPES3D_SIZES[1]) / 10,
        np.arange(SHAPES3D_SIZES[2]) / 10,
        np.linspace(0.75, 1.25, SHAPES3D_SIZES[3]),
        np.arange(SHAPES3D_SIZES[4], dtype=float),
        np.linspace(-30, 30, SHAPES3D_SIZES[5]),
    ]
    labels = np.stack([grids[f][classes[:, f]] for f in range(6)], axis=1)
    images = np.random.default_rng(5).integers(0, 256, size=(len(classes), 64, 64, 3), dtype=np.uint8)
    if order is not None:
        labels, images = labels[order], images[order]
    with h5py.File(path, "w") as fh:
        fh.create_dataset("images", data=images)
        fh.create_dataset("labels", data=labels)
    return labels, images


@pytest.mark.parametrize("in_memory", [False, True])
def test_shapes3d_round_trips_a_reduced_grid(tmp_path, in_memory):
    path = tmp_path / "3dshapes.h5"
    labels, images = write_shapes3d(path)
    data = Shapes3D(path, in_memory=in_memory)
    assert tuple(data.factor_names) == (
        "floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"
    )
    assert tuple(data.factors_num_values) == SHAPES3D_SIZES
    assert data.observation_shape == (3, 64, 64)
    np.testing.assert_allclose(data.factor_grid(5), np.linspace(-30, 30, SHAPES3D_SIZES[5]))
    factors = data.sample_factors(40, np.random.default_rng(3))
    factors[1] = factors[0]  # a repeated row must come back twice
    x = data.sample_observations_from_factors(factors, np.random.default_rng(4))
    assert x.shape == (40, 3, 64, 64) and x.dtype == np.float32
    physical = data.factor_values(factors)
    for value, img in zip(physical, x, strict=True):
        (row,) = np.nonzero(np.all(np.isclose(labels, value), axis=1))[0]
        np.testing.assert_allclose(img, images[row].transpose(2, 0, 1) / 255.0, atol=1e-6)
    data.close()


def test_shapes3d_rejects_rows_out_of_grid_order(tmp_path):
    path = tmp_path / "3dshapes.h5"
    n = int(np.prod(SHAPES3D_SIZES))
    write_shapes3d(path, order=np.roll(np.arange(n), 1))
    with pytest.raises(ValueError, match="row-major"):
        Shapes3D(path)


def test_shapes3d_rejects_a_file_without_labels(tmp_path):
    path = tmp_path / "3dshapes.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("images", data=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="missing datasets .*labels"):
        Shapes3D(path)


def test_shapes3d_survives_pickling_by_reopening_the_file(tmp_path):
    path = tmp_path / "3dshapes.h5"
    write_shapes3d(path)
    data = Shapes3D(path)
    factors = data.sample_factors(5, np.random.default_rng(0))
    clone = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(
        clone.sample_observations_from_factors(factors), data.sample_observations_from_factors(factors)
    )
    clone.close()
    data.close()
