"""Evaluation as a library: datasets by name, metrics and the factor card of a representation.

``evaluate_representation`` scores any ``representation_fn`` (observations ``(N, C, H, W)``
float32 -> mean codes ``(N, D)``); ``evaluate_run`` rebuilds a training run's torch encoder,
``evaluate_model_dir`` runs an exported model's encoder on ONNX Runtime
(``onnx_representation_fn``). ``resolve_dataset`` is the one way a dataset spec (a name, a
JSON string, a ``{"name": ..., **options}`` dict) becomes a
:class:`~latentdial.training.data.base.GroundTruthData`: the trainer, the CLI and the
scripts all use it. ``latentdial evaluate`` (training/cli_evaluate.py) is a thin wrapper.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from latentdial.factor_card import FactorCard
    from latentdial.training.data.base import GroundTruthData

#: Metrics that need no ground-truth factors (unlabelled datasets get only these).
UNSUPERVISED = ("unsupervised",)


def resolve_dataset(spec: Any) -> GroundTruthData:
    """A dataset from a GroundTruthData, a registry name, a JSON string or a {"name": ...} dict."""
    from latentdial.training.data import get_dataset
    from latentdial.training.data.base import GroundTruthData

    if isinstance(spec, GroundTruthData):
        return spec
    if isinstance(spec, str):
        spec = json.loads(spec) if spec.lstrip().startswith("{") else {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(
            f"dataset {spec!r} is not a name or a {{'name': ..., options}} dict; pass --dataset NAME"
        )
    options = {k: v for k, v in spec.items() if k != "name"}
    return get_dataset(spec["name"], **options)


def _metric_names(dataset: GroundTruthData, metrics: str | list[str] | None) -> list[str]:
    from latentdial.training.metrics import parse_names

    names = parse_names(metrics)
    if dataset.num_factors > 0 and not getattr(dataset, "renders_from_factors", True):
        from latentdial.training.metrics import METRICS

        # a dataset of fixed images cannot render interventions: metrics on i.i.d. labelled points only
        intervening = [n for n in names if not METRICS[n].on_points and n not in UNSUPERVISED]
        if metrics is not None and intervening:
            raise ValueError(
                f"metrics {intervening} draw images for chosen factors, which a dataset of fixed images "
                "cannot do; metrics on labelled points work: mig, sap, dci, modularity"
            )
        names = [n for n in names if n not in intervening]
    if dataset.num_factors == 0:
        supervised = [n for n in names if n not in UNSUPERVISED]
        if metrics is not None and supervised:
            raise ValueError(
                f"metrics {supervised} need ground-truth factors, which this dataset does not have; "
                f"use --metrics {','.join(UNSUPERVISED)}"
            )
        names = [n for n in names if n in UNSUPERVISED]
    return names


def _overrides(num_train: int | None, num_test: int | None) -> dict[str, int]:
    out = {}
    if num_train is not None:
        out["num_train"] = num_train
    if num_test is not None:
        out["num_test"] = num_test
    return out


def evaluate_representation(
    dataset: GroundTruthData,
    representation_fn: Any,
    *,
    metrics: str | list[str] | None = None,
    seed: int = 0,
    num_train: int | None = None,
    num_test: int | None = None,
    preset: str = "fast",
    card: bool = True,
    card_points_per_value: int = 64,
    progress: bool = True,
) -> tuple[dict[str, float], FactorCard | None]:
    """Metrics (flat dict) and, for labelled data with ``card``, the factor card of a representation.

    The card measures mutual information on ``num_train`` points (10,000 by default) and
    averages ``card_points_per_value`` points per grid value in its calibration tables.
    """
    import numpy as np

    from latentdial.training.factor_card_fit import compute_factor_card
    from latentdial.training.metrics import compute_all

    names = _metric_names(dataset, metrics)
    artifacts: dict[str, np.ndarray] = {}
    scores = compute_all(dataset, representation_fn, np.random.default_rng(seed), names, preset=preset,
                         progress=progress, artifacts=artifacts, **_overrides(num_train, num_test))
    factor_card = None
    if card and dataset.num_factors > 0 and getattr(dataset, "renders_from_factors", True):
        factor_card = compute_factor_card(
            dataset, representation_fn, np.random.default_rng([seed, 1]),
            importance=artifacts.get("dci.importance"), num_points=num_train or 10_000,
            points_per_value=card_points_per_value, points=artifacts.get("points.train"),
        )
    return scores, factor_card


def evaluate_run(
    run_dir: Path,
    *,
    dataset: Any = None,
    metrics: str | list[str] | None = None,
    seed: int = 0,
    num_train: int | None = None,
    num_test: int | None = None,
    preset: str = "fast",
    out: Path | None = None,
    card: bool = True,
    card_points_per_value: int = 64,
    write: bool = True,
    progress: bool = True,
) -> tuple[dict[str, float], FactorCard | None]:
    """Evaluate a training run directory; write metrics.json (or ``out``) and factor_card.json.

    Args:
        dataset: a GroundTruthData, a name or a {"name": ...} dict; default ``config["dataset"]``.
    Returns:
        (flat metrics dict, factor card or None for unlabelled data / ``card=False``).
    """
    from latentdial.training.run_dir import FACTOR_CARD, METRICS, load_run, representation_fn

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    ds = _dataset_or_recorded(dataset, run.config.get("dataset"), f"{run_dir}/config.json records no dataset")
    from latentdial.training.objectives.semi_supervised import supervised_factor_card

    supervised = supervised_factor_card(run.config, ds) if card else None  # the labels name the dims
    scores, factor_card = evaluate_representation(
        ds, no_grad(representation_fn(run.model)), metrics=metrics, seed=seed, num_train=num_train,
        num_test=num_test, preset=preset, card=card and supervised is None,
        card_points_per_value=card_points_per_value, progress=progress,
    )
    factor_card = supervised or factor_card
    if write:
        _write_json(out or run_dir / METRICS, scores)
        if factor_card is not None:
            factor_card.save(run_dir / FACTOR_CARD)
    return scores, factor_card


def _dataset_or_recorded(dataset: Any, recorded: Any, missing: str) -> GroundTruthData:
    """The dataset asked for, else the one a run or model directory records; ``missing`` says where it was not."""
    spec = dataset if dataset is not None else recorded
    if spec is None:
        raise ValueError(f"{missing}; pass --dataset NAME")
    return resolve_dataset(spec)


def no_grad(fn: Any) -> Any:
    """Run a torch representation function without autograd (encoding only)."""
    import torch

    def wrapped(x: Any) -> Any:
        with torch.no_grad():
            return fn(x)

    return wrapped


def onnx_graph_fn(model_dir: Path, manifest: Any, graph: str, output: str) -> Any:
    """A numpy function running the exported ``graph``'s ``output`` over any number of rows,
    in batches of the runtime's ``max_batch_size``; no torch. (N, ...) -> (N, ...)."""
    import numpy as np

    from latentdial.serving.runtimes import load_runtime

    runtime = load_runtime(model_dir, manifest, graph)
    input_name = manifest.io[graph]["inputs"][0]
    step = runtime.max_batch_size

    def fn(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return np.concatenate([runtime.run({input_name: x[i : i + step]})[output]
                               for i in range(0, len(x), step)])

    return fn


def onnx_representation_fn(model_dir: Path) -> tuple[Any, Any]:
    """(representation_fn over the exported encoder's ``mean`` output, manifest); no torch."""
    from latentdial.manifest import Manifest

    manifest = Manifest.load(model_dir)
    return onnx_graph_fn(model_dir, manifest, "encoder", "mean"), manifest


def evaluate_model_dir(
    model_dir: Path,
    *,
    dataset: Any = None,
    metrics: str | list[str] | None = None,
    seed: int = 0,
    num_train: int | None = None,
    num_test: int | None = None,
    preset: str = "fast",
    out: Path | None = None,
    write: bool = True,
    progress: bool = True,
) -> dict[str, float]:
    """Evaluate an exported model directory's encoder on ONNX Runtime; write metrics.json (or ``out``)."""
    model_dir = Path(model_dir)
    fn, manifest = onnx_representation_fn(model_dir)
    ds = _dataset_or_recorded(dataset, manifest.provenance.get("dataset"),
                              f"{model_dir}/manifest.json records no dataset in provenance")
    scores, _ = evaluate_representation(
        ds, fn, metrics=metrics, seed=seed, num_train=num_train, num_test=num_test,
        preset=preset, card=False, progress=progress,
    )
    if write:
        _write_json(out or model_dir / "metrics.json", scores)
    return scores


def _write_json(path: Path, scores: dict[str, float]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(scores, indent=2, sort_keys=True) + "\n")
