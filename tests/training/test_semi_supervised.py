"""Semi-supervised objective: named dims per factor kind, circular symmetry, partial labels,
label codes on the decoder's input, the factor card from the supervision, and a real run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latentdial.factor_card import FactorCard
from latentdial.serving.edits import CheckedEdit, apply_edits
from latentdial.training.config import ConfigError, load_config
from latentdial.training.data import BatchStream, get_dataset
from latentdial.training.model import ModelConfig, build_model
from latentdial.training.objectives import SemiSupervisedConfig, SemiSupervisedVAE
from latentdial.training.objectives.base import Inputs
from latentdial.training.objectives.semi_supervised import circular_loss, factor_codes
from latentdial.training.trainer import Trainer, finish_run

REPO = Path(__file__).resolve().parents[2]
DSPRITES = get_dataset("dsprites")
SQUARE, ELLIPSE, HEART = 0, 1, 2


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _objective(latent_dim: int = 10, **config) -> SemiSupervisedVAE:
    objective = SemiSupervisedVAE(build_model(ModelConfig(latent_dim=latent_dim)), SemiSupervisedConfig(**config))
    objective.attach_dataset(DSPRITES)
    return objective


def _labels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(DSPRITES.sample_factors(n, np.random.default_rng(seed)))


def _perfect_mean(objective: SemiSupervisedVAE, labels: torch.Tensor, latent_dim: int = 10) -> torch.Tensor:
    """Posterior means that write every labelled factor's code exactly; free dims random."""
    mean = torch.randn(len(labels), latent_dim)
    for code in objective.codes:
        mean[:, list(code.dims)] = torch.from_numpy(code.table)[labels[:, code.column]]
    return mean


# -- layout and the supervised term ------------------------------------------------------
def test_every_dsprites_factor_gets_named_dims_by_kind_and_the_rest_are_free():
    objective = _objective()
    layout = {c.name: (c.kind, c.dims) for c in objective.codes}
    assert layout == {
        "shape": ("categorical", (0,)), "scale": ("continuous", (1,)), "orientation": ("circular", (2, 3)),
        "pos_x": ("continuous", (4,)), "pos_y": ("continuous", (5,)),
    }
    assert objective.num_named == 6
    one_hot = factor_codes(DSPRITES, ["shape"], 10, "one_hot")[0]
    assert one_hot.dims == (0, 1, 2) and np.array_equal(one_hot.table, np.eye(3))


def test_supervised_term_is_zero_at_the_perfect_code_and_positive_elsewhere():
    objective = _objective()
    labels = _labels(32)
    mean = _perfect_mean(objective, labels)
    term, logs = objective.supervised(mean, Inputs(images=torch.zeros(32, 1, 64, 64), labels=labels))
    assert float(term) == pytest.approx(0.0, abs=1e-6)
    assert set(logs) == {f"sup_{n}" for n in DSPRITES.factor_names}
    mean[:, 4] += 0.5  # pos_x off by a quarter of its range
    term, logs = objective.supervised(mean, Inputs(images=torch.zeros(32, 1, 64, 64), labels=labels))
    assert float(logs["sup_pos_x"]) == pytest.approx(0.25, rel=1e-5)
    assert float(term) == pytest.approx(10.0 * 0.25, rel=1e-5)  # gamma = 10


def test_supervised_gradient_reaches_only_the_named_dims_of_labelled_factors():
    objective = _objective(factors=["scale", "pos_x"])
    labels = _labels(16)
    mean = torch.randn(16, 10, requires_grad=True)
    term, _ = objective.supervised(mean, Inputs(images=torch.zeros(16, 1, 64, 64), labels=labels))
    term.backward()
    touched = (mean.grad.abs().sum(dim=0) > 0).nonzero().flatten().tolist()
    assert touched == [0, 1]


def test_circular_loss_respects_each_shapes_rotational_symmetry():
    theta = torch.full((3,), 0.3)
    order = torch.tensor([4, 2, 1])  # square, ellipse, heart

    def at(turn: float) -> torch.Tensor:
        angle = theta + turn
        return circular_loss(torch.stack([torch.cos(angle), torch.sin(angle)], dim=1), theta, order)

    assert torch.allclose(at(0.0), torch.zeros(3), atol=1e-6)
    # a quarter turn: the same image for a square only; half a turn: square and ellipse
    assert torch.allclose(at(math.pi / 2), torch.tensor([0.0, 2.0, 1.0]), atol=1e-5)
    assert torch.allclose(at(math.pi), torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)
    # off the unit circle costs (|u| - 1)^2 even at the right angle
    u = 2.0 * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    assert torch.allclose(circular_loss(u, theta, order), torch.ones(3), atol=1e-6)


