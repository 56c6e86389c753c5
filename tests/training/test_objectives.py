"""Objectives: every variant trains, each regulariser matches its paper's definition."""

from __future__ import annotations

import math

import pytest
import torch

from latentdial.training.model import ModelConfig, build_model
from latentdial.training.objectives import (
    OBJECTIVES,
    AnnealedVAE,
    AnnealedVAEConfig,
    BetaVAE,
    BetaVAEConfig,
    FactorVAE,
    NonFiniteLossError,
    get_objective,
)
from latentdial.training.objectives.ada_gvae import adaptive_average, posterior_kl
from latentdial.training.objectives.base import bernoulli_reconstruction, gaussian_kl
from latentdial.training.objectives.beta_tcvae import total_correlation
from latentdial.training.objectives.beta_vae import capacity
from latentdial.training.objectives.info_vae import mmd


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 64, 64, generator=g) > 0.8).float()


def _model(latent_dim: int = 4):
    return build_model(ModelConfig(latent_dim=latent_dim))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_runs_forward_and_backward_without_nan(name):
    cls = get_objective(name)
    # a GAN's 4 latents are 2 codes and 2 noise dims
    objective = cls(_model(), cls.Config(num_codes=2, num_noise=2)) if name == "infogan_cr" else cls(_model())
    batch = (_images(8, 0), _images(8, 1)) if cls.requires_pairs else _images(8)
    if cls.requires_labels:  # two labelled factors fit the 4 latents; half the images unlabelled
        from latentdial.training.data import get_dataset

        dsprites = get_dataset("dsprites")
        objective = cls(_model(), cls.Config(factors=["scale", "pos_x"]))
        objective.attach_dataset(dsprites)
        labels = torch.from_numpy(dsprites.sample_factors(8, __import__("numpy").random.default_rng(0)))
        labels[4:] = -1
        batch = (_images(8), labels)
    loss, logs = objective.loss(batch, step=3)
    loss.backward()
    assert math.isfinite(loss.item())
    assert {"loss", "recon"} <= set(logs)
    if name != "infogan_cr":  # a GAN has neither a KL nor a VAE regulariser
        assert {"kl", "regularizer"} <= set(logs)
    assert all(math.isfinite(v) for v in logs.values())
    assert logs["loss"] == pytest.approx(loss.item())
    grads = [p.grad for p in objective.vae_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    objective.auxiliary_step(3)  # runs for all; a no-op returning {} where there is none


def test_beta_vae_loss_is_reconstruction_plus_beta_times_kl():
    torch.manual_seed(1)
    model = _model()
    x = _images(6)
    torch.manual_seed(7)
    loss, logs = BetaVAE(model, BetaVAEConfig(beta=8.0)).loss(x, step=0)
    torch.manual_seed(7)  # same reparameterisation noise
    logits, mean, log_var, _ = model(x)
    recon = torch.stack([
        torch.nn.functional.binary_cross_entropy_with_logits(logits[i], x[i], reduction="sum") for i in range(6)
    ]).mean()
    var = log_var.exp()
    kl = (0.5 * (mean**2 + var - log_var - 1)).sum(dim=1).mean()
    assert loss.item() == pytest.approx((recon + 8.0 * kl).item(), rel=1e-5)
    assert logs["recon"] == pytest.approx(recon.item(), rel=1e-5)
    assert logs["kl"] == pytest.approx(kl.item(), rel=1e-5)


def test_annealed_vae_capacity_rises_linearly_then_stays_at_c_max():
    assert capacity(0, 25.0, 100) == 0.0
    assert capacity(50, 25.0, 100) == pytest.approx(12.5)
    assert capacity(100, 25.0, 100) == pytest.approx(25.0)
    assert capacity(10_000, 25.0, 100) == pytest.approx(25.0)
    objective = AnnealedVAE(_model(), AnnealedVAEConfig(gamma=2.0, c_max=10.0, iteration_threshold=20))
    _, logs = objective.loss(_images(4), step=5)
    assert logs["capacity"] == pytest.approx(2.5)
    assert logs["regularizer"] == pytest.approx(2.0 * abs(logs["kl"] - 2.5), rel=1e-5)


def _posteriors(means: torch.Tensor, std: float = 0.1):
    log_var = torch.full_like(means, 2 * math.log(std))
    z = means + std * torch.randn_like(means)
    return z, means, log_var


def test_total_correlation_is_near_zero_for_independent_latents_and_larger_for_correlated():
    torch.manual_seed(0)
    independent = torch.randn(512, 3)
    base = torch.randn(512, 1)
    correlated = torch.cat([base, base + 0.05 * torch.randn(512, 1), -base], dim=1)
    tc_ind = total_correlation(*_posteriors(independent, std=0.3)).item()
    tc_cor = total_correlation(*_posteriors(correlated, std=0.3)).item()
    assert abs(tc_ind) < 0.3
    assert tc_cor > 1.0
    assert tc_cor > 5 * abs(tc_ind)


def test_mmd_separates_prior_samples_from_shifted_samples():
    torch.manual_seed(0)
    same = mmd(torch.randn(256, 4), torch.randn(256, 4)).item()
    shifted = mmd(torch.randn(256, 4) + 2.0, torch.randn(256, 4)).item()
    assert abs(same) < 0.02
    assert shifted > 10 * max(abs(same), 1e-3)


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_factor_vae_discriminator_step_leaves_vae_untouched_and_vae_step_leaves_discriminator():
    objective = FactorVAE(_model(), FactorVAE.Config(discriminator_hidden=32, discriminator_layers=2))
    vae_opt = torch.optim.Adam(objective.vae_parameters(), lr=1e-2)
    vae_before, disc_before = _params(objective.model), _params(objective.discriminator)

    loss, logs = objective.loss(_images(8), step=0)
    assert "tc" in logs
    vae_opt.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in objective.discriminator.parameters())
    vae_opt.step()
    vae_after = _params(objective.model)
    assert not _same(vae_before, vae_after)
    assert _same(disc_before, _params(objective.discriminator))

    aux = objective.auxiliary_step(0)
    assert set(aux) == {"discriminator_loss", "discriminator_acc"}
    assert _same(vae_after, _params(objective.model))
    assert not _same(disc_before, _params(objective.discriminator))
    state = objective.auxiliary_state_dict()
    fresh = FactorVAE(_model(), FactorVAE.Config(discriminator_hidden=32, discriminator_layers=2))
    fresh.load_auxiliary_state_dict(state)
    assert fresh.discriminator_optimizer.state_dict()["state"].keys() == state["discriminator_optimizer"]["state"].keys()


