"""``report.md`` of a run directory: config summary, metrics table and the figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from latentdial.training.config import OptimizerConfig

FIGURES = (
    ("loss.png", "Loss terms"),
    ("reconstructions.png", "Inputs (top) and reconstructions (bottom)"),
    ("traversal.png", "Latent traversals (one row per dimension, -2 to +2 around an encoded image)"),
)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _last_losses(run_dir: Path) -> dict[str, str]:
    path = run_dir / "loss_log.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[-1] if rows else {}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_report(run_dir: Path) -> str:
    """The markdown text of ``run_dir``'s report (reads config.json, metrics.json, loss_log.csv)."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    objective = dict(config.get("objective", {}))
    name = objective.pop("name", "?")
    dataset = config.get("dataset", {})
    lines = [
        f"# Training run `{run_dir.name}`",
        "",
        f"- objective: **{name}** ({', '.join(f'{k}={_fmt(v)}' for k, v in objective.items()) or 'defaults'})",
        f"- dataset: **{dataset.get('name', '?')}** "
        + (f"({', '.join(f'{k}={v}' for k, v in dataset.items() if k != 'name')})" if len(dataset) > 1 else ""),
        f"- model: {', '.join(f'{k}={v}' for k, v in config.get('model', {}).items())}",
        (
            f"- steps: {config.get('steps')} at batch {config.get('batch_size')} "
            f"(world size {config.get('world_size', 1)}), seed {config.get('seed')}, "
            f"{OptimizerConfig(**config.get('optimizer', {})).describe()}"
        ),
        f"- device: {config.get('device')}; code version: `{config.get('code_version', 'unknown')}`",
        "",
    ]
    last = _last_losses(run_dir)
    if last:
        lines += ["## Final loss terms", "", "| term | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(float(v))} |" for k, v in last.items() if k != "step" and v != ""]
        lines.append("")
    metrics_path = run_dir / "metrics.json"
    lines += ["## Metrics", ""]
    if metrics_path.is_file():
        metrics = _flatten(json.loads(metrics_path.read_text()))
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(metrics.items())]
    else:
        lines.append("Not evaluated (unlabelled data, `evaluate = false`, or evaluation unavailable).")
    lines.append("")
    if (run_dir / "factor_card.json").is_file():
        card = json.loads((run_dir / "factor_card.json").read_text())
        lines += ["## Factor card", "", "| factor | latent dims |", "|---|---|"]
        lines += [f"| {f['name']} | {', '.join(map(str, f['dims']))} |" for f in card.get("factors", [])]
        lines.append("")
    lines += ["## Figures", ""]
    for fname, caption in FIGURES:
        if (run_dir / fname).is_file():
            lines += [f"**{caption}**", "", f"![{caption}]({fname})", ""]
    return "\n".join(lines)


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.md`` and return its path."""
    path = Path(run_dir) / "report.md"
    path.write_text(render_report(Path(run_dir)))
    return path