def test_orientation_symmetry_comes_from_the_data_and_is_used_per_shape():
    assert DSPRITES.circular_symmetry(2) == (0, (4, 2, 1))
    assert DSPRITES.circular_symmetry(1) is None
    assert get_dataset("color_dsprites").circular_symmetry(6) is None  # hue has no symmetry
    objective = _objective()
    labels = torch.tensor([[SQUARE, 0, 5, 0, 0], [HEART, 0, 5, 0, 0]])
    mean = _perfect_mean(objective, labels)
    theta = float(DSPRITES.factor_grid(2)[5]) + math.pi / 2  # a quarter turn on both
    mean[:, 2], mean[:, 3] = math.cos(theta), math.sin(theta)
    _, logs = objective.supervised(mean, Inputs(images=torch.zeros(2, 1, 64, 64), labels=labels))
    # the square costs nothing, the heart costs 1 - cos(pi/2) = 1; the mean is 0.5
    assert float(logs["sup_orientation"]) == pytest.approx(0.5, abs=1e-5)


def test_unlabelled_images_carry_no_supervision_and_decode_their_posterior_mean():
    objective = _objective()
    labels = _labels(8)
    labels[4:] = -1
    mean = torch.randn(8, 10, requires_grad=True)
    z = torch.randn(8, 10)
    decoded = objective.hook_latents(z, mean, Inputs(images=torch.zeros(8, 1, 64, 64), labels=labels))
    perfect = _perfect_mean(objective, labels[:4].clamp(min=0))
    assert torch.allclose(decoded[:4, :6], perfect[:, :6])  # label codes on labelled images
    assert torch.equal(decoded[4:, :6], mean[4:, :6])  # posterior mean on unlabelled ones
    assert torch.equal(decoded[:, 6:], z[:, 6:])  # free dims: the sample
    decoded.sum().backward()
    assert mean.grad[:4, :6].abs().sum() == 0  # the decoder cannot reach the encoder's named dims there
    term, _ = objective.supervised(mean, Inputs(images=torch.zeros(8, 1, 64, 64), labels=labels))
    all_unlabelled = torch.full_like(labels, -1)
    none, _ = objective.supervised(mean, Inputs(images=torch.zeros(8, 1, 64, 64), labels=all_unlabelled))
    assert float(none.detach()) == 0.0 and float(term.detach()) > 0


def test_snapped_unlabelled_images_decode_the_nearest_code_with_the_gradient_passed_through():
    objective = _objective(unlabelled_codes="snap")
    labels = _labels(8)
    labels[4:] = -1
    mean = (_perfect_mean(objective, _labels(8, seed=1)) + 0.005 * torch.randn(8, 10)).requires_grad_(True)
    z = torch.randn(8, 10)
    decoded = objective.hook_latents(z, mean, Inputs(images=torch.zeros(8, 1, 64, 64), labels=labels))
    snapped = _perfect_mean(objective, _labels(8, seed=1))[4:, :6]
    assert torch.allclose(decoded[4:, :6], snapped)  # codes, not the slightly-off means
    assert not torch.allclose(decoded[4:, :6], mean[4:, :6].detach())
    assert torch.allclose(decoded[:4, :6], _perfect_mean(objective, labels[:4])[:, :6])  # labels win where given
    decoded[4:, :6].sum().backward()
    assert torch.equal(mean.grad[4:, :6], torch.ones(4, 6))  # straight through to the encoder
    with pytest.raises(ValueError, match="unlabelled_codes must be one of"):
        _objective(unlabelled_codes="round")


def test_pseudo_labelled_images_decode_the_nearest_code_and_send_no_gradient_to_the_encoder():
    objective = _objective(unlabelled_codes="pseudo")
    labels = _labels(8)
    labels[4:] = -1
    mean = (_perfect_mean(objective, _labels(8, seed=1)) + 0.005 * torch.randn(8, 10)).requires_grad_(True)
    decoded = objective.hook_latents(torch.randn(8, 10), mean, Inputs(images=torch.zeros(8, 1, 64, 64), labels=labels))
    assert torch.allclose(decoded[4:, :6], _perfect_mean(objective, _labels(8, seed=1))[4:, :6])  # the codes
    assert torch.allclose(decoded[:4, :6], _perfect_mean(objective, labels[:4])[:, :6])  # labels win where given
    assert not decoded[:, :6].requires_grad  # no path back to the means: only the labels train them


