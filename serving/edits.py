"""Latent arithmetic behind Traverse, EditAttributes and Generate. Pure numpy, no protobuf.

Shapes: latents (N, D) float32; a traversal grid (N, T, S, D) flattened to
(N*T*S, D) with index = (n*T + t)*S + s. Factor names go through the factor card
(:mod:`latentdial.factor_card`); dimensions are used directly in latent units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentdial.factor_card import DEFAULT_LATENT_RANGE, FactorCard, FactorCardError, FactorEntry
from latentdial.serving.errors import FailedPrecondition, InvalidArgument
from latentdial.v1 import MAX_EDITS, MAX_TRAVERSE_STEPS, MAX_TRAVERSE_TARGETS, MIN_TRAVERSE_STEPS

__all__ = ["MAX_EDITS", "MAX_TRAVERSE_STEPS", "MAX_TRAVERSE_TARGETS", "Edit", "TraversalPlan", "apply_edits",
           "check_edit_count", "check_traversal", "generate_latents", "sample_posterior", "traverse"]


@dataclass(frozen=True)
class Edit:
    """One change: target (factor name or dimension) and operation.

    op: "set_value" | "shift" | "set_latent" | "set_label"; value is a float, or a str for set_label.
    """

    factor: str | None
    dimension: int | None
    op: str
    value: float | str


def _entry(card: FactorCard | None, name: str, what: str) -> FactorEntry:
    if card is None:
        raise FailedPrecondition(
            f"{what}: factor {name!r} given by name, but this model has no factor card; "
            "address latent dimensions instead or serve a model exported with a card"
        )
    try:
        return card[name]
    except FactorCardError as e:
        raise InvalidArgument(f"{what}: {e}") from e


def _check_dim(d: int, latent_dim: int, what: str) -> int:
    if not 0 <= d < latent_dim:
        raise InvalidArgument(f"{what}: dimension {d} is outside 0..{latent_dim - 1}")
    return int(d)


def _label_value(entry: FactorEntry, label: str, what: str) -> float:
    try:
        return entry.value_of_label(label)
    except FactorCardError as e:
        raise InvalidArgument(f"{what}: {e}") from e


def _set_factor(z: np.ndarray, entry: FactorEntry, value: float, what: str) -> None:
    try:
        z[:, entry.dims] = entry.latent_for(value)[None, :]
    except FactorCardError as e:
        raise InvalidArgument(f"{what}: {e}") from e


def check_edit_count(n: int, what: str = "edits") -> None:
    """Refuse more than :data:`MAX_EDITS` edits (or pins) in one request."""
    if n > MAX_EDITS:
        raise InvalidArgument(
            f"{what}: {n} given, more than the limit of {MAX_EDITS} per request; "
            f"combine edits of the same target or send several requests"
        )


def check_traversal(num_dims: int, num_factors: int, steps: int) -> None:
    """Refuse a traversal's steps and target lists by their sizes alone, before anything is built.

    Called with the lengths of the request's lists, before they are copied or converted.
    """
    if not MIN_TRAVERSE_STEPS <= steps <= MAX_TRAVERSE_STEPS:
        raise InvalidArgument(f"steps={steps} is outside {MIN_TRAVERSE_STEPS}..{MAX_TRAVERSE_STEPS}")
    if num_dims and num_factors:
        raise InvalidArgument("give dimensions or factors, not both")
    if num_dims + num_factors > MAX_TRAVERSE_TARGETS:
        raise InvalidArgument(
            f"{'dimensions' if num_dims else 'factors'}: {num_dims + num_factors} targets given, more than the "
            f"limit of {MAX_TRAVERSE_TARGETS} per request; sweep fewer"
        )


def apply_edits(
    latents: np.ndarray, edits: list[Edit], card: FactorCard | None, what: str = "edits"
) -> np.ndarray:
    """Apply ``edits`` in order to every row of ``latents`` (N, D); returns a new (N, D) array.

    ``what`` names the list in error messages ("edits", or "pins" for Generate).
    """
    check_edit_count(len(edits), what)
    z = np.array(latents, dtype=np.float32, copy=True)
    d_total = z.shape[1]
    items = what
    for i, e in enumerate(edits):
        what = f"{items}[{i}]"
        if e.factor is None:
            d = _check_dim(int(e.dimension if e.dimension is not None else -1), d_total, what)
            if e.op in ("set_value", "set_latent"):
                z[:, d] = float(e.value)
            elif e.op == "shift":
                z[:, d] += float(e.value)
            else:
                raise InvalidArgument(f"{what}: {e.op} needs a factor target; a dimension takes set_value/shift")
            continue
        entry = _entry(card, e.factor, what)
        if e.op == "set_latent":
            z[:, entry.dims[0]] = float(e.value)
            continue
        if not entry.calibrated:
            if e.op == "shift":
                z[:, entry.dims[0]] += float(e.value)
            elif e.op == "set_value":
                z[:, entry.dims[0]] = float(e.value)
            else:
                raise InvalidArgument(f"{what}: factor {e.factor!r} is hand-named and has no labels")
            continue
        if e.op == "set_value":
            _set_factor(z, entry, float(e.value), what)
        elif e.op == "set_label":
            _set_factor(z, entry, _label_value(entry, str(e.value), what), what)
        elif e.op == "shift":
            # move along the calibration curve from the value read back to the shifted one; whatever
            # the table does not explain stays, so a shift of 0 leaves the latents as they are
            current = entry.value_from_latents(z)  # (N,)
            new = entry.shift_value(current, float(e.value))
            z[:, entry.dims] += entry.latents_along(new) - entry.latents_along(current)
        else:
            raise InvalidArgument(f"{what}: no operation; set one of set_value, shift, set_latent, set_label")
    if not np.isfinite(z).all():
        raise InvalidArgument("the edits produce latents outside float32's range; use smaller values")
    return z


@dataclass
class TraversalPlan:
    """What was swept: target names (T,) and values (T, S) in each target's units."""

    targets: list[str]
    values: np.ndarray  # (T, S) float32


