"""`make ship-gpu` (scripts/ship_gpu.py): the command path, run on CPU with a tiny step count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ship_gpu.py"


def test_ship_gpu_trains_evaluates_and_exports_each_named_shipped_model(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--steps", "2", "--threads", "1", "--only", "dsprites",
         "--out", str(tmp_path), "--budget-s", "900", "--reserve-s", "600", "--cooldown-steps", "1",
         "--choice-rounds", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "training 1 models at once on cpu: 2 steps or 300 s each" in done.stdout
    manifest = json.loads((tmp_path / "models" / "dsprites" / "1" / "manifest.json").read_text())
    assert manifest["factor_card"]["source"] == "supervised"
    assert "orientation" in [f["name"] for f in manifest["factor_card"]["factors"]]
    assert "graph_choice" not in manifest  # --choice-rounds 0 reached the export
    config = json.loads((tmp_path / "runs" / "dsprites" / "config.json").read_text())
    assert config["steps"] == 2 and config["device"] == "cpu" and config["time_limit_s"] == 300.0
    assert config["optimizer"]["cooldown_steps"] == 1  # the last step runs at lr 0


def test_ship_gpu_names_the_valid_configs_for_an_unknown_one(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--only", "mnist", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2 and "dsprites_tcvae" in done.stderr
