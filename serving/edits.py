"""Latent arithmetic behind Traverse, EditAttributes and Generate. Pure numpy, no protobuf.

An edit list is compiled once against the model (:func:`compile_edits`: every check, before any
compute) and applied once to the real latents (:meth:`CompiledEdits.apply`).

Shapes: latents (N, D) float32; a traversal grid (N, T, S, D) flattened to
(N*T*S, D) with index = (n*T + t)*S + s. Factor names go through the factor card
(:mod:`latentdial.factor_card`); dimensions are used directly in latent units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latentdial.edit import EDIT_OPS, PIN_OPS
from latentdial.factor_card import DEFAULT_LATENT_RANGE, FactorCard, FactorCardError, FactorEntry
from latentdial.serving.errors import FailedPrecondition, InvalidArgument
from latentdial.v1 import MAX_EDITS, MAX_TRAVERSE_STEPS, MAX_TRAVERSE_TARGETS, MIN_TRAVERSE_STEPS

__all__ = ["EDIT_OPS", "MAX_EDITS", "MAX_TRAVERSE_STEPS", "MAX_TRAVERSE_TARGETS", "PIN_OPS", "CheckedEdit", "CompiledEdits",
           "TraversalPlan", "apply_edits", "check_edit_count", "check_traversal", "compile_edits", "generate_latents", "plan_traversal",
           "sample_posterior", "traverse"]


_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class CheckedEdit:
    """One checked change as the core compiles it: target (factor name or dimension), operation, value.

    Not a type callers use: theirs is :class:`latentdial.edit.Edit`, the one public edit. What a caller writes (:class:`latentdial.edit.Edit`, the proto's ``FactorEdit``, JSON, a query) becomes
    this in :mod:`latentdial.serving.requests`. op: one of :data:`EDIT_OPS`; value is a float, or a str
    for set_label.
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


def _latent_for(entry: FactorEntry, value: float, what: str) -> np.ndarray:
    try:
        return entry.latent_for(value)
    except FactorCardError as e:
        raise InvalidArgument(f"{what}: {e}") from e


def _number(value: float | str, what: str) -> float:
    v = float(value)
    if not abs(v) <= _FLOAT32_MAX:  # also NaN
        raise InvalidArgument(f"{what}: value {v:g} is outside float32's range; use smaller values")
    return v


@dataclass(frozen=True)
class _Assign:
    """Set latent dimensions ``dims`` to ``values`` (len(dims),)."""

    dims: tuple[int, ...]
    values: np.ndarray

    def __call__(self, z: np.ndarray) -> None:
        z[:, list(self.dims)] = self.values[None, :]


@dataclass(frozen=True)
class _Add:
    """Shift one latent dimension by ``delta`` latent units."""

    dim: int
    delta: float

    def __call__(self, z: np.ndarray) -> None:
        z[:, self.dim] += self.delta


@dataclass(frozen=True)
class _CurveShift:
    """Move a calibrated factor by ``delta`` factor units along its calibration curve, from the value read
    back to the shifted one; whatever the table does not explain stays, so a shift of 0 changes nothing."""

    entry: FactorEntry
    delta: float

    def __call__(self, z: np.ndarray) -> None:
        current = self.entry.value_from_latents(z)  # (N,)
        new = self.entry.shift_value(current, self.delta)
        z[:, self.entry.dims] += self.entry.latents_along(new) - self.entry.latents_along(current)


_Step = _Assign | _Add | _CurveShift


@dataclass(frozen=True)
class CompiledEdits:
    """Edits checked against one model (its factor card and latent size) and ready to apply to any latents.

    Built by :func:`compile_edits` before any compute is spent on the request; :meth:`apply` runs
    the steps once, on the real latents.
    """

    steps: tuple[_Step, ...]
    latent_dim: int

    def apply(self, latents: np.ndarray) -> np.ndarray:
        """The edits applied in order to every row of ``latents`` (N, D); returns a new (N, D) array."""
        z = np.array(latents, dtype=np.float32, copy=True)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InvalidArgument(f"latents: shape {list(z.shape)}, the edits were compiled for (N, {self.latent_dim})")
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
            for step in self.steps:
                step(z)
        if not np.isfinite(z).all():
            raise InvalidArgument("the edits produce latents outside float32's range; use smaller values")
        return z


def _compile_one(e: CheckedEdit, card: FactorCard | None, latent_dim: int, what: str) -> _Step:
    """One edit as the step that applies it; every error it can have is raised here."""
    if e.op not in EDIT_OPS:
        raise InvalidArgument(f"{what}: no operation; set one of {', '.join(EDIT_OPS)}")
    if e.factor is None:
        d = _check_dim(int(e.dimension if e.dimension is not None else -1), latent_dim, what)
        if e.op == "set_label":
            raise InvalidArgument(f"{what}: {e.op} needs a factor target; a dimension takes set_value/shift")
        v = _number(e.value, what)
        return _Add(d, v) if e.op == "shift" else _Assign((d,), np.float32([v]))
    entry = _entry(card, e.factor, what)
    if e.op == "set_label" and not entry.calibrated:
        raise InvalidArgument(f"{what}: factor {e.factor!r} is hand-named and has no labels")
    if e.op == "set_label":
        return _Assign(tuple(entry.dims), _latent_for(entry, _label_value(entry, str(e.value), what), what))
    v = _number(e.value, what)
    if e.op == "set_latent" or (e.op == "set_value" and not entry.calibrated):
        return _Assign((entry.dims[0],), np.float32([v]))
    if e.op == "shift":
        return _CurveShift(entry, v) if entry.calibrated else _Add(entry.dims[0], v)
    return _Assign(tuple(entry.dims), _latent_for(entry, v, what))


def compile_edits(edits: list[CheckedEdit], card: FactorCard | None, latent_dim: int, what: str = "edits") -> CompiledEdits:
    """Check ``edits`` against a model (count, targets, dimensions, operations, labels, values in range)
    and turn them into the steps that apply them. ``what`` names the list in errors ("edits" or "pins")."""
    check_edit_count(len(edits), what)
    return CompiledEdits(tuple(_compile_one(e, card, latent_dim, f"{what}[{i}]") for i, e in enumerate(edits)),
                         latent_dim)


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
    latents: np.ndarray, edits: list[CheckedEdit], card: FactorCard | None, what: str = "edits"
) -> np.ndarray:
    """Compile ``edits`` for ``latents`` (N, D) and apply them once; returns a new (N, D) array."""
    return compile_edits(edits, card, np.shape(latents)[1], what).apply(latents)