def traverse(
    base: np.ndarray,
    *,
    dims: list[int],
    factors: list[str],
    start: float | None,
    stop: float | None,
    steps: int,
    card: FactorCard | None,
) -> tuple[np.ndarray, TraversalPlan]:
    """Sweep grid from base latents (N, D): ((N*T*S, D) latents, index (n*T + t)*S + s; the plan).

    A dimension, or a factor without calibration, sweeps its latent from ``start`` to ``stop``
    (default ``DEFAULT_LATENT_RANGE``); a calibrated factor sweeps its values (default: its range,
    the full circle for a circular one) through the card.
    """
    n, d_total = base.shape
    check_traversal(len(dims), len(factors), steps)
    if not dims and not factors:
        dims = list(range(d_total))
    setters = []  # per target: (name, values (S,), dims, latents (S, len(dims)))
    latent_sweep = np.linspace(DEFAULT_LATENT_RANGE[0] if start is None else start,
                               DEFAULT_LATENT_RANGE[1] if stop is None else stop, steps)  # (S,)
    for d in dims:
        d = _check_dim(d, d_total, "dimensions")
        setters.append((f"dim_{d}", latent_sweep, [d], latent_sweep[:, None]))
    for name in factors:
        entry = _entry(card, name, "factors")
        if not entry.calibrated:
            setters.append((name, latent_sweep, [entry.dims[0]], latent_sweep[:, None]))
            continue
        flo, fhi = entry.value_range
        lo = flo if start is None else start
        hi = fhi if stop is None else stop
        if entry.kind == "circular" and start is None and stop is None:
            period = entry.period or (fhi - flo)
            hi = flo + period * (steps - 1) / steps  # the full circle without repeating the start
        vals = np.linspace(lo, hi, steps)
        if entry.kind == "categorical":
            grid = np.asarray(entry.values, np.float64)
            vals = grid[np.argmin(np.abs(vals[:, None] - grid[None, :]), axis=1)]
        try:
            lat = np.stack([entry.latent_for(float(v)) for v in vals])  # (S, len(dims))
        except FactorCardError as e:
            raise InvalidArgument(f"factors: {e}") from e
        setters.append((name, vals, list(entry.dims), lat))
    t = len(setters)
    grid = np.broadcast_to(base[:, None, None, :], (n, t, steps, d_total)).copy()  # (N, T, S, D)
    for ti, (_, _, dlist, lat) in enumerate(setters):
        view = grid[:, ti]  # (N, S, D)
        for j, d in enumerate(dlist):
            view[:, :, d] = lat[None, :, j]
    plan = TraversalPlan([s[0] for s in setters], np.stack([s[1] for s in setters]).astype(np.float32))
    return grid.reshape(n * t * steps, d_total).astype(np.float32), plan


def generate_latents(
    count: int,
    latent_dim: int,
    *,
    seed: int,
    temperature: float,
    pins: list[Edit],
    card: FactorCard | None,
) -> np.ndarray:
    """Prior sample z ~ N(0, temperature^2 I) of shape (count, D) with pins applied as set_* edits."""
    if not np.isfinite(temperature) or temperature < 0:
        raise InvalidArgument(f"temperature={temperature} must be finite and >= 0")
    if temperature > 1e6:
        raise InvalidArgument(f"temperature={temperature:g} is absurdly large; the prior's scale is 1.0")
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((count, latent_dim)) * temperature).astype(np.float32)
    return apply_edits(z, pins, card, "pins")


def sample_posterior(mean: np.ndarray, log_var: np.ndarray, seed: int) -> np.ndarray:
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I) from ``seed`` (Kingma & Welling, 2014)."""
    eps = np.random.default_rng(seed).standard_normal(mean.shape).astype(np.float32)
    return (mean + np.exp(0.5 * log_var) * eps).astype(np.float32)
