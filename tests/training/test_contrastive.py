"""The contrastive objective: InfoNCE on weakly supervised pairs trains the encoder, the decoder
reads detached codes, and the run trains, resumes, evaluates and exports like any other."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from latentdial.training.config import load_config
from latentdial.training.model import ModelConfig, build_model
from latentdial.training.objectives import OBJECTIVES, ContrastiveConfig, ContrastivePairs
from latentdial.training.objectives.contrastive import (
    masked_sq_distances,
    moment_penalty,
    pair_infonce,
    shared_dims,
    standardise,
)
from latentdial.training.trainer import checkpoint_paths, train

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.toml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pairs(n: int, d: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of n pairs: b equals a (plus a little noise) but on k dims per pair, each moved by
    2 .. 2.5 either way (changes of similar size, as a factor's steps are)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    changed = torch.rand(n, d, generator=g).argsort(dim=1) < k  # k dims per row
    step = (2.0 + 0.5 * torch.rand(n, d, generator=g)) * torch.sign(torch.randn(n, d, generator=g))
    b = torch.where(changed, a + step, a) + 0.01 * torch.randn(n, d, generator=g)
    return a, b


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 64, 64, generator=g) > 0.8).float()


def _smoke(*overrides: str):
    return load_config(SMOKE, ["objective.name=contrastive", *overrides])


# -- the loss --------------------------------------------------------------------------
def test_it_is_registered_with_a_config_that_inherits_the_base_one():
    assert OBJECTIVES["contrastive"] is ContrastivePairs
    assert ContrastivePairs.requires_pairs and issubclass(ContrastiveConfig, OBJECTIVES["vae"].Config)


def test_the_adaptive_rule_marks_the_dims_that_changed_within_a_pair():
    a = torch.zeros(3, 5)
    b = a.clone()
    b[0, 2], b[1, 0], b[2, 4] = 3.0, -2.0, 1.5
    b[:, 1] += 0.05  # a small change on a shared dim stays shared
    expected = torch.ones(3, 5)
    expected[0, 2] = expected[1, 0] = expected[2, 4] = 0.0
    torch.testing.assert_close(shared_dims(a, b), expected)


def test_distances_read_only_the_dims_a_row_shares():
    u = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    v = torch.tensor([[0.0, 5.0], [2.0, 0.0]])
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # row 0 shares dim 0 only
    # row 0: (0-0)^2 and (0-2)^2 on dim 0; row 1: mean over both dims
    torch.testing.assert_close(masked_sq_distances(u, v, w), torch.tensor([[0.0, 4.0], [8.5, 1.0]]))


def test_infonce_is_lower_for_pairs_whose_shared_dims_agree_than_for_shuffled_pairs():
    a, b = _pairs(64, 10, k=1, seed=0)
    codes = standardise(torch.cat([a, b]))
    a, b = codes[:64], codes[64:]
    matched = pair_infonce(a, b, shared_dims(a, b), temperature=0.1)
    shuffled_b = b[torch.randperm(64, generator=torch.Generator().manual_seed(1))]
    shuffled = pair_infonce(a, shuffled_b, shared_dims(a, shuffled_b), temperature=0.1)
    assert matched.item() < 0.1  # the partner is found among 64
    assert shuffled.item() > math.log(64) - 1.0  # chance is log 64 = 4.16
    assert matched.item() < shuffled.item() - 3.0


def test_a_pair_is_never_asked_to_agree_on_the_dims_it_changed():
    a, b = _pairs(16, 6, k=2, seed=2)
    weights = shared_dims(a, b)
    moved = torch.where(weights == 0, b + 10.0, b)  # the changed dims drift much further apart
    assert (weights.sum(dim=1) == 4).all()  # both changed dims of every pair are found
    positives = torch.diagonal(masked_sq_distances(a, b, weights))
    torch.testing.assert_close(torch.diagonal(masked_sq_distances(a, moved, weights)), positives)
    assert positives.max().item() < 1e-3  # and they agree on every dim they share


def test_the_moment_term_is_zero_for_standardised_codes_and_grows_with_offset_and_scale():
    codes = standardise(torch.randn(256, 4, generator=torch.Generator().manual_seed(0)))
    assert moment_penalty(codes).item() == pytest.approx(0.0, abs=1e-3)
    assert moment_penalty(3.0 * codes).item() == pytest.approx(4 * math.log(9.0) ** 2, rel=1e-3)
    assert moment_penalty(0.01 * codes).item() == pytest.approx(4 * math.log(1e-4 + 1e-5) ** 2, rel=1e-3)
    assert moment_penalty(codes + 1.0).item() == pytest.approx(4.0, rel=1e-3)  # (mean / std)^2 per dim


# -- what each network learns from -------------------------------------------------------
def _objective(latent_dim: int = 4) -> ContrastivePairs:
    torch.manual_seed(0)
    return ContrastivePairs(build_model(ModelConfig(latent_dim=latent_dim)))


def test_the_reconstruction_gradient_never_reaches_the_encoder():
    objective = _objective()
    _, terms = objective.loss_terms((_images(8, 0), _images(8, 1)), step=0)
    terms["recon"].backward()
    assert all(p.grad is None for p in objective.model.encoder.parameters())
    decoder_grads = [p.grad for p in objective.model.decoder.parameters()]
    assert all(g is not None for g in decoder_grads) and any(g.abs().sum() > 0 for g in decoder_grads)


def test_the_representation_terms_train_the_encoder_and_never_the_decoder():
    objective = _objective()
    _, terms = objective.loss_terms((_images(8, 0), _images(8, 1)), step=0)
    terms["regularizer"].backward()
    assert all(p.grad is None for p in objective.model.decoder.parameters())
    trained = [p for p in objective.vae_parameters() if p in set(objective.model.encoder.parameters())]
    assert trained and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)


def test_the_loss_is_reconstruction_plus_the_weighted_representation_terms():
    objective = ContrastivePairs(build_model(ModelConfig(latent_dim=4)),
                                 ContrastiveConfig(contrastive_weight=2.0, moment_weight=0.5))
    _, logs = objective.loss((_images(8, 0), _images(8, 1)), step=0)
    assert logs["regularizer"] == pytest.approx(2.0 * logs["infonce"] + 0.5 * logs["moments"], rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["recon"] + logs["regularizer"], rel=1e-5)
    assert 1.0 <= logs["shared_dims"] <= 4.0


def test_the_log_var_head_is_the_fixed_decoder_noise_and_not_trained():
    objective = ContrastivePairs(build_model(ModelConfig(latent_dim=4)), ContrastiveConfig(decoder_noise=0.1))
    _, log_var = objective.model.encoder(_images(5, 0))
    torch.testing.assert_close(log_var, torch.full((5, 4), 2 * math.log(0.1)))
    head = set(objective.model.encoder.log_var.parameters())
    assert not head & set(objective.vae_parameters())
    with pytest.raises(ValueError, match="decoder_noise"):
        ContrastivePairs(build_model(ModelConfig(latent_dim=4)), ContrastiveConfig(decoder_noise=0.0))


def test_single_images_are_refused():
    with pytest.raises(TypeError, match="pairs"):
        _objective().loss(_images(8, 0), step=0)


# -- a tiny run: finite, resumable, evaluated and exported ----------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(an uninterrupted 6-step run, the same run stopped at 3 and resumed to 6)."""
    root = tmp_path_factory.mktemp("contrastive")
    full = train(_smoke(), root / "full", progress=False)
    part = train(_smoke("steps=3"), root / "part", progress=False)
    resumed = train(_smoke(), part, resume=True, progress=False)
    return full, resumed


