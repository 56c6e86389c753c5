"""Edit fidelity: scores on arrays (analytic cases) and ``latentdial evaluate-edits`` through a real server."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
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

from latentdial.cli import main
from latentdial.factor_card import FactorCard, FactorEntry
from latentdial.manifest import Manifest

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
    assert r["source_readback_accuracy"] == 1.0 and r["mean_abs_error"] == 0.0
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
        for key in ("edit_score", "recon_score", "accuracy", "within_one_step", "other_within_tolerance",
                    "other_values_preserved", "source_readback_accuracy"):
            assert 0.0 <= r[key] <= 1.0, (name, key, r[key])
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
