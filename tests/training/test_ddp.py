"""Data-parallel training: `torchrun -m latentdial.cli train` with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from latentdial.training.config import load_config
from latentdial.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.toml"
ARGS = ["--set", "steps=4", "--set", "evaluate=false"]


def test_two_ranks_end_with_identical_parameters_trained_on_different_data(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "latentdial.cli", "train", "--config", str(SMOKE), "--out", str(out), "--no-progress", *ARGS]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    sums = config["rank_param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    # only rank 0 wrote: one run directory, one set of checkpoints
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000003.pt", "step_00000004.pt"]

    # each rank drew its own batches: the averaged update differs from one process on rank 0's data
    single = train(load_config(SMOKE, ["steps=4", "evaluate=false"]), tmp_path / "single", progress=False)
    a, b = load_file(str(out / "model.safetensors")), load_file(str(single / "model.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