@dataclass
class TraversalPlan:
    """What is swept: target names (T,), values (T, S) in each target's units, and per target the
    latent dimensions it sets and their latents (S, len(dims)); checked once, applied by :meth:`grid`."""

    targets: list[str]
    values: np.ndarray  # (T, S) float32
    setters: list[tuple[list[int], np.ndarray]] = field(default_factory=list, repr=False)

    def grid(self, base: np.ndarray) -> np.ndarray:
        """The sweep from base latents (N, D): (N*T*S, D) float32, index (n*T + t)*S + s."""
        n, d_total = base.shape
        t, steps = self.values.shape
        grid = np.broadcast_to(base[:, None, None, :], (n, t, steps, d_total)).copy()  # (N, T, S, D)
        for ti, (dlist, lat) in enumerate(self.setters):
            view = grid[:, ti]  # (N, S, D)
            for j, d in enumerate(dlist):
                view[:, :, d] = lat[None, :, j]
        return grid.reshape(n * t * steps, d_total).astype(np.float32)


def plan_traversal(
    latent_dim: int,
    *,
    dims: list[int],
    factors: list[str],
    start: float | None,
    stop: float | None,
    steps: int,
    card: FactorCard | None,
) -> TraversalPlan:
    """Check a sweep against a model and plan it, before any source is encoded.

    A dimension, or a factor without calibration, sweeps its latent from ``start`` to ``stop``
    (default ``DEFAULT_LATENT_RANGE``); a calibrated factor sweeps its values (default: its range,
    the full circle for a circular one) through the card. Neither dims nor factors: every dimension.
    """
    check_traversal(len(dims), len(factors), steps)
    start, stop = (None if v is None else _number(v, what) for v, what in ((start, "start"), (stop, "stop")))
    if not dims and not factors:
        dims = list(range(latent_dim))
    setters = []  # per target: (name, values (S,), dims, latents (S, len(dims)))
    latent_sweep = np.linspace(DEFAULT_LATENT_RANGE[0] if start is None else start,
                               DEFAULT_LATENT_RANGE[1] if stop is None else stop, steps)  # (S,)
    for d in dims:
        d = _check_dim(d, latent_dim, "dimensions")
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
            table = np.asarray(entry.values, np.float64)
            vals = table[np.argmin(np.abs(vals[:, None] - table[None, :]), axis=1)]
        lat = np.stack([_latent_for(entry, float(v), "factors") for v in vals])  # (S, len(dims))
        setters.append((name, vals, list(entry.dims), lat))
    return TraversalPlan([s[0] for s in setters], np.stack([s[1] for s in setters]).astype(np.float32),
                         [(s[2], s[3]) for s in setters])


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
    """Sweep grid from base latents (N, D): ((N*T*S, D) latents, index (n*T + t)*S + s; the plan)."""
    plan = plan_traversal(base.shape[1], dims=dims, factors=factors, start=start, stop=stop, steps=steps, card=card)
    return plan.grid(base), plan


def generate_latents(count: int, latent_dim: int, *, seed: int, temperature: float,
                     pins: CompiledEdits) -> np.ndarray:
    """Prior sample z ~ N(0, temperature^2 I) of shape (count, D) with compiled pins applied."""
    if not np.isfinite(temperature) or temperature < 0:
        raise InvalidArgument(f"temperature={temperature} must be finite and >= 0")
    if temperature > 1e6:
        raise InvalidArgument(f"temperature={temperature:g} is absurdly large; the prior's scale is 1.0")
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((count, latent_dim)) * temperature).astype(np.float32)
    return pins.apply(z)


def sample_posterior(mean: np.ndarray, log_var: np.ndarray, seed: int) -> np.ndarray:
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I) from ``seed`` (Kingma & Welling, 2014)."""
    eps = np.random.default_rng(seed).standard_normal(mean.shape).astype(np.float32)
    return (mean + np.exp(0.5 * log_var) * eps).astype(np.float32)
