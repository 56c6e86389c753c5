"""Edit fidelity: does an attribute edit through the server draw what the ground truth says?

Protocol (``evaluate_edits``), for a model trained on a ground-truth dataset:

1. Draw N source factor vectors, render them, encode them (Encode RPC) -> z_src (N, D).
2. For every calibrated factor f of the factor card, draw a random target on f's grid
   for each source and send ``EditAttributes`` (``set_value``, or ``set_label`` for
   a labelled categorical factor) through the real server -> edited images.
3. Render the ground truth of each edit procedurally: the same factors as the source,
   with f at its target value.
4. Score edited image vs ground truth: IoU of binarised images (threshold 0.5) on
   1-channel binary datasets, PSNR on the others. Normalise by the same score of the
   model's plain reconstruction (Reconstruct RPC) of the ground-truth image:
   ``fidelity = mean(score(edit, truth)) / mean(score(recon(truth), truth))``, so 1.0
   means the edit is drawn as well as the model can draw that image at all.
5. Re-encode the edited images -> z_edit (N, D) and read back the edited factor with the
   card (``FactorEntry.value_from_latents``): accuracy against the target.
6. Disentanglement of the edit: how far the latent dims of the OTHER factors moved,
   |z_edit - z_src| in units of each dim's std over the N sources (mean, 95th
   percentile, max), next to the same drift of a plain round trip
   (encode(reconstruct(x)) vs encode(x)), which an edit cannot beat.

Tolerance for "the other factors' latents did not move": a dim moves less than
**half a calibration step** of the factor it carries, i.e. half the median distance
between neighbouring entries of that factor's calibration table on that dim. Below
that, the card's nearest-entry reading of the other factor cannot change by more than
one grid value, so the edit leaves the other factors where they were as far as the
card (and hence every later edit) can tell. It adapts to each factor's grid: 32
positions give a fine tolerance, 3 shapes a coarse one. ``other_within_tolerance``
is the fraction of (sample, dim) pairs under it; ``other_values_preserved`` checks
the readings themselves (same grid value before and after the edit).

Scores: IoU (Jaccard) as in segmentation; PSNR = 10 log10(1 / MSE) for images in
[0, 1]. PSNR of identical images is +inf; for averages it is capped at
``PSNR_CAP_DB`` = 60 dB, just above the quantisation noise floor of 8-bit images
(MSE = (1/255)^2 / 12 -> 58.9 dB), so one perfect image cannot dominate a mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdial.factor_card import FactorCard, FactorEntry

IOU_THRESHOLD = 0.5
PSNR_CAP_DB = 60.0


# ----------------------------------------------------------------- scores --
def iou(pred: np.ndarray, truth: np.ndarray, threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """Intersection over union of binarised images, per image.

    Args:
        pred, truth: (N, ...) images in [0, 1], any layout, same shape.
    Returns:
        (N,) float64 in [0, 1]; two empty images count as identical (1.0).
    """
    pred, truth = _pair(pred, truth)
    p, t = pred > threshold, truth > threshold
    inter = (p & t).sum(axis=1)
    union = (p | t).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio 10 log10(range^2 / MSE) per image, (N,) float64 in dB; +inf if identical."""
    pred, truth = _pair(pred, truth)
    mse = ((pred - truth) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10.0 * np.log10(data_range**2 / np.where(mse > 0, mse, 1.0)), np.inf)


def normalised_score(edit_scores: np.ndarray, recon_scores: np.ndarray, cap: float = PSNR_CAP_DB) -> float:
    """mean(edit) / mean(recon) with +inf (identical PSNR) capped at ``cap``; nan if recon's mean is 0."""
    e = np.minimum(np.asarray(edit_scores, np.float64), cap)
    r = np.minimum(np.asarray(recon_scores, np.float64), cap)
    r_mean = float(r.mean()) if r.size else 0.0
    return float(e.mean()) / r_mean if r_mean > 0 else float("nan")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images to compare have shapes {a.shape} and {b.shape}; they must match")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


