"""The encoder's views ([augment]) and starting a run from trained weights (init_from).

A view redraws an image without changing any factor's label; the decoder still reconstructs
the clean image; a run can start from a finished run or from an exported model version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentdial.training.augment import AugmentConfig, EncoderView, build_encoder_view
from latentdial.training.config import ConfigError, load_config
from latentdial.training.data import get_dataset
from latentdial.training.trainer import Trainer, train

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.toml"
VIEWS = REPO / "configs" / "experiments" / "dsprites_views.toml"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _sprites(n: int, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """(factors (n, 5), images (n, 1, 64, 64)) of the training renderer."""
    data = get_dataset("dsprites")
    rng = np.random.default_rng(seed)
    factors = data.sample_factors(n, rng)
    return factors, torch.from_numpy(np.asarray(data.sample_observations_from_factors(factors, rng), np.float32))


def _centre_and_area(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, 1, H, W) -> (centres of mass (N, 2) in pixels (x, y), areas (N,) in pixels)."""
    h, w = images.shape[-2:]
    mass = images[:, 0]
    area = mass.sum(dim=(1, 2))
    xs = (mass * torch.arange(w).view(1, 1, w)).sum(dim=(1, 2)) / area
    ys = (mass * torch.arange(h).view(1, h, 1)).sum(dim=(1, 2)) / area
    return torch.stack([xs, ys], dim=1), area


