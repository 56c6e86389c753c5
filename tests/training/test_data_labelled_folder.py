"""Labelled image folders: metadata.csv (or .jsonl) + factors.toml + images, in the imagefolder convention."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentdial.training.data import BatchStream
from latentdial.training.data.image_store import ImageStore
from latentdial.training.data.labelled_folder import FolderError, LabelledImageFolder
from latentdial.training.data.rows import held_out_split
from latentdial.training.data.schema import SchemaError, load_schema, parse_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = """
[factors.shape]
kind = "categorical"
labels = ["square", "ellipse", "heart"]

[factors.scale]
kind = "continuous"
range = [0.5, 1.0]
levels = 6

[factors.angle]
kind = "circular"
period = 360
levels = 8
"""
COLUMNS = ["file_name", "shape", "scale", "angle"]


def _image(path: Path, value: int, size: tuple[int, int] = (20, 20), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    arr[: size[1] // 2] = 255 - value  # a top half that differs, so resizing is visible
    if mode == "I;16":  # a real 16-bit grey image: 0 .. 65535
        Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(path)
    else:
        Image.fromarray(arr, "RGB").convert(mode).save(path)


def make_folder(root: Path, rows: list[list[str]], *, schema: str = SCHEMA, columns: list[str] = COLUMNS,
                images: bool = True) -> Path:
    """A folder with one image per row (unless ``images`` is False) and metadata.csv of ``rows``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "factors.toml").write_text(schema)
    with (root / "metadata.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        w.writerows(rows)
    if images:
        for i, row in enumerate(rows):
            if row[0] and not row[0].startswith(".."):
                _image(root / row[0], (10 * i) % 256)
    return root


def load(root: Path, tmp_path: Path, **kwargs) -> LabelledImageFolder:
    return LabelledImageFolder(root, channels=3, image_size=16, cache_dir=tmp_path / "cache", **kwargs)


GOOD = [["a/0.png", "square", "0.5", "0"], ["a/1.png", "heart", "1.0", "90"], ["b/2.png", "", "", ""],
        ["b/3.png", "ellipse", "", "359"], ["4.png", "", "0.7", ""]]


# -- the schema ------------------------------------------------------------------------
def test_the_schema_names_each_factors_kind_grid_and_labels(tmp_path):
    (tmp_path / "f.toml").write_text(SCHEMA)
    schema = load_schema(tmp_path / "f.toml")
    assert schema.names == ("shape", "scale", "angle")
    shape, scale, angle = schema.factors
    assert shape.index_of("heart") == 2 and shape.levels == 3
    assert np.allclose(scale.grid(), [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]) and scale.index_of("0.71") == 2
    assert np.allclose(angle.grid(), np.arange(8) * 45.0)
    assert angle.index_of("359") == 0 and angle.index_of("-45") == 7 and angle.index_of("405") == 1  # wraps


@pytest.mark.parametrize("text, says", [
    ('[factors.x]\nkind = "colour"', "kind must be one of"),
    ('[factors.x]\nkind = "categorical"\nlabels = ["one"]', "at least two distinct"),
    ('[factors.x]\nkind = "continuous"\nrange = [1, 0]', "min < max"),
    ('[factors.x]\nkind = "circular"', "period must be a positive number"),
    ('[factors.x]\nkind = "continuous"\nrange = [0, 1]\nlabels = ["a", "b"]', "do not apply to a continuous"),
    ('[factors.x]\nkind = "continuous"\nrange = [0, 1]\nlevels = 1', "levels must be an integer >= 2"),
    ("title = 'x'", "unknown top-level key"),
    ("[factors]", "no factors"),
])
def test_a_malformed_schema_is_refused_with_the_fix(text, says):
    import tomllib

    with pytest.raises(SchemaError, match=says):
        parse_schema(tomllib.loads(text), "factors.toml")


def test_a_missing_schema_says_what_to_write(tmp_path):
    with pytest.raises(SchemaError, match="no factor schema.*factors.toml"):
        load_schema(tmp_path / "factors.toml")


# -- reading a folder --------------------------------------------------------------------
def test_labels_become_grid_indices_and_an_empty_cell_means_not_labelled(tmp_path):
    data = load(make_folder(tmp_path / "d", GOOD), tmp_path)
    assert data.factor_names == ("shape", "scale", "angle")
    assert data.factor_kinds == ("categorical", "continuous", "circular")
    assert data.factor_labels(0) == ["square", "ellipse", "heart"]
    by_file = dict(zip(data.files, data.labels.tolist(), strict=True))
    assert by_file == {"a/0.png": [0, 0, 0], "a/1.png": [2, 5, 2], "b/2.png": [-1, -1, -1],
                       "b/3.png": [1, -1, 0], "4.png": [-1, 2, -1]}
    assert list(data.labelled_rows()) == [data.files.index(f) for f in ("a/0.png", "a/1.png", "b/3.png", "4.png")]
    assert list(data.complete_rows()) == [data.files.index("a/0.png"), data.files.index("a/1.png")]


def test_metadata_jsonl_reads_as_the_csv_does(tmp_path):
    root = make_folder(tmp_path / "d", GOOD)
    csv_labels = load(root, tmp_path).labels
    (root / "metadata.csv").unlink()
    with (root / "metadata.jsonl").open("w") as fh:
        for row in GOOD:
            fh.write(json.dumps({c: v for c, v in zip(COLUMNS, row, strict=True) if v != ""}) + "\n")
    assert np.array_equal(load(root, tmp_path).labels, csv_labels)


def test_images_no_row_names_are_used_unlabelled_unless_they_link_out_of_the_folder(tmp_path):
    root = make_folder(tmp_path / "d", GOOD)
    _image(root / "extra" / "x.jpg", 7)
    _image(tmp_path / "outside.png", 9)
    (root / "extra" / "link.png").symlink_to(tmp_path / "outside.png")
    data = load(root, tmp_path)
    assert len(data) == 6 and data.labels[data.files.index("extra/x.jpg")].tolist() == [-1, -1, -1]
    assert "extra/link.png" not in data.files


@pytest.mark.parametrize("mode, size", [("RGB", (16, 16)), ("RGBA", (40, 25)), ("P", (33, 70)), ("L", (300, 200)),
                                        ("I;16", (17, 17)), ("CMYK", (20, 20)), ("1", (64, 64))])
def test_any_size_and_mode_is_brought_to_the_models_channels_and_resolution(tmp_path, mode, size):
    root = make_folder(tmp_path / "d", [["x.png" if mode != "CMYK" else "x.jpg", "square", "0.5", "0"]],
                       images=False)
    _image(root / ("x.png" if mode != "CMYK" else "x.jpg"), 200, size=size, mode=mode)
    for channels in (1, 3):
        data = LabelledImageFolder(root, channels=channels, image_size=16, cache_dir=tmp_path / "cache")
        x = data.load(np.array([0]))
        assert x.shape == (1, channels, 16, 16) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0  # the two halves survive


def test_images_round_trip_exactly_at_the_models_size(tmp_path):
    root = make_folder(tmp_path / "d", [["x.png", "square", "0.5", "0"]], images=False)
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(root / "x.png")
    x = load(root, tmp_path).load(np.array([0, 0]))
    assert np.array_equal(np.rint(x[1] * 255).astype(np.uint8), arr.transpose(2, 0, 1))


# -- bad data ------------------------------------------------------------------------------
@pytest.mark.parametrize("row, says", [
    (["z.png", "circle", "0.5", "0"], r"line 3 \('z.png'\): shape: unknown label 'circle'"),
    (["z.png", "square", "1.5", "0"], r"line 3 \('z.png'\): scale: 1.5 is outside the declared range \[0.5, 1.0\]"),
    (["z.png", "square", "big", "0"], r"line 3 \('z.png'\): scale: 'big' is not a number"),
    (["z.png", "square", "nan", "0"], r"line 3 \('z.png'\): scale: 'nan' is not a finite number"),
    (["a/0.png", "square", "0.5", "0"], r"line 3 \('a/0.png'\): duplicate file_name \(first on line 2\)"),
    (["../escape.png", "square", "0.5", "0"], r"line 3 \('../escape.png'\): the path leaves the folder"),
    (["", "square", "0.5", "0"], r"line 3 \(''\): empty file_name"),
])
def test_a_bad_row_is_an_error_naming_the_file_and_the_line(tmp_path, row, says):
    rows = [["a/0.png", "square", "0.5", "0"], row]
    root = make_folder(tmp_path / "d", rows)
    with pytest.raises(FolderError, match=says) as err:
        load(root, tmp_path)
    assert len(err.value.bad) == 1 and "--skip-bad" in str(err.value)


def test_a_missing_or_unreadable_image_is_an_error_naming_the_file_and_the_line(tmp_path):
    root = make_folder(tmp_path / "d", GOOD)
    (root / "a" / "1.png").unlink()
    (root / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(FolderError, match=r"line 3 \('a/1.png'\): image file not found"):
        load(root, tmp_path)
    (root / "metadata.csv").write_text((root / "metadata.csv").read_text().replace("a/1.png,heart,1.0,90\n", ""))
    with pytest.raises(FolderError, match=r"line 3 \('b/2.png'\): cannot read image .*2.png"):
        load(root, tmp_path)


def test_skip_bad_drops_each_bad_row_and_says_how_many(tmp_path):
    root = make_folder(tmp_path / "d", GOOD + [["5.png", "circle", "0.5", "0"], ["6.png", "square", "2", "0"]])
    (root / "b" / "2.png").write_bytes(b"garbage")
    data = load(root, tmp_path, skip_bad=True)
    assert len(data) == 4 and sorted(data.files) == ["4.png", "a/0.png", "a/1.png", "b/3.png"]
    assert sorted(b.file_name for b in data.skipped) == ["5.png", "6.png", "b/2.png"]
    assert "skipped 3 bad row(s)" in data.summary()
    again = load(root, tmp_path, skip_bad=True)  # from the cache: the undecodable file is still reported
    assert sorted(b.file_name for b in again.skipped) == ["5.png", "6.png", "b/2.png"]
    with pytest.raises(FolderError, match="3 bad row"):
        try:
            load(root, tmp_path)
        except FolderError as e:  # without skip_bad the label errors stop it before any decoding
            assert len(e.bad) == 2
            raise FolderError(root, e.bad + [again.skipped[0]]) from None


@pytest.mark.parametrize("columns, says", [
    (["file_name", "shape", "scale"], r"factors without a column: \['angle'\]"),
    (["file_name", "shape", "scale", "angle", "colour"], r"columns without a factor: \['colour'\]"),
    (["name", "shape", "scale", "angle"], "no file_name column"),
])
def test_a_schema_that_disagrees_with_the_columns_is_refused(tmp_path, columns, says):
    root = make_folder(tmp_path / "d", [["x.png", "square", "0.5", "0"][: len(columns)]], columns=columns)
    with pytest.raises(ValueError, match=says):
        load(root, tmp_path, skip_bad=True)  # not a row's fault: never skipped


# -- the cache ---------------------------------------------------------------------------
def test_decoded_images_are_cached_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "d", GOOD)
    first = load(root, tmp_path)
    from latentdial.training.data import image_store

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_store, "decode_image", refuse)
    assert np.array_equal(load(root, tmp_path).load(np.arange(5)), first.load(np.arange(5)))
    monkeypatch.undo()
    _image(root / "4.png", 99, size=(21, 21))
    assert not np.array_equal(load(root, tmp_path).load(np.array([first.files.index("4.png")])),
                              first.load(np.array([first.files.index("4.png")])))