def test_read_circular_pseudo_labels_keep_the_encoders_angle_off_the_grid_and_snap_the_rest():
    objective = _objective(unlabelled_codes="pseudo", pseudo_circular="read")
    orientation = next(c for c in objective.codes if c.name == "orientation")
    labels = _labels(8)
    labels[4:] = -1
    torch.manual_seed(0)
    mean = (_perfect_mean(objective, _labels(8, seed=1)) + 0.01 * torch.randn(8, 10)).requires_grad_(True)
    decoded = objective.hook_latents(torch.randn(8, 10), mean, Inputs(images=torch.zeros(8, 1, 64, 64), labels=labels))
    dims = list(orientation.dims)
    assert not torch.allclose(decoded[4:, dims], _perfect_mean(objective, _labels(8, seed=1))[4:, dims])  # off the grid
    read = mean.detach()[4:, dims]
    assert torch.allclose(decoded[4:, dims], read / read.norm(dim=1, keepdim=True), atol=1e-6)  # the angle read
    others = [d for d in range(6) if d not in dims]
    assert torch.allclose(decoded[4:, others], _perfect_mean(objective, _labels(8, seed=1))[4:, others])  # the grid
    assert torch.allclose(decoded[:4, :6], _perfect_mean(objective, labels[:4])[:, :6])  # labels win where given
    assert not decoded[:, :6].requires_grad
    with pytest.raises(ValueError, match="needs unlabelled_codes"):
        _objective(unlabelled_codes="mean", pseudo_circular="read")
    with pytest.raises(ValueError, match="pseudo_circular must be one of"):
        _objective(unlabelled_codes="pseudo", pseudo_circular="round")


def test_with_pseudo_labels_the_reconstruction_of_unlabelled_images_never_moves_the_encoder():
    objective = SemiSupervisedVAE(build_model(ModelConfig(latent_dim=6)), SemiSupervisedConfig(unlabelled_codes="pseudo"))
    objective.attach_dataset(DSPRITES)
    factors = _labels(8)
    images = torch.from_numpy(DSPRITES.sample_observations_from_factors(factors.numpy(), np.random.default_rng(0)))
    loss, terms = objective.loss_terms((images.float(), torch.full_like(factors, -1)), step=0)
    assert float(terms["recon"]) > 0
    loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in objective.model.encoder.parameters())
    assert sum(float(p.grad.abs().sum()) for p in objective.model.decoder.parameters()) > 0


def test_snapping_commits_unlabelled_means_to_their_codes_so_they_cannot_drift():
    objective = _objective(unlabelled_codes="snap", commitment=0.25)
    labels = torch.full_like(_labels(4), -1)
    codes = _perfect_mean(objective, _labels(4, seed=2))
    far = codes.clone()
    far[:, :6] *= 50.0  # means that drifted far past the outermost codes
    images = torch.zeros(4, 1, 64, 64)
    at_code, logs = objective.supervised(codes, Inputs(images=images, labels=labels))
    assert float(logs["commit"]) == pytest.approx(0.0, abs=1e-9) and float(at_code) == pytest.approx(0.0, abs=1e-9)
    drifted = far.requires_grad_(True)
    loss, logs = objective.supervised(drifted, Inputs(images=images, labels=labels))
    assert float(logs["commit"]) > 100 and float(loss) == pytest.approx(0.25 * float(logs["commit"]))
    loss.backward()
    assert (drifted.grad[:, :6] * drifted.detach()[:, :6] >= 0).all()  # descent pulls them back in
    mean_only, logs = _objective(unlabelled_codes="mean").supervised(far, Inputs(images=images, labels=labels))
    assert "commit" not in logs and float(mean_only) == 0.0


