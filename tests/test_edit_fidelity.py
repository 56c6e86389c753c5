"""Edit fidelity: scores on arrays (analytic cases) and ``latentdial evaluate-edits`` through a real server."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model
from latentdial.training.edit_fidelity import (
    FactorArrays,
    calibration_step,
    choose_metric,
    iou,
    normalised_score,
    psnr,
    summarise_factor,
    value_distance,
)
from onnx import TensorProto, helper, numpy_helper

from latentdial.cli import main
from latentdial.factor_card import FactorCard, FactorEntry
from latentdial.manifest import GraphFile, Manifest, sha256_file

FIELDS = {
    "kind", "dims", "num", "metric", "edit_score", "recon_score", "fidelity", "accuracy", "within_one_step",
    "mean_abs_error", "source_readback_accuracy", "other_dims", "other_drift_mean_std", "other_drift_p95_std",
    "other_drift_max_std", "round_trip_drift_mean_std", "drift_tolerance_std", "other_within_tolerance",
    "other_values_preserved",
}


def dsprites_card(latent_dim: int = 6) -> FactorCard:
    """A calibrated card over dSprites' five factors (dims 0..4) plus a factor dSprites lacks."""
    def linear(name, kind, values, dim, **kw):
        table = np.linspace(-1.0, 1.0, len(values))[:, None].tolist()
        return FactorEntry(name, kind, [dim], list(map(float, values)), table, **kw)

    return FactorCard(factors=[
        linear("shape", "categorical", [0, 1, 2], 0, labels=["square", "ellipse", "heart"]),
        linear("scale", "continuous", np.linspace(0.5, 1, 6), 1),
        linear("orientation", "circular", np.linspace(0, 2 * np.pi, 40), 2, period=2 * np.pi),
        linear("pos_x", "continuous", np.linspace(0, 1, 32), 3),
        linear("pos_y", "continuous", np.linspace(0, 1, 32), 4),
        linear("hue", "circular", np.arange(8) / 8, 5, period=1.0),
    ], latent_dim=latent_dim)