def test_the_image_table_is_memory_mapped_not_read_into_memory(tmp_path):
    import pyarrow as pa

    rows = [[f"i/{i}.png", "", "", ""] for i in range(400)]
    root = make_folder(tmp_path / "d", rows, images=False)
    rng = np.random.default_rng(0)
    (root / "i").mkdir()
    for i in range(400):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / f"i/{i}.png")
    data = LabelledImageFolder(root, channels=3, image_size=64, cache_dir=tmp_path / "cache")
    table_bytes = 400 * 3 * 64 * 64
    before = pa.total_allocated_bytes()
    store = ImageStore.open(data._store.path)
    assert pa.total_allocated_bytes() - before < table_bytes / 20  # 4.9 MB of images, not in the pool
    assert store.get(np.array([5, 1])).shape == (2, 3, 64, 64)


# -- training on it ----------------------------------------------------------------------
def test_the_stream_pairs_folder_images_with_their_labels_beside_any_rows(tmp_path):
    data = load(make_folder(tmp_path / "d", GOOD), tmp_path)
    stream = BatchStream(data, 6, seed=0, labels=True)
    x, y = stream.batch_at(0)
    assert x.shape == (12, 3, 16, 16) and (y[:6] == -1).all()
    assert all(row.tolist() in data.labels[data.labelled_rows()].tolist() for row in y[6:])
    assert np.array_equal(stream.batch_at(0)[0], x)  # a pure function of (seed, step)
    two = BatchStream(data, 6, seed=0, labels=True, num_labelled=2)
    assert len(two.row_pool) == 2 and set(two.row_pool) <= set(data.labelled_rows())
    with pytest.raises(ValueError, match="only 4 labelled images"):
        BatchStream(data, 6, seed=0, labels=True, num_labelled=5)
    with pytest.raises(ValueError, match="cannot do"):
        BatchStream(data, 6, seed=0, pairs=True)