def score_fn(metric: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """"iou" or "psnr" -> the per-image score function."""
    if metric not in ("iou", "psnr"):
        raise ValueError(f"metric must be 'iou' or 'psnr', got {metric!r}")
    return iou if metric == "iou" else psnr


def choose_metric(images: np.ndarray) -> str:
    """"iou" for 1-channel binary images (N, C, H, W) or (N, H, W, C), "psnr" for anything else."""
    channels = min(images.shape[1], images.shape[-1])
    binary = bool(np.isin(images, (0.0, 1.0)).all())
    return "iou" if channels == 1 and binary else "psnr"


# ------------------------------------------------------------ latent drift --
def calibration_step(entry: FactorEntry) -> np.ndarray:
    """(len(dims),) median |distance| between neighbouring calibration entries, per dim, in latent units."""
    table = np.asarray(entry.latent_table, np.float64)  # (K, d)
    order = np.argsort(np.asarray(entry.values, np.float64), kind="stable")
    diffs = np.abs(np.diff(table[order], axis=0))  # (K-1, d)
    return np.median(diffs, axis=0) if len(diffs) else np.zeros(table.shape[1])


def value_distance(entry: FactorEntry, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in factor units, around the circle for circular factors."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    if entry.kind == "circular":
        lo, hi = entry.value_range
        period = entry.period or (hi - lo)
        d = np.mod(d, period)
        d = np.minimum(d, period - d)
    return d


def grid_step(entry: FactorEntry) -> float:
    """Smallest gap between distinct grid values (1.0 for a single-value factor)."""
    gaps = np.diff(np.unique(np.asarray(entry.values, np.float64)))
    return float(gaps.min()) if len(gaps) else 1.0


@dataclass
class FactorArrays:
    """Everything measured for one edited factor, aligned on the N samples.

    Shapes: ``edit_scores``, ``recon_scores``, ``targets`` (N,); ``z_source``,
    ``z_edited``, ``z_round_trip`` (N, D); ``source_values`` (N,) the true source value.
    """

    edit_scores: np.ndarray
    recon_scores: np.ndarray
    targets: np.ndarray
    source_values: np.ndarray
    z_source: np.ndarray
    z_edited: np.ndarray
    z_round_trip: np.ndarray


def summarise_factor(entry: FactorEntry, card: FactorCard, arrays: FactorArrays, dim_std: np.ndarray,
                     metric: str) -> dict[str, Any]:
    """Flat dict of the scores of one factor's edits (see the module docstring for each field).

    Args:
        dim_std: (D,) std of each latent dim over the dataset (the N source encodings).
    """
    a = arrays
    read_edit = entry.value_from_latents(a.z_edited)  # (N,)
    read_src = entry.value_from_latents(a.z_source)
    half = 0.5 * grid_step(entry)
    err = value_distance(entry, read_edit, a.targets)
    others = [g for g in card.factors if g.name != entry.name]
    other_dims = sorted({d for g in others for d in g.dims} - set(entry.dims))
    std = np.maximum(np.asarray(dim_std, np.float64), 1e-8)
    out: dict[str, Any] = {
        "kind": entry.kind,
        "dims": list(entry.dims),
        "num": len(a.targets),
        "metric": metric,
        "edit_score": _finite_mean(a.edit_scores),
        "recon_score": _finite_mean(a.recon_scores),
        "fidelity": normalised_score(a.edit_scores, a.recon_scores),
        "accuracy": float((err < half).mean()),
        # categorical values have no order, so "one step away" means nothing there
        "within_one_step": None if entry.kind == "categorical" else float((err <= 1.0001 * grid_step(entry)).mean()),
        "mean_abs_error": float(err.mean()),
        "source_readback_accuracy": float((value_distance(entry, read_src, a.source_values) < half).mean()),
        "other_dims": other_dims,
    }
    if not other_dims:
        return out | {k: None for k in ("other_drift_mean_std", "other_drift_p95_std", "other_drift_max_std",
                                         "round_trip_drift_mean_std", "drift_tolerance_std",
                                         "other_within_tolerance", "other_values_preserved")}
    drift = np.abs(a.z_edited - a.z_source)[:, other_dims] / std[other_dims]  # (N, |other|)
    round_trip = np.abs(a.z_round_trip - a.z_source)[:, other_dims] / std[other_dims]
    tol = np.full(len(other_dims), np.nan)  # stays nan on dims of hand-named factors: no calibration step
    for g in others:
        if not g.calibrated:
            continue
        for d, step in zip(g.dims, calibration_step(g), strict=True):
            if d in other_dims:
                tol[other_dims.index(d)] = 0.5 * step / std[d]
    known = np.isfinite(tol)
    preserved = [
        float((value_distance(g, g.value_from_latents(a.z_edited), g.value_from_latents(a.z_source))
               < 0.5 * grid_step(g)).mean())
        for g in others if g.calibrated
    ]
    return out | {
        "other_drift_mean_std": float(drift.mean()),
        "other_drift_p95_std": float(np.percentile(drift, 95)),
        "other_drift_max_std": float(drift.max()),
        "round_trip_drift_mean_std": float(round_trip.mean()),
        "drift_tolerance_std": float(np.nanmean(tol)) if known.any() else None,
        "other_within_tolerance": float((drift[:, known] <= tol[None, known]).mean()) if known.any() else None,
        "other_values_preserved": float(np.mean(preserved)) if preserved else None,
    }


def _finite_mean(x: np.ndarray, cap: float = PSNR_CAP_DB) -> float:
    return float(np.minimum(np.asarray(x, np.float64), cap).mean())


# ------------------------------------------------------------- collection --
def _nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, C) float32, the layout the API takes and returns."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)


def _chunks(index: np.ndarray, size: int) -> list[np.ndarray]:
    return [index[i:i + size] for i in range(0, len(index), size)]


def evaluate_edits(client: Any, dataset: Any, card: FactorCard, *, model: str | None = None,
                   version: str | None = None, num: int = 2000, seed: int = 0, batch: int = 128,
                   progress: bool = True) -> dict[str, Any]:
    """Run the protocol of the module docstring against a server; returns the JSON-ready report.

    Args:
        client: a ``latentdial.client.Client`` connected to the server.
        dataset: the model's ``GroundTruthData``; card factors it does not have are skipped.
        card: the served model's factor card; uncalibrated (hand-named) factors are skipped.
        num: N source images; every factor is edited once per source.
        batch: images per RPC (edits are grouped by target value, one EditAttributes each).
    """
    from tqdm import tqdm

    from latentdial.client import Edit

    if num < 2:
        raise ValueError(f"num={num}: need at least 2 source images (the drift needs each dim's std)")
    if batch < 1:
        raise ValueError(f"batch={batch} must be >= 1")
    names = list(dataset.factor_names)
    if not names:
        raise ValueError("the dataset has no ground-truth factors; edit fidelity needs a labelled dataset")
    rng = np.random.default_rng(seed)
    factors = dataset.sample_factors(num, rng)  # (N, F) int
    sources = _nhwc(dataset.sample_observations_from_factors(factors, rng))  # (N, H, W, C)
    metric = choose_metric(sources)
    score = score_fn(metric)
    ref = {"model": model, "version": version}
    everything = np.arange(num)
    z_src = np.concatenate([client.encode(sources[c], **ref).mean for c in _chunks(everything, batch)])
    z_rt = np.concatenate([
        client.encode(client.reconstruct(sources[c], **ref).images, **ref).mean for c in _chunks(everything, batch)
    ])
    dim_std = z_src.std(axis=0)  # (D,)

    todo: list[tuple[int, FactorEntry]] = []
    skipped: dict[str, str] = {}
    for entry in card.factors:
        if entry.name not in names:
            skipped[entry.name] = f"the dataset has no factor {entry.name!r} (it has {names})"
        elif not entry.calibrated:
            skipped[entry.name] = "hand-named factor without a calibration table: no value to edit to"
        else:
            todo.append((names.index(entry.name), entry))
    results: dict[str, Any] = {}
    bar = tqdm(total=num * len(todo), desc="edits", unit="img", disable=not progress)
    for f, entry in todo:
        grid = np.asarray(dataset.factor_grid(f), np.float64)
        target_idx = rng.integers(0, len(grid), size=num)  # (N,)
        edited_factors = factors.copy()
        edited_factors[:, f] = target_idx
        edit_scores, recon_scores = np.zeros(num), np.zeros(num)
        z_edit = np.zeros_like(z_src)
        for k in np.unique(target_idx):
            value = float(grid[k])
            if entry.kind == "categorical" and entry.labels:
                op = Edit(factor=entry.name, set_label=entry.labels[int(np.argmin(np.abs(
                    np.asarray(entry.values) - value)))])
            else:
                op = Edit(factor=entry.name, set_value=value)
            for c in _chunks(np.flatnonzero(target_idx == k), batch):
                edited = client.edit(sources[c], [op], **ref).images  # (n, H, W, C) float32
                truth = _nhwc(dataset.sample_observations_from_factors(edited_factors[c], rng))
                recon = client.reconstruct(truth, **ref).images
                edit_scores[c] = score(edited, truth)
                recon_scores[c] = score(recon, truth)
                z_edit[c] = client.encode(edited, **ref).mean
                bar.update(len(c))
        arrays = FactorArrays(edit_scores, recon_scores, grid[target_idx], grid[factors[:, f]], z_src, z_edit, z_rt)
        results[entry.name] = summarise_factor(entry, card, arrays, dim_std, metric)
    bar.close()
    return {
        "num": num, "seed": seed, "metric": metric,
        "psnr_cap_db": PSNR_CAP_DB if metric == "psnr" else None,
        "iou_threshold": IOU_THRESHOLD if metric == "iou" else None,
        "tolerance": "a dim of another factor may move less than half the median step of that factor's "
                     "calibration table on that dim (drift_tolerance_std, in units of the dim's std)",
        "factors": results,
        "skipped": skipped,
    }