def test_factor_vae_discriminator_uses_the_paper_architecture_by_default():
    objective = FactorVAE(_model())
    linears = [m for m in objective.discriminator.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [1000] * 6 + [2]
    assert objective.discriminator_optimizer.defaults["betas"] == (0.5, 0.9)
    assert objective.discriminator_optimizer.defaults["lr"] == 1e-4


def test_ada_gvae_averages_exactly_the_dims_below_threshold():
    mean1 = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    mean2 = torch.tensor([[0.0, 0.1, 3.0, 2.0]])
    lv1 = torch.zeros(1, 4)
    lv2 = torch.log(torch.tensor([[1.0, 1.0, 1.0, 4.0]]))
    delta = posterior_kl(mean1, lv1, mean2, lv2)
    tau = 0.5 * (delta.max() + delta.min())
    expected_shared = delta < tau
    assert 0 < int(expected_shared.sum()) < 4  # the example has shared and unshared dims
    m1, l1, m2, l2, shared = adaptive_average(mean1, lv1, mean2, lv2)
    assert torch.equal(shared, expected_shared)
    avg_m = 0.5 * (mean1 + mean2)
    avg_lv = torch.log(0.5 * (lv1.exp() + lv2.exp()))
    for d in range(4):
        if shared[0, d]:
            assert m1[0, d] == m2[0, d] == avg_m[0, d]
            assert l1[0, d] == l2[0, d] == avg_lv[0, d]
        else:
            assert m1[0, d] == mean1[0, d] and m2[0, d] == mean2[0, d]
            assert l1[0, d] == lv1[0, d] and l2[0, d] == lv2[0, d]


def test_ada_gvae_loss_is_the_pair_elbo_on_averaged_posteriors_through_the_hooks():
    """The template with Ada-GVAE's hooks equals the pair loss written out in one piece."""
    objective = get_objective("ada_gvae")(_model())
    x1, x2 = _images(6, 0), _images(6, 1)
    torch.manual_seed(5)
    loss, logs = objective.loss((x1, x2), step=0)
    torch.manual_seed(5)
    mean, log_var = objective.model.encoder(torch.cat([x1, x2]))
    m1, lv1, m2, lv2, shared = adaptive_average(mean[:6], log_var[:6], mean[6:], log_var[6:])
    mean, log_var = torch.cat([m1, m2]), torch.cat([lv1, lv2])
    z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
    recon = bernoulli_reconstruction(objective.model.decoder(z), torch.cat([x1, x2])).view(2, 6).sum(0).mean()
    kl = gaussian_kl(mean, log_var).sum(dim=1).view(2, 6).sum(0).mean()
    assert torch.equal(loss, recon + kl)
    assert logs["shared_dims"] == pytest.approx(float(shared.float().sum(dim=1).mean()))
    assert logs["recon"] == pytest.approx(recon.item()) and logs["kl"] == pytest.approx(kl.item())


def test_ada_gvae_rejects_single_images():
    with pytest.raises(TypeError, match="pairs"):
        get_objective("ada_gvae")(_model()).loss(_images(4), step=0)


def test_nan_loss_raises_naming_the_step_and_term():
    x = _images(4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="step 12") as err:
        BetaVAE(_model()).loss(x, step=12)
    assert err.value.term in {"loss", "recon"}
    import pickle

    again = pickle.loads(pickle.dumps(err.value))  # as a Ray trial's failure reaches the sweep
    assert (type(again), again.step, again.term, str(again)) == (NonFiniteLossError, 12, err.value.term, str(err.value))


def test_unknown_objective_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown objective 'beta_vea'") as err:
        get_objective("beta_vea")
    for name in ("beta_vae", "factor_vae", "ada_gvae", "dip_vae_ii"):
        assert name in str(err.value)


def test_wrong_config_type_is_rejected():
    with pytest.raises(TypeError, match="BetaVAEConfig"):
        BetaVAE(_model(), AnnealedVAEConfig())


def test_variant_configs_inherit_from_the_base_config():
    base = OBJECTIVES["vae"].Config
    for cls in OBJECTIVES.values():
        assert issubclass(cls.Config, base)
    assert issubclass(OBJECTIVES["dip_vae_ii"].Config, OBJECTIVES["dip_vae_i"].Config)


def test_reconstruction_and_kl_helpers_have_per_image_and_per_dim_shapes():
    x = _images(3)
    assert bernoulli_reconstruction(torch.zeros_like(x), x).shape == (3,)
    assert torch.allclose(bernoulli_reconstruction(torch.zeros_like(x), x), torch.full((3,), 4096 * math.log(2)))
    assert torch.equal(gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)), torch.zeros(2, 5))