def test_an_edited_code_snaps_every_factor_then_sets_one_to_a_random_code_of_its_table():
    objective = _objective()
    truth = _labels(256, seed=3)
    mean = _perfect_mean(objective, truth) + 0.01 * torch.randn(256, 10)  # near the codes, not on them
    z, indices = objective.edited_codes(mean, torch.full_like(truth, -1))
    assert torch.allclose(z[:, :6], _perfect_mean(objective, indices)[:, :6])  # exact codes, as an edit writes
    assert torch.equal(z[:, 6:], mean[:, 6:])  # free dims kept
    # codes, not indices: dSprites' orientation grid holds 0 and 2 pi, one angle with two indices
    source = _perfect_mean(objective, truth)
    moved = torch.stack([(z[:, list(c.dims)] - source[:, list(c.dims)]).abs().amax(dim=1) > 1e-4
                         for c in objective.codes], dim=1)  # (256, factors)
    assert moved.sum(dim=1).max() == 1 and moved.any(dim=1).float().mean() > 0.5  # one factor a row at most
    assert moved.any(dim=0).all()  # and every factor is edited somewhere in the batch


def test_the_edit_cycle_trains_the_decoder_to_draw_what_the_encoder_reads_and_leaves_the_encoder_alone():
    off, on = _objective(), _objective(edit_cycle=2.0)
    labels = _labels(8)
    mean = _perfect_mean(on, labels)
    images = torch.zeros(8, 1, 64, 64)
    base, logs = off.supervised(mean, Inputs(images=images, labels=labels))
    assert "edit_cycle" not in logs
    total, logs = on.supervised(mean, Inputs(images=images, labels=labels))
    cycle = logs["edit_cycle"]
    assert float(cycle) > 0 and torch.allclose(total, base + 2.0 * cycle)
    cycle.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in on.model.encoder.parameters())
    assert sum(float(p.grad.abs().sum()) for p in on.model.decoder.parameters() if p.grad is not None) > 0
    with pytest.raises(ValueError, match="edit_cycle must be >= 0"):
        _objective(edit_cycle=-1.0)


SPRITE_VIEWS = {"shift": ["shape", "scale", "orientation"], "rot90": ["shape", "scale"], "flip": ["shape", "scale"]}


def _views_objective(**config) -> SemiSupervisedVAE:
    return _objective(latent_dim=8, unlabelled_codes="pseudo", views=SPRITE_VIEWS, views_angle="orientation",
                      views_position=["pos_x", "pos_y"], **config)


def test_a_view_is_drawn_from_its_labels_codes_with_the_turned_angle_and_the_views_own_free_dims():
    objective = _views_objective(views_decode=0.5)
    labels = _labels(16, seed=4)
    labels[3, 1] = -1  # a view whose scale is not known cannot be drawn from codes
    angles = torch.linspace(0.1, 6.0, 16)  # turned angles, off the grid
    mean = torch.randn(16, 8)
    z, known = objective.view_codes(labels, angles, mean)
    orientation = next(c for c in objective.codes if c.name == "orientation")
    dims = list(orientation.dims)
    assert torch.allclose(z[:, dims], torch.stack([angles.cos(), angles.sin()], dim=1))  # the view's own angle
    others = [d for d in range(6) if d not in dims]
    known_rows = [i for i in range(16) if i != 3]
    assert torch.allclose(z[known_rows][:, others], _perfect_mean(objective, labels[known_rows], 8)[:, others])
    assert torch.equal(z[:, 6:], mean[:, 6:])  # free dims: the encoder's reading of the view
    assert known.tolist() == [i != 3 for i in range(16)]


def test_drawing_the_views_adds_their_reconstruction_and_trains_only_the_decoder():
    on = _views_objective(views_decode=0.5)
    off = SemiSupervisedVAE(on.model, SemiSupervisedConfig(**{**on.config.__dict__, "views_decode": 0.0}))
    off.attach_dataset(DSPRITES)
    factors = _labels(8, seed=5)
    images = torch.from_numpy(DSPRITES.sample_observations_from_factors(factors.numpy(), np.random.default_rng(0)))
    inputs = Inputs(images=images.float(), labels=factors)
    mean = _perfect_mean(on, factors, 8)
    torch.manual_seed(1)
    base, logs = off.supervised(mean, inputs)
    assert "views_recon" not in logs
    torch.manual_seed(1)  # the same views: the draw adds only its own term
    total, logs = on.supervised(mean, inputs)
    drawn = logs["views_recon"]
    assert float(drawn) > 100  # an untrained decoder draws 64 x 64 sprites badly (BCE summed over pixels)
    assert torch.allclose(total, base + 0.5 * drawn, rtol=1e-5)
    on.model.zero_grad()
    drawn.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in on.model.encoder.parameters())
    assert sum(float(p.grad.abs().sum()) for p in on.model.decoder.parameters() if p.grad is not None) > 0