# ------------------------------------------------- an oracle dSprites model --
# Encoder: (centroid x, centroid y, sqrt(area)) -> dims 0, 1, 2; decoder: draws a square of that area there.
# Perfectly disentangled for pos_x, pos_y and scale by construction, so its edits are as good as its
# reconstructions and move nothing else.
SIZE = 64
CENTRE, POS_UNIT = 31.5, 9.0  # centroid pixel -> latent: (c - 31.5) / 9
SIDE0, SIDE_UNIT = 15.0, 3.0  # sqrt(area) in pixels -> latent: (s - 15) / 3


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def c(a, name: str) -> onnx.TensorProto:
    """A float32 initializer."""
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def build_oracle(root: Path, name: str = "oracle", version: str = "1", latent_dim: int = 5) -> Path:
    d = latent_dim
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    feats_w = np.stack([np.ones(SIZE * SIZE), xs.ravel(), ys.ravel()], axis=1).astype(np.float32)  # (4096, 3)
    proj = np.zeros((3, d), np.float32)
    proj[0, 0], proj[1, 1], proj[2, 2] = 1 / POS_UNIT, 1 / POS_UNIT, 1 / SIDE_UNIT
    bias = np.zeros(d, np.float32)
    bias[:3] = [-CENTRE / POS_UNIT, -CENTRE / POS_UNIT, -SIDE0 / SIDE_UNIT]
    enc = helper.make_graph([
        helper.make_node("Flatten", ["images"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "fw"], ["sums"]),  # (N, 3): mass, sum x, sum y
        helper.make_node("Split", ["sums", "s1"], ["mass", "sx", "sy"], axis=1),
        helper.make_node("Add", ["mass", "eps"], ["mass_e"]),
        helper.make_node("Div", ["sx", "mass_e"], ["cx"]),
        helper.make_node("Div", ["sy", "mass_e"], ["cy"]),
        helper.make_node("Sqrt", ["mass"], ["side"]),
        helper.make_node("Concat", ["cx", "cy", "side"], ["feats"], axis=1),
        helper.make_node("MatMul", ["feats", "proj"], ["z0"]),
        helper.make_node("Add", ["z0", "bias"], ["mean"]),
        helper.make_node("MatMul", ["feats", "zero3"], ["lv0"]),
        helper.make_node("Add", ["lv0", "lvb"], ["log_var"]),
    ], "encoder", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", d]),
         helper.make_tensor_value_info("log_var", TensorProto.FLOAT, ["N", d])],
        [c(feats_w, "fw"), numpy_helper.from_array(np.array([1, 1, 1], np.int64), "s1"), c([1e-6], "eps"),
         c(proj, "proj"), c(bias, "bias"), c(np.zeros((3, d)), "zero3"), c(np.full(d, -4.0), "lvb")])
    sel = np.zeros((d, 3), np.float32)
    sel[0, 0], sel[1, 1], sel[2, 2] = POS_UNIT, POS_UNIT, SIDE_UNIT / 2
    dec = helper.make_graph([
        helper.make_node("MatMul", ["latents", "sel"], ["p0"]),
        helper.make_node("Add", ["p0", "pb"], ["p"]),  # (N, 3): cx, cy, half side
        helper.make_node("Split", ["p", "s1"], ["cx", "cy", "half"], axis=1),
        *[helper.make_node("Reshape", [v, "shp"], [v + "4"]) for v in ("cx", "cy", "half")],
        helper.make_node("Sub", ["gx", "cx4"], ["dx"]),
        helper.make_node("Sub", ["gy", "cy4"], ["dy"]),
        helper.make_node("Abs", ["dx"], ["ax"]),
        helper.make_node("Abs", ["dy"], ["ay"]),
        helper.make_node("Max", ["ax", "ay"], ["r"]),
        helper.make_node("Sub", ["half4", "r"], ["inside"]),
        helper.make_node("Add", ["inside", "half_px"], ["inside2"]),
        helper.make_node("Mul", ["inside2", "sharp"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["images"]),
    ], "decoder", [helper.make_tensor_value_info("latents", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [c(sel, "sel"), c([CENTRE, CENTRE, SIDE0 / 2], "pb"), numpy_helper.from_array(np.array([1, 1, 1], np.int64), "s1"),
         numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "shp"), c(xs[None, None], "gx"),
         c(ys[None, None], "gy"), c([0.0], "half_px"), c([4.0], "sharp")])
    out = Path(root) / name / version
    out.mkdir(parents=True, exist_ok=True)
    _save(enc, out / "encoder.onnx")
    _save(dec, out / "decoder.onnx")
    Manifest(name=name, version=version, image_shape=(1, SIZE, SIZE), latent_dim=d,
             files=[GraphFile("encoder", "encoder.onnx", sha256_file(out / "encoder.onnx")),
                    GraphFile("decoder", "decoder.onnx", sha256_file(out / "decoder.onnx"))],
             provenance={"dataset": {"name": "dsprites"}}).save(out)
    return out


def calibrate_card(model_dir: Path, per_value: int = 16, seed: int = 0) -> FactorCard:
    """Card for scale (dim 2), pos_x (dim 0), pos_y (dim 1), each table = mean encoding per grid value."""
    import onnxruntime as ort
    from latentdial.training.data import get_dataset

    enc = ort.InferenceSession(str(model_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    data, rng = get_dataset("dsprites"), np.random.default_rng(seed)
    entries = []
    for name, dim in (("scale", 2), ("pos_x", 0), ("pos_y", 1)):
        f = data.factor_names.index(name)
        k = data.factors_num_values[f]
        factors = data.sample_factors(k * per_value, rng)
        factors[:, f] = np.repeat(np.arange(k), per_value)
        z = enc.run(["mean"], {"images": data.sample_observations_from_factors(factors, rng)})[0]
        table = z[:, [dim]].reshape(k, per_value, 1).mean(1)
        entries.append(FactorEntry(name, "continuous", [dim], data.factor_grid(f).tolist(), table.tolist()))
    return FactorCard(entries, latent_dim=5)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repository with ``sprites/1``: a small linear 64x64 model, a dSprites card, dataset provenance."""
    root = tmp_path_factory.mktemp("repo")
    model = build_toy_model(root, "sprites", "1", image_shape=(1, 64, 64), latent_dim=6, with_card=False)
    m = Manifest.load(model.path)
    m.factor_card = dsprites_card().to_dict()
    m.provenance = {"dataset": {"name": "dsprites"}}
    m.save(model.path)
    return root


@pytest.fixture(scope="module")
def report(repo, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("edits") / "edits.json"
    assert main(["evaluate-edits", str(repo / "sprites" / "1"), "--num", "6", "--batch", "4",
                 "--out", str(out), "--quiet"]) == 0
    return json.loads(out.read_text())


# ------------------------------------------------------------ pure scores --
def test_iou_of_identical_images_is_one_and_of_disjoint_images_zero():
    a = np.zeros((2, 1, 4, 4), np.float32)
    a[:, :, :2] = 1.0
    b = 1.0 - a
    np.testing.assert_array_equal(iou(a, a), [1.0, 1.0])
    np.testing.assert_array_equal(iou(a, b), [0.0, 0.0])


def test_iou_binarises_at_one_half_and_counts_half_overlap():
    truth = np.zeros((1, 4, 4, 1))
    truth[0, :, :2] = 1.0  # 8 pixels
    pred = np.full_like(truth, 0.4)  # below threshold: nothing
    pred[0, :, 1:3] = 0.6  # 8 pixels, 4 shared with truth
    assert iou(pred, truth)[0] == pytest.approx(4 / 12)
    assert iou(np.zeros((1, 3)), np.zeros((1, 3)))[0] == 1.0  # two empty images are identical


def test_psnr_of_identical_images_is_inf_and_matches_the_formula_otherwise():
    a = np.random.default_rng(0).random((3, 3, 8, 8))
    assert np.isinf(psnr(a, a)).all()
    b = np.clip(a + 0.1, 0, 1)
    mse = ((a - b) ** 2).reshape(3, -1).mean(1)
    np.testing.assert_allclose(psnr(b, a), 10 * np.log10(1.0 / mse))
    with pytest.raises(ValueError, match="shapes"):
        psnr(a, a[:, :1])


def test_normalised_score_is_one_when_edits_are_as_good_as_reconstructions():
    assert normalised_score(np.array([0.5, 0.7]), np.array([0.7, 0.5])) == pytest.approx(1.0)
    assert normalised_score(np.array([0.0, 0.0]), np.array([0.8, 0.6])) == 0.0
    assert normalised_score(np.array([0.3, 0.3]), np.array([0.6, 0.6])) == pytest.approx(0.5)
    # identical images (PSNR inf) on both sides: capped, ratio 1, never nan
    assert normalised_score(np.array([np.inf, 30.0]), np.array([np.inf, 30.0])) == pytest.approx(1.0)
    assert normalised_score(np.array([30.0]), np.array([np.inf])) == pytest.approx(0.5)  # 30 dB / 60 dB cap
    assert math.isnan(normalised_score(np.array([0.2]), np.array([0.0])))


def test_metric_is_iou_for_binary_one_channel_images_and_psnr_otherwise():
    binary = (np.random.default_rng(0).random((2, 1, 8, 8)) > 0.5).astype(np.float32)
    assert choose_metric(binary) == "iou"
    assert choose_metric(binary * 0.5) == "psnr"
    assert choose_metric(np.repeat(binary, 3, axis=1)) == "psnr"


def test_circular_distance_wraps_and_calibration_step_is_the_table_spacing():
    card = dsprites_card()
    orient = card["orientation"]
    assert value_distance(orient, np.array([0.1]), np.array([2 * np.pi - 0.1]))[0] == pytest.approx(0.2)
    assert value_distance(orient, np.array([0.0]), np.array([2 * np.pi]))[0] == pytest.approx(0.0)
    assert calibration_step(card["pos_x"])[0] == pytest.approx(2.0 / 31)
    assert calibration_step(card["shape"])[0] == pytest.approx(1.0)


def _arrays(card: FactorCard, factor: str, n: int = 50, seed: int = 0):
    """Perfect edits: images equal the truth, re-encoding puts exactly the target in the factor's dims."""
    rng = np.random.default_rng(seed)
    entry = card[factor]
    z_src = rng.standard_normal((n, card.latent_dim))
    targets = np.asarray(entry.values)[rng.integers(0, len(entry.values), n)]
    z_edit = z_src.copy()
    z_edit[:, entry.dims] = np.stack([entry.latent_for(v) for v in targets])
    sources = np.asarray(entry.values)[rng.integers(0, len(entry.values), n)]
    z_src[:, entry.dims] = np.stack([entry.latent_for(v) for v in sources])
    ones = np.ones(n)
    return FactorArrays(ones, ones, targets, sources, z_src, z_edit, z_src.copy())


def test_a_perfect_edit_scores_fidelity_one_full_accuracy_and_no_drift():
    card = dsprites_card()
    arrays = _arrays(card, "scale")
    r = summarise_factor(card["scale"], card, arrays, arrays.z_source.std(0), "iou")
    assert set(r) == FIELDS
    assert r["fidelity"] == 1.0 and r["accuracy"] == 1.0 and r["within_one_step"] == 1.0
    # the read-back interpolates float32 latents: exact up to rounding
    assert r["source_readback_accuracy"] == 1.0 and r["mean_abs_error"] == pytest.approx(0.0, abs=1e-6)
    assert r["other_dims"] == [0, 2, 3, 4, 5]
    assert r["other_drift_max_std"] == 0.0 and r["other_within_tolerance"] == 1.0
    assert r["other_values_preserved"] == 1.0


def test_drift_of_other_dims_is_measured_in_units_of_each_dims_std():
    card = dsprites_card()
    arrays = _arrays(card, "shape")
    std = np.full(card.latent_dim, 0.5)
    arrays.z_edited[:, 3] += 1.0  # pos_x's dim moves by 2 std, far beyond half a position step
    r = summarise_factor(card["shape"], card, arrays, std, "iou")
    other = r["other_dims"]
    assert other == [1, 2, 3, 4, 5]
    assert r["other_drift_mean_std"] == pytest.approx(2.0 / len(other))
    assert r["other_drift_max_std"] == pytest.approx(2.0)
    assert r["other_within_tolerance"] == pytest.approx(1 - 1 / len(other))
    assert r["other_values_preserved"] < 1.0  # pos_x now reads differently
    assert r["accuracy"] == 1.0


def test_the_edited_factor_reads_back_wrong_when_the_latents_point_elsewhere():
    card = dsprites_card()
    arrays = _arrays(card, "pos_x")
    arrays.z_edited[:, 3] = card["pos_x"].latent_for(0.0)[0]  # every edit lands at pos_x = 0
    r = summarise_factor(card["pos_x"], card, arrays, np.ones(6), "iou")
    expected = float(np.mean(np.isclose(arrays.targets, 0.0)))
    assert r["accuracy"] == pytest.approx(expected)
    assert r["mean_abs_error"] == pytest.approx(np.abs(arrays.targets).mean())


# ------------------------------------------------------ through a server --
def test_evaluate_edits_reports_every_card_factor_with_all_fields(report):
    assert report["model"]["name"] == "sprites" and report["model"]["version"] == "1"
    assert report["dataset"] == {"name": "dsprites"} and report["metric"] == "iou" and report["num"] == 6
    assert set(report["factors"]) == {"shape", "scale", "orientation", "pos_x", "pos_y"}
    assert set(report["skipped"]) == {"hue"} and "no factor 'hue'" in report["skipped"]["hue"]
    for name, r in report["factors"].items():
        assert set(r) == FIELDS, name
        assert r["num"] == 6
        for key in ("edit_score", "recon_score", "accuracy", "other_within_tolerance",
                    "other_values_preserved", "source_readback_accuracy"):
            assert 0.0 <= r[key] <= 1.0, (name, key, r[key])
        if r["kind"] == "categorical":
            assert r["within_one_step"] is None  # unordered values: no neighbours
        else:
            assert r["accuracy"] <= r["within_one_step"] <= 1.0
        assert r["fidelity"] is None or r["fidelity"] >= 0.0
        assert 0.0 <= r["other_drift_mean_std"] <= r["other_drift_max_std"]
        assert r["drift_tolerance_std"] > 0.0


def test_a_running_server_given_by_address_gives_the_same_report(repo, report, tmp_path):
    out = tmp_path / "edits.json"
    with ServerThread(make_config(repo)) as server:
        assert main(["evaluate-edits", str(repo / "sprites" / "1"), "--address", server.address, "--num", "6",
                     "--batch", "4", "--out", str(out), "--quiet"]) == 0
    again = json.loads(out.read_text())
    assert again["factors"].keys() == report["factors"].keys()
    for name in report["factors"]:
        for key, value in report["factors"][name].items():
            assert again["factors"][name][key] == pytest.approx(value, abs=1e-6), (name, key)


def test_a_model_without_a_factor_card_is_refused_with_what_to_do(tmp_path, capsys):
    model = build_toy_model(tmp_path, "plain", "1", with_card=False)
    assert main(["evaluate-edits", str(model.path), "--out", str(tmp_path / "e.json"), "--quiet"]) == 2
    assert "no factor card" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_a_model_without_a_known_dataset_asks_for_one(tmp_path, capsys):
    model = build_toy_model(tmp_path, "toy", "1")  # provenance dataset "toy" is not registered
    assert main(["evaluate-edits", str(model.path), "--out", str(tmp_path / "e.json"), "--quiet"]) == 2
    assert "--dataset" in capsys.readouterr().err


@pytest.fixture(scope="module")
def oracle_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oracle")
    model_dir = build_oracle(root)
    m = Manifest.load(model_dir)
    m.factor_card = calibrate_card(model_dir).to_dict()
    m.metrics = {"mig": 0.9}
    m.save(model_dir)
    return root


@pytest.fixture(scope="module")
def oracle_report(oracle_repo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oracle_edits") / "edits.json"
    assert main(["evaluate-edits", str(oracle_repo / "oracle" / "1"), "--num", "40", "--batch", "16",
                 "--out", str(out), "--quiet"]) == 0
    return out


def test_a_disentangled_model_edits_as_well_as_it_reconstructs_and_moves_nothing_else(oracle_report):
    r = json.loads(oracle_report.read_text())["factors"]
    assert set(r) == {"scale", "pos_x", "pos_y"}
    for name, f in r.items():
        assert 0.9 <= f["fidelity"] <= 1.1, (name, f["fidelity"])  # squares drawn for any shape, edit or not
        assert f["accuracy"] >= 0.95, (name, f["accuracy"])
        assert f["other_drift_max_std"] < f["drift_tolerance_std"], name
        assert f["other_within_tolerance"] == 1.0 and f["other_values_preserved"] >= 0.95, name


def test_an_entangled_random_model_reads_its_edits_back_worse_than_the_oracle(report, oracle_report):
    oracle = json.loads(oracle_report.read_text())["factors"]
    for name in ("pos_x", "pos_y"):
        assert report["factors"][name]["accuracy"] < oracle[name]["accuracy"]
        assert report["factors"][name]["other_drift_mean_std"] > 10 * oracle[name]["other_drift_mean_std"]


# --------------------------------------------------------- model report --
def _script_module(name: str):
    """Import ``scripts/<name>.py`` (scripts are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_report_writes_markdown_with_tables_and_labelled_pngs(oracle_repo, oracle_report, tmp_path):
    from PIL import Image

    out = tmp_path / "docs" / "models" / "oracle.md"
    reference = tmp_path / "oracle_factor_vae_reference.json"
    reference.write_text(json.dumps({"factor_vae.eval_accuracy": 0.8765}))
    assert _script_module("model_report").main([str(oracle_repo / "oracle" / "1"), "--out", str(out),
                                        "--edits", str(oracle_report), "--steps", "6", "--examples", "3",
                                        "--reference", str(reference)]) == 0
    text = out.read_text()
    assert "| mig | 0.9000 |" in text
    assert "reference sizes" in text and "| factor_vae.eval_accuracy | 0.8765 |" in text
    assert "| pos_x | continuous | 0 | 0 … 1 | 32 | yes |" in text
    assert "![traversal grid](images/oracle_traversal.png)" in text
    assert "## Edit fidelity" in text and "| scale | continuous |" in text
    traversal = Image.open(out.parent / "images" / "oracle_traversal.png")
    edits = Image.open(out.parent / "images" / "oracle_edits.png")
    # label column + 6 steps of 64 px tiles; 3 factor rows
    assert traversal.size[0] > 6 * 64 and 3 * 64 <= traversal.size[1] < 4 * 64
    # 3 examples x (source, recon, 3 factors)
    assert edits.size[0] > 5 * 64 and edits.size[1] > 3 * 64
    grid = np.asarray(traversal.convert("L"), np.float32)
    assert grid[:, 100:].std() > 50  # white squares on black tiles, not an empty canvas


def test_dci_diagnostic_shows_unlearned_factors_holding_disentanglement_down(oracle_repo, capsys):
    assert _script_module("dci_diagnostic").main([str(oracle_repo / "oracle" / "1"), "--num-train", "600", "--num-test", "300"]) == 0
    out = capsys.readouterr().out
    full = float(out.split("DCI disentanglement ")[1].split(",")[0])
    without = {line.split()[1]: float(line.split()[2]) for line in out.splitlines() if "  without " in line}
    assert set(without) == {"shape", "scale", "orientation", "pos_x", "pos_y"}
    # the oracle carries scale and position exactly, shape and orientation not at all
    assert without["orientation"] > full and without["shape"] > full
    assert without["pos_x"] < full


def test_colour_models_are_scored_by_psnr_against_their_reconstructions(tmp_path):
    model = build_toy_model(tmp_path, "colour", "1", image_shape=(3, 64, 64), latent_dim=4, with_card=False)
    hues = (np.arange(8) / 8).tolist()
    table = np.linspace(-1.0, 1.0, 8)[:, None].tolist()
    m = Manifest.load(model.path)
    m.factor_card = FactorCard([
        FactorEntry("object_hue", "circular", [0], hues, table, period=1.0),
        FactorEntry("background_hue", "circular", [1], hues, table, period=1.0),
    ], latent_dim=4).to_dict()
    m.provenance = {"dataset": {"name": "color_dsprites"}}
    m.save(model.path)
    out = tmp_path / "edits.json"
    assert main(["evaluate-edits", str(model.path), "--num", "4", "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    assert r["metric"] == "psnr" and r["psnr_cap_db"] == 60.0 and r["iou_threshold"] is None
    assert set(r["factors"]) == {"object_hue", "background_hue"}
    for f in r["factors"].values():
        assert 0.0 < f["edit_score"] < 60.0 and 0.0 < f["recon_score"] < 60.0  # dB, finite
        assert f["fidelity"] == pytest.approx(f["edit_score"] / f["recon_score"])


def test_model_report_of_a_model_without_card_traverses_every_dimension(tmp_path):
    from PIL import Image

    model = build_toy_model(tmp_path / "repo", "plain", "1", image_shape=(3, 64, 64), latent_dim=3, with_card=False)
    out = tmp_path / "docs" / "plain.md"
    assert _script_module("model_report").main([str(model.path), "--out", str(out), "--steps", "4", "--examples", "2"]) == 0
    text = out.read_text()
    assert "no factor card" in text and "## Edit fidelity" not in text
    traversal = Image.open(out.parent / "images" / "plain_traversal.png")
    assert 3 * 64 <= traversal.size[1] < 4 * 64  # one row per latent dimension


def test_a_server_that_does_not_serve_the_model_gives_a_clear_error(repo, tmp_path, capsys):
    other = tmp_path / "other"
    build_toy_model(other, "toy", "1")
    with ServerThread(make_config(other)) as server:
        code = main(["evaluate-edits", str(repo / "sprites" / "1"), "--address", server.address, "--num", "4",
                     "--out", str(tmp_path / "e.json"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "NotFoundError" in err and "sprites" in err and server.address in err


def test_dims_of_hand_named_factors_are_measured_but_have_no_tolerance():
    base = dsprites_card()
    card = FactorCard([base["pos_x"], FactorEntry("smile", "continuous", [5])], latent_dim=6)
    arrays = _arrays(card, "pos_x")
    arrays.z_edited[:, 5] += 3.0
    r = summarise_factor(card["pos_x"], card, arrays, np.ones(6), "iou")
    assert r["other_dims"] == [5] and r["other_drift_mean_std"] == pytest.approx(3.0)
    assert r["drift_tolerance_std"] is None and r["other_within_tolerance"] is None
    assert r["other_values_preserved"] is None
