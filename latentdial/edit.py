"""An edit and a pin as callers write them: the one public type of the SDK and of the HTTP API's JSON.

``Edit(factor="scale", set_value=0.8)``, ``Edit(dimension=3, shift=-0.5)``, ``Pin(factor="shape",
label="heart")``: a target (a factor by name, or a latent dimension) and exactly one operation.
The proto's ``FactorEdit`` / ``FactorPin`` carry the same fields. :func:`operation` is the one rule
of what a well-formed one is; the client checks it before sending and the server again on arrival
(``latentdial.serving.requests``), each raising its own error with the same words.

Pure Python: the client, the server and the HTTP JSON bodies (pydantic reads these dataclasses)
all import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: the operations of an edit
EDIT_OPS = ("set_value", "shift", "set_latent", "set_label")
#: what a pin holds -> the edit operation it is
PIN_OPS = {"value": "set_value", "latent": "set_latent", "label": "set_label"}


class EditError(ValueError):
    """An edit or pin without exactly one target and one operation."""


def operation(factor: str | None, dimension: int | None, given: Mapping[str, float | str | None],
              names: tuple[str, ...]) -> tuple[str, float | str]:
    """The one operation of ``given`` (name -> value, None = not given), after checking there is exactly
    one target and exactly one operation among ``names``; EditError otherwise."""
    if (factor is None) == (dimension is None):
        raise EditError("give exactly one of factor or dimension")
    ops = {k: v for k, v in given.items() if k in names and v is not None}
    if len(ops) != 1:
        raise EditError(f"give exactly one of {', '.join(names)}; got {sorted(ops)}")
    (name, value), = ops.items()
    return name, value


@dataclass(frozen=True)
class Edit:
    """One change: a factor (by name) or a latent dimension, and exactly one operation."""

    factor: str | None = None
    dimension: int | None = None
    set_value: float | None = None
    shift: float | None = None
    set_latent: float | None = None
    set_label: str | None = None

    def operation(self) -> tuple[str, float | str]:
        """(op, value); EditError unless there is exactly one target and one operation."""
        return operation(self.factor, self.dimension, {k: getattr(self, k) for k in EDIT_OPS}, EDIT_OPS)


@dataclass(frozen=True)
class Pin:
    """Hold a factor or dimension fixed in Generate: exactly one of value, latent, label."""

    factor: str | None = None
    dimension: int | None = None
    value: float | None = None
    latent: float | None = None
    label: str | None = None

    def operation(self) -> tuple[str, float | str]:
        """(pinned field, value); EditError unless there is exactly one target and one pinned field."""
        return operation(self.factor, self.dimension, {k: getattr(self, k) for k in PIN_OPS}, tuple(PIN_OPS))