def test_drawing_the_views_needs_views_and_a_weight_of_at_least_zero():
    with pytest.raises(ValueError, match="views_decode draws the label-aware views"):
        SemiSupervisedConfig(views_decode=0.5)
    with pytest.raises(ValueError, match="views_decode must be >= 0"):
        SemiSupervisedConfig(views=SPRITE_VIEWS, views_decode=-1.0)


def test_without_decode_labels_the_decoder_reads_the_posterior_mean():
    objective = _objective(decode_labels=False)
    mean, z = torch.randn(4, 10), torch.randn(4, 10)
    decoded = objective.hook_latents(z, mean, Inputs(images=torch.zeros(4, 1, 64, 64), labels=_labels(4)))
    assert torch.equal(decoded[:, :6], mean[:, :6])


def test_kl_weighs_only_the_free_dims():
    objective = _objective(beta=3.0)
    mean, log_var = torch.zeros(4, 10), torch.zeros(4, 10)
    mean[:, :6] = 5.0  # named dims far from the prior cost nothing
    reg, logs = objective.regularizer(None, mean, log_var, mean, 0)
    assert float(reg) == 0.0
    mean[:, 6:] = 1.0  # KL 0.5 per free dim
    reg, logs = objective.regularizer(None, mean, log_var, mean, 0)
    assert float(logs["kl_free"]) == pytest.approx(2.0) and float(reg) == pytest.approx(6.0)


def test_bad_layouts_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="latent_dim = 4"):
        _objective(latent_dim=4)
    with pytest.raises(ValueError, match="distinct factors"):
        _objective(factors=["shape", "colour"])
    with pytest.raises(ValueError, match="categorical_code"):
        SemiSupervisedConfig(categorical_code="binary")
    with pytest.raises(TypeError, match="labels=True"):
        _objective().loss(torch.zeros(2, 1, 64, 64), 0)


# -- few labels: the stream ------------------------------------------------------------
def test_few_labels_come_from_one_fixed_pool_beside_unlabelled_images():
    stream = BatchStream(DSPRITES, 8, seed=3, labels=True, num_labelled=5)
    other_rank = BatchStream(DSPRITES, 8, seed=3, labels=True, num_labelled=5, rank=1, world_size=2)
    assert np.array_equal(stream.pool, other_rank.pool) and stream.pool.shape == (5, 5)
    pool = {tuple(r) for r in stream.pool}
    for step in (0, 7):
        images, labels = stream.batch_at(step)
        assert images.shape == (16, 1, 64, 64) and labels.shape == (16, 5)
        assert (labels[:8] == -1).all()
        assert {tuple(r) for r in labels[8:]} <= pool
        assert np.array_equal(images[8:], DSPRITES.sample_observations_from_factors(labels[8:], None))
    full = BatchStream(DSPRITES, 4, seed=3, labels=True)
    images, labels = full.batch_at(0)
    assert (labels >= 0).all() and np.array_equal(images, DSPRITES.sample_observations_from_factors(labels, None))


# -- the factor card from the supervision ----------------------------------------------
def test_factor_card_is_the_code_table_so_edits_write_the_decoders_codes():
    card = FactorCard.from_dict(json.loads(json.dumps(_objective().factor_card().to_dict())))
    assert card.source == "supervised" and card.names == list(DSPRITES.factor_names)
    orientation = card["orientation"]
    assert orientation.kind == "circular" and orientation.dims == [2, 3]
    assert orientation.period == pytest.approx(2 * math.pi)
    assert np.allclose(orientation.latent_for(math.pi / 2), [0.0, 1.0], atol=1e-2)
    assert np.allclose(orientation.latent_for(2 * math.pi + 0.1), orientation.latent_for(0.1))  # wraps
    assert card["shape"].labels == ["square", "ellipse", "heart"]
    z = apply_edits(np.zeros((2, 10), np.float32),
                    [CheckedEdit("shape", None, "set_label", "heart"), CheckedEdit("orientation", None, "set_value", math.pi)],
                    card)
    assert z[0, 0] == pytest.approx(1.0) and np.allclose(z[0, 2:4], [-1.0, 0.0], atol=1e-2)
    assert (z[:, 4:] == 0).all()


def test_partial_labels_put_only_the_labelled_factors_in_the_card():
    card = _objective(factors=["orientation", "scale"]).factor_card()
    assert card.names == ["orientation", "scale"]
    assert card["orientation"].dims == [0, 1] and card["scale"].dims == [2]


