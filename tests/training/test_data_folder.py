"""Specification of the unlabelled image-folder dataset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from latentdial.training.data import BatchStream
from latentdial.training.data.folder import ImageFolder
from latentdial.training.data.pairs import sample_weak_pairs

COLOURS = [(255, 0, 0), (0, 128, 255), (40, 200, 40)]


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (100, 80), COLOURS[0]).save(tmp_path / "a.png")
    Image.new("RGB", (30, 30), COLOURS[1]).save(tmp_path / "sub" / "b.PNG")
    Image.new("RGB", (64, 48), COLOURS[2]).save(tmp_path / "c.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_finds_png_and_jpeg_recursively_and_ignores_other_files(folder):
    data = ImageFolder(folder)
    assert [p.name for p in data.files] == ["a.png", "c.jpg", "b.PNG"]
    assert len(data) == 3


def test_folder_resizes_to_rgb_images_in_unit_range(folder):
    data = ImageFolder(folder, channels=3, image_size=32)
    assert data.observation_shape == (3, 32, 32)
    x = data.load(np.arange(3))
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32
    for img, colour in zip(x, [COLOURS[0], COLOURS[2], COLOURS[1]], strict=True):
        np.testing.assert_allclose(img.mean(axis=(1, 2)), np.array(colour) / 255, atol=0.03)


def test_folder_converts_to_grey_with_one_channel(folder):
    data = ImageFolder(folder, channels=1, image_size=16)
    x = data.sample_observations(10, np.random.default_rng(0))
    assert x.shape == (10, 1, 16, 16)
    assert 0 <= x.min() and x.max() <= 1
    red_grey = data.load([0])[0, 0, 0, 0]
    assert red_grey == pytest.approx(Image.new("RGB", (1, 1), COLOURS[0]).convert("L").getpixel((0, 0)) / 255)


def test_folder_has_no_factors_and_samples_deterministically(folder):
    data = ImageFolder(folder)
    assert tuple(data.factor_names) == () and data.num_factors == 0
    factors, x = data.sample(5, np.random.default_rng(1))
    assert factors.shape == (5, 0)
    np.testing.assert_array_equal(x, data.sample_observations(5, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="unlabelled"):
        data.sample_observations_from_factors(factors, np.random.default_rng(0))


def test_folder_cannot_make_weak_pairs(folder):
    data = ImageFolder(folder)
    with pytest.raises(ValueError, match="unlabelled"):
        BatchStream(data, 4, 0, pairs=True)
    with pytest.raises(ValueError, match="factors"):
        sample_weak_pairs(data, 4, np.random.default_rng(0))


def test_empty_folder_says_what_to_put_in_it(tmp_path):
    (tmp_path / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match="no images .*PNG or JPEG"):
        ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(tmp_path, channels=2)


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    data = ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="broken.png"):
        data.sample_observations(1, np.random.default_rng(0))


def test_folder_survives_pickling_for_worker_processes(folder):
    data = ImageFolder(folder, channels=3, image_size=8)
    before = data.sample_observations(4, np.random.default_rng(2))
    clone = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(clone.sample_observations(4, np.random.default_rng(2)), before)
