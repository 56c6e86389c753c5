"""Specification of the labelled-folder writer (training/data/write_folder.py) and ``latentdial make-folder``."""

from __future__ import annotations

import csv
import importlib.util
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentdial.cli import main as cli_main
from latentdial.training.data import get_dataset
from latentdial.training.data.base import GroundTruthData
from latentdial.training.data.write_folder import (
    circular_levels,
    factor_schema,
    schema_toml,
    write_labelled_folder,
)
from latentdial.training.factor_card_fit import circular_period


def read_rows(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (folder / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def check_folder(folder: Path, data: GroundTruthData, num: int, labelled: int) -> list[dict[str, str]]:
    """Every promise of the format, checked against the dataset that wrote it; returns the rows."""
    header, rows = read_rows(folder)
    assert header == ["file_name", *data.factor_names]
    assert len(rows) == num
    full = [r for r in rows if all(r[n] != "" for n in data.factor_names)]
    empty = [r for r in rows if all(r[n] == "" for n in data.factor_names)]
    assert len(full) == labelled and len(empty) == num - labelled  # a row is all filled or all empty
    for row in full:
        for f, (name, kind) in enumerate(zip(data.factor_names, data.factor_kinds, strict=True)):
            if kind == "categorical":
                labels = data.factor_labels(f) or [str(i) for i in range(data.factors_num_values[f])]
                assert row[name] in labels, (name, row[name])
            else:
                assert float(row[name]) in data.factor_grid(f).tolist(), (name, row[name])  # exact round trip
    files = sorted(p.relative_to(folder).as_posix() for p in (folder / "images").iterdir())
    assert files == sorted(r["file_name"] for r in rows)
    assert rows[0]["file_name"] == "images/000000.png"
    mode = "L" if data.observation_shape[0] == 1 else "RGB"
    for row in rows[:5]:
        with Image.open(folder / row["file_name"]) as im:
            assert (im.format, im.mode, im.size) == ("PNG", mode, data.observation_shape[:0:-1])

    schema = tomllib.loads((folder / "factors.toml").read_text())["factors"]
    assert list(schema) == list(data.factor_names)
    for f, (name, kind) in enumerate(zip(data.factor_names, data.factor_kinds, strict=True)):
        table, grid = schema[name], data.factor_grid(f)
        assert table["kind"] == kind
        if kind == "categorical":
            assert table["labels"] == (data.factor_labels(f) or [str(i) for i in range(len(grid))])
        elif kind == "continuous":
            assert set(table) == {"kind", "range", "levels"}
            assert table["range"] == [grid.min(), grid.max()] and table["levels"] == len(grid)
        else:
            assert set(table) == {"kind", "period", "levels"}
            assert table["period"] == circular_period(grid)
            assert table["levels"] == len(np.unique(np.round(np.mod(grid, table["period"]), 9) % table["period"]))
    return rows


@pytest.mark.parametrize("name", ["dsprites", "color_dsprites"])
def test_a_folder_of_a_procedural_dataset_keeps_every_promise(tmp_path, name):
    data = get_dataset(name)
    out = write_labelled_folder(data, tmp_path / name, 40, 13, np.random.default_rng(0))
    assert out == tmp_path / name
    rows = check_folder(out, data, 40, 13)
    # the labelled cells are the factors the image was rendered from: render them again
    factors = data.sample_factors(40, np.random.default_rng(0))
    for i in (0, 17, 39):
        with Image.open(out / rows[i]["file_name"]) as im:
            pixels = np.asarray(im, dtype=np.float32) / 255
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        np.testing.assert_allclose(pixels, data.sample_observations_from_factors(factors[i : i + 1], None)[0],
                                   atol=0.5 / 255)


def test_the_dsprites_schema_and_cells():
    data = get_dataset("dsprites")
    schema = factor_schema(data)
    assert schema["shape"] == {"kind": "categorical", "labels": ["square", "ellipse", "heart"]}
    assert schema["scale"] == {"kind": "continuous", "range": [0.5, 1.0], "levels": 6}
    # linspace(0, 2 pi, 40) closes the circle: 2 pi is 0 again, so 39 distinct values
    assert schema["orientation"] == {"kind": "circular", "period": 2 * math.pi, "levels": 39}
    text = schema_toml(schema)
    assert "[factors.orientation]\nkind = \"circular\"\nperiod = 6.283185307179586\nlevels = 39\n" in text
    assert tomllib.loads(text)["factors"] == schema
    hues = get_dataset("color_dsprites")
    assert factor_schema(hues)["object_hue"] == {"kind": "circular", "period": 1.0, "levels": 8}


def test_circular_levels_count_distinct_values_modulo_the_period():
    assert circular_levels(np.arange(40) * 2 * np.pi / 40, 2 * np.pi) == 40
    assert circular_levels(np.linspace(0, 2 * np.pi, 40), 2 * np.pi) == 39
    assert circular_levels(np.linspace(0, 360, 13), 360.0) == 12
    assert circular_levels(np.arange(8) / 8, 1.0) == 8


def test_labelled_rows_and_images_are_determined_by_the_generator(tmp_path):
    data = get_dataset("dsprites")
    a = write_labelled_folder(data, tmp_path / "a", 30, 7, np.random.default_rng(5))
    b = write_labelled_folder(data, tmp_path / "b", 30, 7, np.random.default_rng(5))
    c = write_labelled_folder(data, tmp_path / "c", 30, 7, np.random.default_rng(6))
    assert (a / "metadata.csv").read_bytes() == (b / "metadata.csv").read_bytes()
    assert (a / "metadata.csv").read_bytes() != (c / "metadata.csv").read_bytes()
    assert (a / "images/000012.png").read_bytes() == (b / "images/000012.png").read_bytes()


def test_all_or_none_labelled_and_progress(tmp_path):
    data = get_dataset("dsprites")
    seen: list[int] = []
    check_folder(write_labelled_folder(data, tmp_path / "all", 300, 300, np.random.default_rng(0),
                                       progress=seen.append), data, 300, 300)
    assert seen == [256, 44]
    check_folder(write_labelled_folder(data, tmp_path / "none", 3, 0, np.random.default_rng(0)), data, 3, 0)


def test_refuses_a_non_empty_folder_and_bad_counts(tmp_path):
    data = get_dataset("dsprites")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        write_labelled_folder(data, tmp_path / "taken", 4, 2, np.random.default_rng(0))
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    write_labelled_folder(data, tmp_path / "empty", 2, 1, np.random.default_rng(0))  # an empty one is fine
    with pytest.raises(ValueError, match="cannot exceed"):
        write_labelled_folder(data, tmp_path / "x", 4, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 1"):
        write_labelled_folder(data, tmp_path / "x", 0, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="image_format"):
        write_labelled_folder(data, tmp_path / "x", 4, 1, np.random.default_rng(0), image_format="gif")
    assert not (tmp_path / "x").exists()


def test_jpeg_images(tmp_path):
    data = get_dataset("color_dsprites")
    out = write_labelled_folder(data, tmp_path / "j", 3, 3, np.random.default_rng(0), image_format="jpeg")
    _, rows = read_rows(out)
    assert rows[0]["file_name"] == "images/000000.jpg"
    with Image.open(out / rows[0]["file_name"]) as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 64))


class _Unnamed(GroundTruthData):
    """A categorical factor without labels and a factor name that TOML must quote."""

    factor_names = ("kind", "odd name")
    factors_num_values = (3, 4)
    factor_kinds = ("categorical", "continuous")
    observation_shape = (1, 8, 8)

    def factor_grid(self, factor: int) -> np.ndarray:
        return np.arange(3.0) if factor == 0 else np.linspace(-1.0, 0.25, 4)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.broadcast_to(factors[:, :1, None, None] / 2.0, (len(factors), 1, 8, 8)).astype(np.float32)


def test_unlabelled_categories_are_written_as_their_indices(tmp_path):
    data = _Unnamed()
    out = write_labelled_folder(data, tmp_path / "u", 10, 10, np.random.default_rng(0))
    rows = check_folder(out, data, 10, 10)
    assert {r["kind"] for r in rows} <= {"0", "1", "2"}
    schema = tomllib.loads((out / "factors.toml").read_text())["factors"]
    assert schema == {"kind": {"kind": "categorical", "labels": ["0", "1", "2"]},
                      "odd name": {"kind": "continuous", "range": [-1.0, 0.25], "levels": 4}}


def test_idsprites_folder(tmp_path):
    pytest.importorskip("idsprites")
    data = get_dataset("idsprites")
    out = write_labelled_folder(data, tmp_path / "ids", 12, 5, np.random.default_rng(0))
    check_folder(out, data, 12, 5)
    schema = tomllib.loads((out / "factors.toml").read_text())["factors"]
    assert schema["shape"]["labels"] == ["shape_0", "shape_1", "shape_2"]
    assert schema["color"]["labels"] == ["red", "green", "blue", "yellow"]
    assert schema["orientation"] == {"kind": "circular", "period": 2 * math.pi, "levels": 40}


def test_make_folder_command(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["make-folder", "--dataset", "dsprites", "--num", "20", "--labelled", "4", "--seed", "3",
            "--out", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    assert "wrote 20 images (4 labelled) of dsprites" in capsys.readouterr().out
    check_folder(out, get_dataset("dsprites"), 20, 4)
    direct = write_labelled_folder(get_dataset("dsprites"), tmp_path / "direct", 20, 4, np.random.default_rng(3))
    assert (out / "metadata.csv").read_bytes() == (direct / "metadata.csv").read_bytes()

    assert cli_main(argv) == 2  # the folder is taken now
    assert "not an empty directory" in capsys.readouterr().err
    assert cli_main([*argv[:-3], "--no-progress", "--out", str(tmp_path / "y"), "--labelled", "30"]) == 2
    assert "cannot exceed" in capsys.readouterr().err
    assert cli_main(["make-folder", "--dataset", "dsprites", "--dataset-option", "size=3", "--num", "2",
                     "--labelled", "1", "--out", str(tmp_path / "z")]) == 2
    assert "takes no options" in capsys.readouterr().err


def test_make_folder_passes_dataset_options(tmp_path):
    pytest.importorskip("idsprites")
    out = tmp_path / "ids"
    assert cli_main(["make-folder", "--dataset", "idsprites", "--dataset-option", "num_shapes=2",
                     "--dataset-option", "image_size=32", "--num", "4", "--labelled", "4",
                     "--out", str(out), "--no-progress"]) == 0
    schema = tomllib.loads((out / "factors.toml").read_text())["factors"]
    assert schema["shape"]["labels"] == ["shape_0", "shape_1"]
    with Image.open(out / "images/000000.png") as im:
        assert im.size == (32, 32)


@pytest.mark.skipif(importlib.util.find_spec("latentdial.training.data.labelled_folder") is None,
                    reason="the labelled folder reader is not there")
def test_the_labelled_folder_reader_reads_back_what_was_written(tmp_path):
    for name in ("dsprites", "color_dsprites"):
        data = get_dataset(name)
        out = write_labelled_folder(data, tmp_path / name, 30, 11, np.random.default_rng(1))
        back = get_dataset("labelled_folder", path=out, channels=data.observation_shape[0],
                           cache_dir=tmp_path / "cache")
        assert tuple(back.factor_names) == tuple(data.factor_names)
        factors = data.sample_factors(30, np.random.default_rng(1))
        labelled = np.flatnonzero(back.labels[:, 0] >= 0)
        assert len(labelled) == 11 and (back.labels[labelled] >= 0).all()
        assert (back.labels[np.setdiff1d(np.arange(30), labelled)] == -1).all()
        for f, kind in enumerate(data.factor_kinds):
            written = data.factor_grid(f)[factors[labelled, f]]
            read = back.factor_grid(f)[back.labels[labelled, f]]
            if kind == "categorical":
                assert [back.factor_labels(f)[i] for i in back.labels[labelled, f]] == \
                    [data.factor_labels(f)[i] for i in factors[labelled, f]]
            elif kind == "circular":
                period = circular_period(data.factor_grid(f))
                gap = np.abs((written - read + period / 2) % period - period / 2)
                np.testing.assert_allclose(gap, 0, atol=1e-9)
            else:
                np.testing.assert_allclose(read, written, atol=1e-9)
        np.testing.assert_array_equal(back.files, [f"images/{i:06d}.png" for i in range(30)])