# -- configs and a real run --------------------------------------------------------------
def test_config_lists_factors_and_rejects_a_factor_that_is_not_a_name():
    cfg = load_config(REPO / "configs" / "shipped" / "dsprites.toml")
    assert cfg.objective_name == "semi_supervised" and cfg.objective.factors == list(DSPRITES.factor_names)
    few = load_config(REPO / "configs" / "semi_supervised.toml", ["objective.num_labelled=100"])
    assert few.objective.num_labelled == 100
    with pytest.raises(ConfigError, match=r"factors\[1\]: expected str, got 3"):
        load_config(REPO / "configs" / "semi_supervised.toml", ["objective.factors=['shape', 3]"])


def test_a_short_real_run_on_100_labels_learns_them_and_writes_the_supervised_card(tmp_path):
    cfg = load_config(REPO / "configs" / "shipped" / "dsprites.toml", [
        "steps=200", "log_every=10", "checkpoint_every=200", "batch_size=16", "objective.num_labelled=100",
    ])
    trainer = Trainer(cfg, tmp_path / "run", dataset=DSPRITES)
    pool = torch.from_numpy(trainer.stream.pool)
    images = torch.from_numpy(DSPRITES.sample_observations_from_factors(trainer.stream.pool, None))

    def pool_loss() -> float:  # scale and position: the factors learnt first
        with torch.no_grad():
            _, logs = trainer.objective.supervised(trainer.objective.model.encoder(images)[0],
                                                   Inputs(images=images, labels=pool))
        return sum(float(logs[f"sup_{n}"]) for n in ("scale", "pos_x", "pos_y"))

    before = pool_loss()
    trainer.train(progress=False)
    assert pool_loss() < 0.6 * before
    out = finish_run(trainer, evaluate=False, progress=False)
    from latentdial.training.evaluate import evaluate_run

    _, card = evaluate_run(out, metrics=["mig"], num_train=200, num_test=100, progress=False)
    saved = FactorCard.load(out / "factor_card.json")
    assert saved.source == "supervised" and card.to_dict() == saved.to_dict()
    assert saved["orientation"].dims == [2, 3] and saved.latent_dim == 6
    assert "mig" in json.loads((out / "metrics.json").read_text())


def test_pseudo_turns_spread_a_squares_pseudo_label_over_its_four_equivalent_angles_and_keep_a_hearts():
    """A square reads the same at theta and theta + 90 degrees, and the encoder answers one of the
    four: turned, its pseudo-labels cover all four as labelled squares do; a heart has one angle."""
    objective = _objective(unlabelled_codes="pseudo", pseudo_turns=True)
    orientation = next(c for c in objective.codes if c.name == "orientation")
    n = 4000
    factors = torch.zeros(n, 5, dtype=torch.int64)
    factors[:, 2] = 3  # every image at grid angle 3 (about 28 degrees)
    factors[: n // 2, 0], factors[n // 2 :, 0] = SQUARE, HEART
    mean = _perfect_mean(objective, factors)
    decoded = objective.hook_latents(torch.randn(n, 10), mean, Inputs(images=torch.zeros(n, 1, 64, 64),
                                                                     labels=torch.full_like(factors, -1)))
    u = decoded[:, list(orientation.dims)]
    read = torch.atan2(u[:, 1], u[:, 0])
    asked = math.atan2(*orientation.table[3][::-1].tolist())
    quarter = torch.round(torch.remainder(read - asked, 2 * math.pi) / (math.pi / 2)).long() % 4
    assert torch.allclose(torch.remainder(read - asked + math.pi / 4, math.pi / 2), torch.tensor(math.pi / 4), atol=1e-5)
    counts = torch.bincount(quarter[: n // 2], minlength=4)
    assert counts.min() > 0.2 * (n // 2), counts  # about a quarter each
    assert torch.all(quarter[n // 2 :] == 0)  # hearts keep their one angle
    assert torch.allclose(u.norm(dim=1), torch.ones(n), atol=1e-5)


def test_pseudo_turns_asks_for_pseudo_labels_and_the_factor_the_symmetry_depends_on():
    with pytest.raises(ValueError, match="needs unlabelled_codes"):
        _objective(unlabelled_codes="mean", pseudo_turns=True)
    with pytest.raises(ValueError, match="pseudo_turns needs a labelled circular factor"):
        _objective(unlabelled_codes="pseudo", pseudo_turns=True, factors=["orientation", "scale"])