def test_metrics_fit_and_score_on_disjoint_rows_and_skip_interventions(tmp_path):
    rows = [[f"{i}.png", ["square", "ellipse", "heart"][i % 3], str(0.5 + 0.1 * (i % 6)), str(45 * (i % 8))]
            for i in range(30)]
    data = load(make_folder(tmp_path / "d", rows), tmp_path)
    train, test = held_out_split(data)
    assert len(test.complete_rows()) == 10 and not set(train.complete_rows()) & set(test.complete_rows())
    from latentdial.training.evaluate import evaluate_representation

    scores, card = evaluate_representation(data, lambda x: x.reshape(len(x), -1)[:, :4], num_train=60, num_test=30,
                                           progress=False)
    assert {k.split(".")[0] for k in scores} == {"mig", "sap", "dci", "modularity", "unsupervised"}
    assert card is None
    with pytest.raises(ValueError, match="draw images for chosen factors"):
        evaluate_representation(data, lambda x: x[:, 0, 0, :4], metrics="factor_vae", progress=False)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latentdial.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240, env={**__import__("os").environ, "LATENTDIAL_CACHE": str(cwd / "cache")})


@pytest.mark.slow
def test_train_data_trains_on_the_folder_and_edits_by_the_schemas_names(tmp_path):
    """`latentdial train --data DIR` -> a run whose factor card names the schema's factors -> export ->
    a real server -> an edit by label moves the named dim to that label's code."""
    rows = [[f"{i}.png", ["square", "ellipse", "heart"][i % 3], str(0.5 + 0.1 * (i % 6)), str(45 * (i % 8))]
            for i in range(24)] + [[f"u{i}.png", "", "", ""] for i in range(8)]
    root = make_folder(tmp_path / "d", rows)
    run = _cli("train", "--config", str(REPO / "configs" / "examples" / "folder.toml"), "--data", str(root), "--out", "run",
               "--set", "steps=4", "--set", "batch_size=4", "--set", "log_every=2", "--set", "evaluate=false",
               "--set", "optimizer.cooldown_steps=2", "--set", "num_threads=1", "--set", "model.latent_dim=6",
               "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "32 images, 24 labelled" in run.stdout
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["name"] == "labelled_folder" and config["dataset"]["channels"] == 3
    card = json.loads((tmp_path / "run" / "factor_card.json").read_text())
    assert [(f["name"], f["kind"], f["dims"]) for f in card["factors"]] == [
        ("shape", "categorical", [0]), ("scale", "continuous", [1]), ("angle", "circular", [2, 3])]
    assert card["factors"][0]["labels"] == ["square", "ellipse", "heart"]
    exported = _cli("export", "run", "models/mine/1", "--choice-rounds", "0", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr

    from fixtures.server import ServerThread, make_config

    from latentdial.client import Client, Edit

    image = LabelledImageFolder(root, channels=3, image_size=64, cache_dir=tmp_path / "cache").load(np.array([0]))
    nhwc = (image.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    with ServerThread(make_config(tmp_path / "models")) as server, Client(server.address, timeout_s=30) as c:
        info = c.model_info("mine")
        assert [f.name for f in info.factors] == ["shape", "scale", "angle"]
        edited = np.asarray(c.edit(nhwc, [Edit(factor="shape", set_label="heart")], model="mine").images)
        z = np.array(c.encode(nhwc, model="mine").mean)
        z[:, 0] = 1.0  # heart is the last of three labels: code linspace(-1, 1, 3)[2]
        by_hand = np.asarray(c.decode(z, model="mine"))
    assert edited.shape == by_hand.shape == (1, 64, 64, 3)
    assert np.allclose(edited, by_hand, atol=1e-5)


def test_train_data_with_bad_rows_stops_naming_them_or_skips_them(tmp_path):
    rows = [["0.png", "square", "0.5", "0"], ["1.png", "circle", "0.5", "0"]]
    root = make_folder(tmp_path / "d", rows)
    args = ["train", "--config", str(REPO / "configs" / "examples" / "folder.toml"), "--data", str(root), "--out", "run",
            "--set", "steps=2", "--set", "batch_size=2", "--set", "evaluate=false", "--set", "log_every=1",
            "--set", "optimizer.cooldown_steps=1", "--set", "num_threads=1", "--no-progress"]
    bad = _cli(*args, cwd=tmp_path)
    assert bad.returncode == 2 and "line 3 ('1.png'): shape: unknown label 'circle'" in bad.stderr
    assert not (tmp_path / "run").exists()
    skipped = _cli(*args, "--skip-bad", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "1 images, 1 labelled" in skipped.stdout and "skipped 1 bad row(s)" in skipped.stdout