# -- the views ---------------------------------------------------------------------------
def test_no_view_by_default_and_a_view_keeps_shape_and_range():
    assert build_encoder_view(AugmentConfig(), 64) is None
    _, images = _sprites(32)
    view = build_encoder_view(AugmentConfig(p=1.0), 64)
    assert isinstance(view, EncoderView)
    out = view(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert bool((out != images).flatten(1).any(dim=1).all()), "p = 1 redraws every image"


def test_p_is_the_share_of_images_redrawn():
    _, images = _sprites(400)
    out = EncoderView(AugmentConfig(p=0.25), 64)(images)
    redrawn = (out != images).flatten(1).any(dim=1).float().mean().item()
    assert 0.17 < redrawn < 0.33


def test_a_view_moves_a_sprite_less_than_half_a_position_step_and_keeps_its_size_within_a_scale_step():
    _, images = _sprites(256, seed=3)
    out = EncoderView(AugmentConfig(p=1.0), 64)(images)
    (c0, a0), (c1, a1) = _centre_and_area(images), _centre_and_area(out)
    shift = (c1 - c0).abs()  # a position step of dSprites is about 1 pixel (32 values over 32 px)
    assert float(shift.mean()) < 0.5 and float(torch.quantile(shift, 0.99)) < 1.0
    # area ~ scale^2: a scale step is 0.1 of 0.5-1, so at least (0.9)^2 = 0.81 of the area at scale 1
    ratio = a1 / a0
    assert 0.85 < float(ratio.min()) and float(ratio.max()) < 1.18


def test_the_outline_warp_displaces_pixels_by_the_configured_mean():
    ramp = torch.arange(64, dtype=torch.float32).view(1, 1, 1, 64).expand(64, 1, 64, 64).contiguous()
    cfg = AugmentConfig(p=1.0, degrees=0.0, translate_px=0.0, scale=0.0, elastic_px=1.0, blur_sigma=0.0)
    moved = EncoderView(cfg, 64)(ramp / 63.0) * 63.0  # x coordinate in pixels, displaced
    displacement = (moved - ramp)[:, :, 12:-12, 12:-12].abs().mean().item()
    assert 0.8 < displacement < 1.2


@pytest.mark.parametrize("bad", ["augment.p=1.5", "augment.scale=1.0", "augment.blur_sigma=-1"])
def test_bad_augment_values_are_config_errors(bad):
    with pytest.raises(ConfigError, match="augment"):
        load_config(SMOKE, [bad])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(SMOKE, ["augment.rotation=3"])


class _Blank(torch.nn.Module):
    """A view that blanks every image."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros_like(x)


def test_the_encoder_sees_the_view_and_the_decoder_reconstructs_the_clean_image(tmp_path):
    trainer = Trainer(load_config(SMOKE, ["augment.p=1.0"]), tmp_path / "run")
    objective = trainer.objective
    seen: list[torch.Tensor] = []
    objective.model.encoder.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    _, images = _sprites(8)
    objective.encoder_view = _Blank()
    _, terms = objective.loss_terms(images, 0)
    assert float(seen[-1].abs().max()) == 0.0
    # the reconstruction term is against the clean images: a blank target would cost far less
    blank = torch.zeros_like(images)
    _, blank_terms = objective.loss_terms(blank, 0)
    assert float(terms["recon"]) > float(blank_terms["recon"]) + 10.0


def test_a_run_with_views_records_them_and_resume_refuses_other_views(tmp_path):
    out = tmp_path / "run"
    train(load_config(SMOKE, ["steps=2", "checkpoint_every=1", "augment.p=0.5"]), out, progress=False)
    import json

    assert json.loads((out / "config.json").read_text())["augment"]["p"] == 0.5
    with pytest.raises(ConfigError, match="augment"):
        train(load_config(SMOKE, ["steps=3", "checkpoint_every=1", "augment.p=0.9"]), out, resume=True,
              progress=False)


# -- init_from ---------------------------------------------------------------------------
def test_a_run_starts_from_a_finished_run(tmp_path):
    first = train(load_config(SMOKE, ["steps=2"]), tmp_path / "first", progress=False)
    trainer = Trainer(load_config(SMOKE, [f"init_from={first}", "seed=5"]), tmp_path / "second")
    from safetensors.torch import load_file

    saved = load_file(str(first / "model.safetensors"))
    for name, value in trainer.objective.model.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_a_run_starts_from_an_exported_model_version(tmp_path):
    cfg = load_config(VIEWS, ["steps=1"])
    trainer = Trainer(cfg, tmp_path / "run")
    encoder = torch.export.load(str(REPO / cfg.init_from / "encoder.pt2")).state_dict
    mine = trainer.objective.model.state_dict()
    assert encoder and all(torch.equal(mine[k], v) for k, v in encoder.items())


def test_init_from_says_what_does_not_fit(tmp_path):
    with pytest.raises(ConfigError, match="init_from.*latent_dim 10"):
        Trainer(load_config(SMOKE, [f"init_from={REPO / 'models/dsprites/5'}", "model.latent_dim=10"]), tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="neither a finished run"):
        Trainer(load_config(SMOKE, [f"init_from={tmp_path}"]), tmp_path / "b")


HEADS = '["encoder.mean", "encoder.log_var", "decoder.fc.0"]'


def test_init_skip_starts_a_model_of_another_latent_size_from_the_layers_that_fit(tmp_path):
    source = REPO / "models/dsprites_tcvae/2"  # latent_dim 10; this run has 6
    cfg = load_config(SMOKE, [f"init_from={source}", f"init_skip={HEADS}", "model.latent_dim=6"])
    mine = Trainer(cfg, tmp_path / "run").objective.model.state_dict()
    fresh = Trainer(load_config(SMOKE, ["model.latent_dim=6"]), tmp_path / "fresh").objective.model.state_dict()
    theirs = {}
    for graph in ("encoder", "decoder"):
        theirs.update(torch.export.load(str(source / f"{graph}.pt2")).state_dict)
    for name, value in mine.items():
        if name.startswith(("encoder.mean.", "encoder.log_var.", "decoder.fc.0.")):
            assert torch.equal(value, fresh[name]), f"{name} should keep its fresh initialisation"
        else:
            assert torch.equal(value, theirs[name]), f"{name} should come from {source}"


def test_init_skip_names_what_it_cannot_find_and_needs_init_from(tmp_path):
    source = REPO / "models/dsprites_tcvae/2"
    with pytest.raises(ConfigError, match=r"init_skip: \['encoder.nope'\] name no weight"):
        Trainer(load_config(SMOKE, [f"init_from={source}", 'init_skip=["encoder.nope"]']), tmp_path / "a")
    with pytest.raises(ConfigError, match="init_skip.*init_from is not set"):
        load_config(SMOKE, [f"init_skip={HEADS}"])
    with pytest.raises(ConfigError, match="(?s)do not fit.*init_skip can leave"):
        Trainer(load_config(SMOKE, [f"init_from={source}", "model.latent_dim=6"]), tmp_path / "b")
