"""The run-directory contract: what training writes is what export and evaluation read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentdial.training.model import ModelConfig, build_model
from latentdial.training.run_dir import CONFIG, WEIGHTS, load_run, representation_fn, save_weights


def _run_dir(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=4))
    save_weights(model, tmp_path / WEIGHTS, {"step": "3"})
    (tmp_path / CONFIG).write_text(json.dumps({"model": ModelConfig(latent_dim=4).to_dict()}))
    return model


def test_load_run_rebuilds_the_same_weights_in_eval_mode(tmp_path):
    model = _run_dir(tmp_path)
    run = load_run(tmp_path)
    assert not run.model.training
    assert run.weights_metadata == {"step": "3"}
    for (k, a), (_, b) in zip(model.state_dict().items(), run.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert run.factor_card is None and run.metrics == {}


def test_representation_fn_gives_posterior_means_as_numpy_in_batches(tmp_path):
    model = _run_dir(tmp_path)
    x = np.random.default_rng(0).random((5, 1, 64, 64), dtype=np.float32)
    z = representation_fn(load_run(tmp_path).model, batch_size=2)(x)
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(x))[0].numpy()
    assert z.shape == (5, 4) and z.dtype == np.float32
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)


def test_missing_weights_say_which_file_is_missing(tmp_path):
    (tmp_path / CONFIG).write_text("{}")
    with pytest.raises(FileNotFoundError, match=WEIGHTS):
        load_run(tmp_path)
