"""Closed-loop load: C callers, each sends a request, waits for its answer, sends the next.

Standard library only, so that load clients running in other virtual environments (the
tritonclient one, for instance) can import it by path. ``drive`` counts only the calls that
started after the warm-up; ``summary`` turns the latencies into the figures a report prints.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable


async def drive(call: Callable[[], Awaitable[object]], callers: int, duration: float,
                warmup: float, error_kinds: dict[str, int] | None = None) -> tuple[int, int, list[float]]:
    """``callers`` loops calling ``call()`` for warmup + duration seconds.

    Returns (measured calls that succeeded, measured calls that raised, their latencies in s).
    ``error_kinds``, when given, counts the measured failures by their message's first 160 characters.
    """
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t_measure = loop.time() + warmup
    t_end = t_measure + duration

    async def worker() -> None:
        nonlocal errors
        while True:
            t0 = loop.time()
            if t0 >= t_end:
                return
            try:
                await call()
            except Exception as e:  # noqa: BLE001 - counted, the cell goes on
                if t0 >= t_measure:
                    errors += 1
                    if error_kinds is not None:
                        kind = f"{type(e).__name__}: {e}"[:160]
                        error_kinds[kind] = error_kinds.get(kind, 0) + 1
                continue
            if t0 >= t_measure:
                latencies.append(loop.time() - t0)

    await asyncio.gather(*(worker() for _ in range(callers)))
    return len(latencies), errors, latencies


def percentile_ms(latencies_s: list[float], p: float) -> float:
    """The ``p``-quantile (0-1, nearest rank) of latencies given in seconds, in ms; NaN if none."""
    if not latencies_s:
        return math.nan
    ms = sorted(x * 1e3 for x in latencies_s)
    return ms[min(len(ms) - 1, int(p * len(ms)))]


def summary(requests: int, errors: int, latencies_s: list[float], seconds: float,
            items_per_request: int) -> dict[str, float]:
    """req/s, items/s, p50/p95/p99 ms and the counts of one measured cell."""
    rps = requests / seconds if seconds > 0 else 0.0
    return {"requests": requests, "errors": errors, "seconds": seconds, "req_per_s": rps,
            "items_per_s": rps * items_per_request, "p50_ms": percentile_ms(latencies_s, 0.50),
            "p95_ms": percentile_ms(latencies_s, 0.95), "p99_ms": percentile_ms(latencies_s, 0.99)}
