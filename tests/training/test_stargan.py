"""StarGAN as a label-conditioned editor: network shapes, the semi-supervised recipe's codes, card
and labelled images, a generator that learns to redraw its source, and a run that trains, resumes
bit for bit and exports a model of kind "editor" whose ONNX graphs reproduce torch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from latentdial.cli import main
from latentdial.export.parity import FP32_TOLERANCE
from latentdial.factor_card import FactorCard
from latentdial.manifest import Manifest
from latentdial.serving.edits import CheckedEdit, apply_edits
from latentdial.training.config import load_config
from latentdial.training.data import get_dataset
from latentdial.training.objectives.semi_supervised import supervised_factor_card
from latentdial.training.stargan.codes import CodeLayout
from latentdial.training.stargan.config import (
    StarGANConfig,
    StarGANModelConfig,
    load_stargan_config,
)
from latentdial.training.stargan.networks import build_networks
from latentdial.training.stargan.run import load_stargan_run
from latentdial.training.stargan.trainer import StarGANTrainer
from latentdial.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
DSPRITES = get_dataset("dsprites")
TINY = {"model": {"g_conv_dim": 8, "g_res_blocks": 1, "d_conv_dim": 8}, "batch_size": 4, "num_threads": 1}
#: ``latentdial train`` overrides that shrink configs/stargan.toml to seconds
TINY_SET = ["model.g_conv_dim=8", "model.g_res_blocks=1", "model.d_conv_dim=8", "batch_size=4",
            "objective.n_critic=2", "log_every=2", "checkpoint_every=3"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _config(**top) -> StarGANConfig:
    raw = {**TINY, **top}
    return StarGANConfig.from_dict(raw)


@pytest.mark.parametrize(("dataset", "channels"), [("dsprites", 1), ("color_dsprites", 3)])
def test_generator_keeps_the_image_shape_and_discriminator_scores_patches_and_predicts_every_factor(dataset, channels):
    data = get_dataset(dataset)
    layout = CodeLayout.from_dataset(data, [])
    g, d = build_networks(StarGANModelConfig(channels=channels, g_conv_dim=8, g_res_blocks=1, d_conv_dim=8), layout)
    x = torch.rand(3, channels, 64, 64)
    codes = layout.codes_of(torch.from_numpy(data.sample_factors(3, np.random.default_rng(0))))
    out = g(x, codes)
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    src, head = d(x)
    assert src.shape == (3, 1, 4, 4)  # PatchGAN: one score per 16x16 patch
    # categorical: K logits; continuous: 1; circular: 2 (cos, sin)
    widths = {"categorical": 3, "continuous": 1, "circular": 2}
    assert head.shape == (3, sum(widths[k] for k in data.factor_kinds))
    assert codes.shape == (3, layout.code_dim) == (3, {1: 6, 3: 10}[channels])


def test_the_codes_and_their_card_are_the_semi_supervised_objectives():
    factors = ["shape", "scale", "orientation", "pos_x", "pos_y"]
    layout = CodeLayout.from_dataset(DSPRITES, factors)
    semi = load_config(REPO / "configs/shipped/dsprites.toml").to_dict()
    assert layout.card().to_dict() == supervised_factor_card(semi, DSPRITES).to_dict()
    labels = torch.tensor([[2, 5, 0, 0, 31]])  # heart, largest, unturned, first x, last y
    np.testing.assert_allclose(layout.codes_of(labels).numpy(), [[1.0, 1.0, 1.0, 0.0, -1.0, 1.0]], atol=1e-6)


def test_the_labelled_images_are_the_ones_the_semi_supervised_recipe_labels(tmp_path):
    cfg = _config(seed=3, objective={"num_labelled": 100})
    vae = load_config(REPO / "configs/semi_supervised.toml", ["seed=3", "objective.num_labelled=100", "batch_size=4"])
    mine = StarGANTrainer(cfg, tmp_path / "gan").stream
    theirs = Trainer(vae, tmp_path / "vae").stream
    assert mine.pool is not None and len(mine.pool) == 100
    np.testing.assert_array_equal(mine.pool, theirs.pool)
    for step in (0, 7):
        np.testing.assert_array_equal(mine.batch_at(step)[1], theirs.batch_at(step)[1])
    every = StarGANTrainer(_config(objective={"num_labelled": 0}), tmp_path / "all").stream
    assert every.pool is None and (every.batch_at(0)[1] >= 0).all()  # 0 labels every image


def test_the_generator_redraws_a_source_from_its_own_codes_better_after_a_few_steps(tmp_path):
    cfg = _config(objective={"num_labelled": 50, "n_critic": 1}, optimizer={"g_lr": 1e-3, "d_lr": 1e-3})
    trainer = StarGANTrainer(cfg, tmp_path)
    x, labels = (torch.from_numpy(a) for a in trainer.stream.batch_at(10**6))  # a batch never trained on
    known = labels[:, 0] >= 0

    def l1() -> float:
        with torch.no_grad():
            return float((trainer.G(x[known], trainer.layout.codes_of(labels[known])) - x[known]).abs().mean())

    before = l1()
    for step in range(30):
        logs = trainer.train_step(trainer.stream.batch_at(step))
    assert all(math.isfinite(v) for v in logs.values())
    assert l1() < 0.5 * before  # measured: 0.51 -> 0.12


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """configs/stargan.toml shrunk: 4 steps, then resumed to 8, through ``latentdial train``."""
    out = tmp_path_factory.mktemp("stargan") / "run"
    args = ["train", "--config", str(REPO / "configs/stargan.toml"), "--out", str(out), "--no-progress"]
    assert main([*args, *[f"--set={s}" for s in TINY_SET], "--set=steps=4"]) == 0
    assert main([*args, *[f"--set={s}" for s in TINY_SET], "--set=steps=8", "--resume"]) == 0
    return out


def test_a_run_directory_holds_config_weights_card_loss_log_and_sample_sheet(run):
    for name in ("config.json", "model.safetensors", "factor_card.json", "loss_log.csv", "loss.png", "samples.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["family"] == "stargan"
    steps = [int(line.split(",")[0]) for line in (run / "loss_log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 3, 5, 7]  # both halves of the resumed run
    assert {k.split(".")[0] for k in load_file(str(run / "model.safetensors"))} == {"generator", "discriminator"}


def test_resume_continues_bit_for_bit(run, tmp_path):
    cfg = load_stargan_config(REPO / "configs/stargan.toml", [*TINY_SET, "steps=8"])
    trainer = StarGANTrainer(cfg, tmp_path)
    trainer.train(progress=False)
    resumed = load_file(str(run / "model.safetensors"))
    for name, value in trainer.G.state_dict().items():
        assert torch.equal(resumed[f"generator.{name}"], value), name


@pytest.fixture(scope="module")
def model_dir(run) -> Path:
    out = run.parent / "models" / "stargan" / "1"
    assert main(["export", str(run), str(out), "--exporter", "torchscript", "--no-torch-program",
                 "--choice-rounds", "0"]) == 0
    return out


def test_export_writes_an_editor_manifest_with_the_runs_card(model_dir, run):
    manifest = Manifest.load(model_dir)
    manifest.verify_files(model_dir)
    assert manifest.kind == "editor" and manifest.io == Manifest.default_io("editor")
    assert {f.path for f in manifest.files} >= {"classifier.onnx", "editor.onnx"}
    assert manifest.factor_card == FactorCard.load(run / "factor_card.json").to_dict()
    assert manifest.latent_dim == 6 and manifest.image_shape == (1, 64, 64)


def test_the_onnx_graphs_match_torch(model_dir, run):
    loaded = load_stargan_run(run)
    x = DSPRITES.sample_observations(5, np.random.default_rng(1))
    classifier = ort.InferenceSession(str(model_dir / "classifier.onnx"), providers=["CPUExecutionProvider"])
    editor = ort.InferenceSession(str(model_dir / "editor.onnx"), providers=["CPUExecutionProvider"])
    (codes,) = classifier.run(["codes"], {"images": x})
    with torch.no_grad():
        want_codes = loaded.classifier()(torch.from_numpy(x)).numpy()
        want_images = loaded.generator(torch.from_numpy(x), torch.from_numpy(codes)).numpy()
    (images,) = editor.run(["edited"], {"images": x, "codes": codes})
    assert np.abs(codes - want_codes).max() <= FP32_TOLERANCE
    assert images.shape == x.shape and np.abs(images - want_images).max() <= FP32_TOLERANCE


def test_the_classifier_reads_codes_in_the_cards_values_and_the_servers_edits_feed_the_editor(model_dir):
    manifest = Manifest.load(model_dir)
    card = FactorCard.from_dict(manifest.factor_card)
    x = DSPRITES.sample_observations(16, np.random.default_rng(2))
    classifier = ort.InferenceSession(str(model_dir / "classifier.onnx"), providers=["CPUExecutionProvider"])
    (codes,) = classifier.run(["codes"], {"images": x})
    shape, orientation = card["shape"], card["orientation"]
    assert all(np.isclose(shape.latent_table, c).all(axis=1).any() for c in codes[:, shape.dims])  # a table code
    np.testing.assert_allclose(np.linalg.norm(codes[:, orientation.dims], axis=1), 1.0, atol=1e-5)  # on the circle
    for name in ("scale", "pos_x", "pos_y"):
        assert (np.abs(codes[:, card[name].dims]) <= 1.0).all()  # within the table's [-1, 1]
    edited = apply_edits(codes, [CheckedEdit("shape", None, "set_label", "heart"),
                                 CheckedEdit("pos_x", None, "set_value", 0.0)], card)
    assert (card["shape"].value_from_latents(edited) == 2).all() and np.allclose(edited[:, 4], -1.0)
    editor = ort.InferenceSession(str(model_dir / "editor.onnx"), providers=["CPUExecutionProvider"])
    (images,) = editor.run(["edited"], {"images": x, "codes": edited.astype(np.float32)})
    assert images.shape == x.shape and 0.0 <= images.min() and images.max() <= 1.0
