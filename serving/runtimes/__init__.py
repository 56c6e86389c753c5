"""Runtimes that execute a model directory's graphs (see base.Runtime).

``load_runtime`` is the one entry point serving uses; it picks the best
available backend or the configured one (see ``selection``).
``available_runtimes`` says which runtimes can run here and why the others cannot.
"""

from __future__ import annotations

from latentdial.serving.runtimes.base import (
    Runtime,
    RuntimeFailure,
    RuntimeOptions,
    RuntimeUnavailable,
)
from latentdial.serving.runtimes.selection import (
    ALL_RUNTIMES,
    AUTO_ORDER,
    available_runtimes,
    load_runtime,
)

__all__ = [
    "ALL_RUNTIMES",
    "AUTO_ORDER",
    "Runtime",
    "RuntimeFailure",
    "RuntimeOptions",
    "RuntimeUnavailable",
    "available_runtimes",
    "load_runtime",
]
