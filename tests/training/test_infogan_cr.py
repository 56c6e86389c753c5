"""InfoGAN-CR (Lin et al. 2020): shapes, the contrastive pairs, who learns from what, a tiny run
that resumes bit for bit, and the exported model under the encoder/decoder contract."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from latentdial.training.config import load_config
from latentdial.training.model import ModelConfig, build_model
from latentdial.training.objectives import get_objective
from latentdial.training.objectives.infogan_cr import (
    InfoGANCR,
    InfoGANCRConfig,
    sample_cr_pairs,
    sample_latents,
)
from latentdial.training.run_dir import WEIGHTS
from latentdial.training.trainer import checkpoint_paths, train

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "infogan_cr.toml"
RECIPE = REPO / "configs" / "families" / "dsprites_infogan_cr.toml"  # the authors' recipe
TINY = ["steps=6", "batch_size=8", "log_every=2", "checkpoint_every=3", "objective.cr_start_step=3"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _objective(**overrides) -> InfoGANCR:
    torch.manual_seed(0)
    return InfoGANCR(build_model(ModelConfig(latent_dim=10)), InfoGANCRConfig(**overrides))


def test_it_is_registered_and_the_full_recipe_is_the_authors_dsprites_one():
    assert get_objective("infogan_cr") is InfoGANCR
    cfg = load_config(RECIPE)
    c = cfg.objective
    assert cfg.steps == 28 * (737_280 // 64) == 322_560 and cfg.batch_size == 64
    assert (c.num_codes, c.num_noise, cfg.model.latent_dim) == (5, 5, 10)
    assert (c.info_weight_generator, c.info_weight_discriminator) == (0.05, 0.05)
    assert (c.cr_weight, c.cr_start_step) == (2.0, 288_000)
    assert (c.generator_lr, c.discriminator_lr, c.cr_discriminator_lr) == (1e-3, 2e-3, 2e-3)
    assert c.generator_beta1 == c.discriminator_beta1 == c.cr_discriminator_beta1 == 0.5
    assert c.generator_steps == 2 and c.q_std == 1.0
    assert InfoGANCRConfig().generator_recon_weight == 0.0, "the objective itself defaults to the authors'"


def test_the_latent_size_must_be_codes_plus_noise():
    with pytest.raises(ValueError, match="num_codes \\+ num_noise"):
        InfoGANCR(build_model(ModelConfig(latent_dim=8)), InfoGANCRConfig(num_codes=5, num_noise=5))


def test_the_generic_smoke_config_trains_it_with_codes_and_noise_that_fit_its_latents(tmp_path):
    """configs/smoke.toml has 4 latents: 2 codes + 2 noise dims fit them."""
    cfg = load_config(REPO / "configs" / "smoke.toml", ["objective.name=infogan_cr", "objective.num_codes=2",
                                                       "objective.num_noise=2", "steps=2", "checkpoint_every=2"])
    out = train(cfg, tmp_path / "r", progress=False)
    header, *rows = (out / "loss_log.csv").read_text().splitlines()
    assert header.startswith("step,loss,inversion,recon")
    assert all(math.isfinite(float(v)) for row in rows for v in row.split(","))
    assert "infogan_cr" in (out / "report.md").read_text()


def test_shapes_of_the_generator_and_both_discriminators():
    obj = _objective()
    z = sample_latents(4, 5, 5)
    assert z.shape == (4, 10) and float(z.min()) >= -1.0 and float(z.max()) <= 1.0
    with torch.no_grad():
        images = obj.generate(z)
    assert images.shape == (4, 1, 64, 64) and float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    logit, q = obj.discriminator(images)
    assert logit.shape == (4,) and q.shape == (4, 5)
    assert obj.cr_discriminator(images, images).shape == (4, 5)
    big = InfoGANCR(build_model(ModelConfig(architecture="conv128", channels=3, image_size=128, latent_dim=6)),
                    InfoGANCRConfig(num_codes=4, num_noise=2))
    with torch.no_grad():
        rgb = big.generate(sample_latents(2, 4, 2))
        assert rgb.shape == (2, 3, 128, 128)
        assert [t.shape for t in big.discriminator(rgb)] == [(2,), (2, 4)]
        assert big.cr_discriminator(rgb, rgb).shape == (2, 4)


def test_a_contrastive_pair_shares_exactly_its_one_code_and_the_noise():
    torch.manual_seed(1)
    z1, z2, shared = sample_cr_pairs(2000, 5, 5)
    same = z1 == z2  # (N, 10)
    assert same[:, 5:].all(), "the noise is common to both images of a pair"
    codes_same = same[:, :5]
    assert (codes_same.sum(dim=1) == 1).all(), "exactly one code is shared"
    assert (codes_same.float().argmax(dim=1) == shared).all(), "and it is the labelled one"
    assert torch.bincount(shared, minlength=5).min() > 300, "every code is the shared one about equally often"


def test_the_encoder_loss_reaches_only_the_encoder_and_the_gan_step_leaves_it_alone():
    obj = _objective()
    batch = torch.rand(6, 1, 64, 64).round()
    loss, logs = obj(batch, 0)
    assert {"inversion", "recon", "code_mse"} <= set(logs) and "kl" not in logs
    loss.backward()
    assert all(p.grad is None for p in obj.model.decoder.parameters())
    assert all(p.grad is not None for p in obj.model.encoder.parameters())
    assert {id(p) for p in obj.vae_parameters()} == {id(p) for p in obj.model.encoder.parameters()}
    encoder = {k: v.clone() for k, v in obj.model.encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in obj.model.decoder.state_dict().items()}
    aux = obj.auxiliary_step(0)
    assert all(math.isfinite(v) for v in aux.values())
    assert all(torch.equal(v, obj.model.encoder.state_dict()[k]) for k, v in encoder.items())
    assert any(not torch.equal(v, obj.model.decoder.state_dict()[k]) for k, v in decoder.items())


def test_the_generator_reconstruction_term_is_off_by_default_and_pulls_the_generator_to_the_data_when_on():
    batch = torch.rand(4, 1, 64, 64).round()
    plain = _objective()
    plain(batch, 0)
    assert "generator_recon" not in plain.auxiliary_step(0)
    anchored = _objective(generator_recon_weight=1.0)
    anchored(batch, 0)
    codes = anchored._real_codes

    def recon() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.binary_cross_entropy_with_logits(
                anchored.model.decoder(codes), batch, reduction="sum")) / len(batch)

    before = recon()
    logs = anchored.auxiliary_step(0)
    assert math.isfinite(logs["generator_recon"])
    assert recon() < before


def test_the_cr_weight_rises_at_its_step_and_its_discriminator_restarts_there():
    obj = _objective(cr_start_step=2)
    assert [obj.cr_weight_at(s) for s in (0, 1, 2, 3)] == [0.0, 0.0, 2.0, 2.0]
    batch = torch.rand(4, 1, 64, 64).round()
    for step in (0, 1):
        obj(batch, step)
        assert obj.auxiliary_step(step)["cr_weight"] == 0.0
    trained = {k: v.clone() for k, v in obj.cr_discriminator.state_dict().items()}
    assert obj.cr_optimizer.state, "H has Adam state after two steps"
    obj(batch, 2)
    assert obj.auxiliary_step(2)["cr_weight"] == 2.0
    now = obj.cr_discriminator.state_dict()
    assert any(not torch.equal(v, now[k]) for k, v in trained.items())
    # one Adam step from a fresh start: every step count is 1
    assert {int(s["step"]) for s in obj.cr_optimizer.state.values()} == {1}


def test_a_tiny_run_is_finite_and_resumes_bit_for_bit(tmp_path):
    straight = train(load_config(SMOKE, TINY), tmp_path / "straight", progress=False)
    with (straight / "loss_log.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert all(math.isfinite(float(v)) for row in rows for v in row.values())
    assert [float(r["cr_weight"]) for r in rows] == [0.0, 2.0, 2.0]  # steps 1, 3, 5: on from step 3

    stopped = tmp_path / "stopped"
    train(load_config(SMOKE, [*TINY, "steps=3"]), stopped, progress=False)
    assert [p.name for p in checkpoint_paths(stopped)] == ["step_00000003.pt"]
    train(load_config(SMOKE, TINY), stopped, resume=True, progress=False)
    a, b = load_file(str(straight / WEIGHTS)), load_file(str(stopped / WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_exported_model_keeps_the_encoder_decoder_contract(tmp_path):
    import onnxruntime as ort

    from latentdial.export.bundle import export_run
    from latentdial.training.run_dir import load_run

    run_dir = train(load_config(SMOKE, [*TINY, "steps=2", "checkpoint_every=2"]), tmp_path / "run", progress=False)
    model_dir = tmp_path / "models" / "infogan-cr" / "1"
    export_run(run_dir, model_dir, exporter="torchscript", torch_program=False, batches=(1, 3),
               choice_rounds=0, report=lambda _msg: None)
    model = load_run(run_dir).model
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, 64, 64), dtype=np.float32)
    latents = (rng.random((3, 10), dtype=np.float32) * 2 - 1)
    enc = ort.InferenceSession(str(model_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(model_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    mean, log_var = enc.run(None, {"images": images})
    (decoded,) = dec.run(None, {dec.get_inputs()[0].name: latents})
    with torch.no_grad():
        want_mean, want_log_var = model.encoder(torch.from_numpy(images))
        want_images = torch.sigmoid(model.decoder(torch.from_numpy(latents)))
    assert mean.shape == log_var.shape == (3, 10) and decoded.shape == (3, 1, 64, 64)
    np.testing.assert_allclose(mean, want_mean.numpy(), atol=1e-4)
    np.testing.assert_allclose(log_var, want_log_var.numpy(), atol=1e-4)
    np.testing.assert_allclose(decoded, want_images.numpy(), atol=1e-4)