def test_a_tiny_run_logs_finite_terms_and_keeps_its_log_var_head(runs):
    full, _ = runs
    header, *rows = (full / "loss_log.csv").read_text().splitlines()
    assert {"infonce", "moments", "shared_dims", "recon"} <= set(header.split(","))
    values = np.array([[float(v) for v in row.split(",")] for row in rows])
    assert len(rows) == 3 and np.isfinite(values).all()
    weights = load_file(str(full / "model.safetensors"))
    assert torch.count_nonzero(weights["encoder.log_var.weight"]) == 0
    torch.testing.assert_close(weights["encoder.log_var.bias"], torch.full((4,), 2 * math.log(0.05)))


def test_resume_gives_the_weights_of_an_uninterrupted_run(runs):
    full, resumed = runs
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in checkpoint_paths(resumed)][-1] == "step_00000006.pt"


@pytest.mark.filterwarnings("ignore:factor .* is carried by no latent dimension")
def test_metrics_and_factor_card_are_computed_on_the_encoder_codes(runs):
    from latentdial.training.evaluate import evaluate_run

    full, _ = runs
    scores, card = evaluate_run(full, metrics="mig", num_train=200, num_test=100,
                                card_points_per_value=2, progress=False)
    assert "mig" in scores and all(math.isfinite(v) for v in scores.values())
    assert card is not None and (full / "factor_card.json").is_file()


def test_export_keeps_the_encoder_decoder_contract(runs, tmp_path):
    from latentdial.export.bundle import export_run
    from latentdial.training.run_dir import load_run

    full, _ = runs
    model_dir = tmp_path / "models" / "contrastive" / "1"
    manifest = export_run(full, model_dir, speed_rounds=0, choice_rounds=0, report=lambda _: None)
    assert manifest.io["encoder"]["outputs"] == ["mean", "log_var"]
    assert manifest.io["decoder"]["inputs"] == ["latents"] and manifest.latent_dim == 4
    x = _images(3, 7).numpy()
    encoder = ort.InferenceSession(str(model_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    mean, log_var = encoder.run(["mean", "log_var"], {"images": x})
    with torch.no_grad():
        ref_mean, _ = load_run(full).model.encoder(torch.from_numpy(x))
    np.testing.assert_allclose(mean, ref_mean.numpy(), atol=1e-4)
    np.testing.assert_allclose(log_var, np.full((3, 4), 2 * math.log(0.05), np.float32), atol=1e-5)
    decoder = ort.InferenceSession(str(model_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    (images,) = decoder.run(None, {"latents": mean})
    assert images.shape == (3, 1, 64, 64) and images.min() >= 0.0 and images.max() <= 1.0
