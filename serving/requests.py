"""The core's typed requests: what every front door turns its wire format into before calling.

A door resolves the model (:meth:`Engine.served`), reads its wire format into numpy with
:mod:`codec` (shapes checked against that model), builds one of these and hands it to
:mod:`dataplane`. Nothing here knows gRPC, JSON or HTTP; every door builds the same request
for the same call, so a limit or a check on it exists once.

Edits and pins arrive in three wire shapes (the proto's oneofs, the JSON bodies' and the SDK's
:class:`latentdial.edit.Edit` / ``Pin``, query pairs); each door gathers a target and its operations
and calls :func:`edit_of` or :func:`pin_of` (:func:`edit_from`, :func:`pin_from`), which ask the one
rule of what a well-formed edit is (:func:`latentdial.edit.operation`, the SDK's too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from latentdial.edit import EDIT_OPS, PIN_OPS, EditError, Pin, operation
from latentdial.edit import Edit as PublicEdit
from latentdial.serving.edits import CheckedEdit
from latentdial.serving.errors import InvalidArgument

#: the number of steps of a traversal that names none
DEFAULT_TRAVERSE_STEPS = 10
#: the largest seed: every door takes the proto's uint64, 0..2**64 - 1
MAX_SEED = 2**64 - 1


def check_seed(seed: int) -> None:
    """InvalidArgument unless ``seed`` is an integer in 0..:data:`MAX_SEED` (the proto's uint64), so a
    seed that numpy would refuse, or that gRPC could not carry, is the caller's error on every door."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgument(f"seed: {type(seed).__name__} is not an integer")
    if not 0 <= seed <= MAX_SEED:
        shown = f"seed={seed}" if abs(seed) < 10**30 else "seed"  # str() refuses ints of over 4,300 digits
        raise InvalidArgument(f"{shown} is outside 0..{MAX_SEED} (2**64 - 1)")


class _Seeded:
    """A request with a ``seed``: checked by :func:`check_seed` when it is built, whatever door built it."""

    seed: int

    def __post_init__(self) -> None:
        check_seed(self.seed)


@dataclass(frozen=True)
class ModelRef:
    """A model reference: empty name = the default model, empty version = its newest."""

    name: str = ""
    version: str = ""


@dataclass(frozen=True)
class Source:
    """Where the latents of Traverse / EditAttributes come from: images (N, C, H, W) or latents (N, D)."""

    images: np.ndarray | None = None
    latents: np.ndarray | None = None

    @property
    def rows(self) -> int:
        """How many sources (N); InvalidArgument when neither images nor latents were given."""
        if self.images is not None:
            return len(self.images)
        if self.latents is not None:
            return len(self.latents)
        raise InvalidArgument("no source; set images or latents")


@dataclass(frozen=True)
class EncodeRequest(_Seeded):
    """Images (N, C, H, W) float32 in [0, 1] -> posterior; ``sample`` also draws z with ``seed``;
    ``factor_values`` also reads each named factor's value from the mean."""

    images: np.ndarray
    sample: bool = False
    seed: int = 0
    factor_values: bool = False


@dataclass(frozen=True)
class ReconstructRequest(_Seeded):
    """Encode, take the mean (or a seeded posterior sample), decode."""

    images: np.ndarray
    sample: bool = False
    seed: int = 0


@dataclass(frozen=True)
class TraverseRequest:
    """Sweep ``dims`` or ``factors`` (not both; neither: every dimension) from each source."""

    source: Source
    dims: list[int] = field(default_factory=list)
    factors: list[str] = field(default_factory=list)
    start: float | None = None
    stop: float | None = None
    steps: int = DEFAULT_TRAVERSE_STEPS


@dataclass(frozen=True)
class EditRequest:
    """Apply ``edits`` in order to the source's latents and decode."""

    source: Source
    edits: list[CheckedEdit] = field(default_factory=list)


@dataclass(frozen=True)
class GenerateRequest(_Seeded):
    """``count`` seeded prior samples at ``temperature`` with ``pins`` (set_* edits) applied."""

    count: int = 1
    seed: int = 0
    temperature: float = 1.0
    pins: list[CheckedEdit] = field(default_factory=list)


@dataclass(frozen=True)
class SamplesRequest(_Seeded):
    """``count`` images from the model's own ground-truth dataset."""

    count: int = 1
    seed: int = 0


def finite(v: float, what: str) -> float:
    """``v`` as a float, or InvalidArgument if it is NaN or infinite."""
    if not np.isfinite(v):
        raise InvalidArgument(f"{what}: value {v} is not finite")
    return float(v)


def _checked(factor: str | None, dimension: int | None, given: Mapping[str, float | str | None],
             names: tuple[str, ...], what: str) -> tuple[str, float | str]:
    try:
        return operation(factor, dimension, given, names)
    except EditError as e:
        raise InvalidArgument(f"{what}: {e}") from None


def edit_of(factor: str | None, dimension: int | None, ops: Mapping[str, float | str | None], what: str) -> CheckedEdit:
    """One edit from a target and its operations by name (``set_value``, ``shift``, ``set_latent``,
    ``set_label``; None = not given): exactly one target, exactly one operation, a finite number."""
    op, value = _checked(factor, dimension, ops, EDIT_OPS, what)
    dim = None if dimension is None else int(dimension)
    return CheckedEdit(factor, dim, op, str(value) if op == "set_label" else finite(float(value), what))


def pin_of(factor: str | None, dimension: int | None, pinned: Mapping[str, float | str | None], what: str) -> CheckedEdit:
    """One pin of Generate (``value``, ``latent`` or ``label``) as the set_* edit it is."""
    kind, value = _checked(factor, dimension, pinned, tuple(PIN_OPS), what)
    dim = None if dimension is None else int(dimension)
    return CheckedEdit(factor, dim, PIN_OPS[kind], str(value) if kind == "label" else finite(float(value), what))


def edit_from(e: PublicEdit, what: str) -> CheckedEdit:
    """A caller's :class:`latentdial.edit.Edit` (the SDK's, or a JSON body's) as the core's edit."""
    return edit_of(e.factor, e.dimension, {k: getattr(e, k) for k in EDIT_OPS}, what)


def pin_from(p: Pin, what: str) -> CheckedEdit:
    """A caller's :class:`latentdial.edit.Pin` as the set_* edit it is."""
    return pin_of(p.factor, p.dimension, {k: getattr(p, k) for k in PIN_OPS}, what)
