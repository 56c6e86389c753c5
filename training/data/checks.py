"""Input checks shared by the datasets: factor arrays and sample counts.

Each check raises ``ValueError`` with a message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_factors(factors: np.ndarray, factors_num_values: Sequence[int], name: str) -> np.ndarray:
    """Validate (N, F) integer factor indices against a grid; return them as int64.

    Args:
        factors: (N, F) factor indices, column f in ``0 .. factors_num_values[f] - 1``.
        factors_num_values: grid size of each factor, length F.
        name: dataset name for the error message.
    """
    arr = np.asarray(factors)
    num = len(factors_num_values)
    if arr.ndim != 2 or arr.shape[1] != num:
        raise ValueError(
            f"{name}: factors must have shape (N, {num}) (one column per factor), got {arr.shape}"
        )
    integral = np.issubdtype(arr.dtype, np.integer) or np.all(np.equal(np.mod(arr, 1), 0))
    if arr.size and not integral:
        raise ValueError(f"{name}: factors must be integer grid indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        sizes = np.asarray(factors_num_values, dtype=np.int64)
        bad = (arr < 0) | (arr >= sizes[None, :])
        if bad.any():
            col = int(np.nonzero(bad.any(axis=0))[0][0])
            raise ValueError(
                f"{name}: factor column {col} has indices outside 0..{sizes[col] - 1} "
                f"(min {arr[:, col].min()}, max {arr[:, col].max()})"
            )
    return arr


def check_num(num: int) -> int:
    """A non-negative sample count."""
    if int(num) != num or num < 0:
        raise ValueError(f"number of samples must be a non-negative integer, got {num!r}")
    return int(num)


def uniform_factors(num: int, factors_num_values: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """(num, F) int64 factor indices, each column uniform over its grid, in one draw.

    ``floor(u * n)`` with one (num, F) block of uniforms: one generator call
    instead of F, which matters at batch 64 (about 5 us instead of 80 us).
    """
    sizes = np.asarray(factors_num_values, dtype=np.int64)
    u = rng.random((check_num(num), len(sizes)))
    return np.minimum((u * sizes).astype(np.int64), sizes - 1)
