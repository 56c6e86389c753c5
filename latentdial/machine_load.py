"""Was the machine quiet while a benchmark ran? Load average before and after, and the CPU others used.

Every script in ``benchmarks/`` and ``loadtest/soak.py`` wraps its measurement in a
:class:`LoadWatch`; it reads, from Linux ``/proc``:

- the load averages (1, 5, 15 minutes) when the measurement starts and when it ends;
- the CPU time the whole machine spent busy during the run, minus the CPU time of the
  benchmark's own process tree (this process and the children it has waited for, e.g. its
  servers and load clients), as *other cores*: the average number of cores other
  processes kept busy.

The run counts as **busy** when the 1-minute load average exceeded ``max_load`` (0.5) at
the start, before the benchmark itself added any, or when other processes used more than
``max_other_cores`` (0.5) cores on average during it (the 1-minute load average at the
end includes the benchmark's own work, so the end is judged by the CPU of the others).
A busy run prints a loud warning on stderr: its figures must not be published.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

MAX_LOAD = 0.5
MAX_OTHER_CORES = 0.5


def load_average() -> tuple[float, float, float]:
    """(1, 5, 15)-minute load averages; NaN where the platform has none."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def _busy_ticks() -> int | None:
    """Clock ticks every CPU spent busy since boot (all but idle and iowait), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(x) for x in first[1:]]
    return sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)


def _own_ticks() -> int | None:
    """Clock ticks of this process and of its waited-for children (utime, stime, cutime, cstime)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15])


@dataclass
class LoadReport:
    """What a :class:`LoadWatch` saw; ``busy`` says the figures are not fit to publish."""

    name: str
    cpus: int
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    other_cores: float | None  # mean cores busy outside this process tree; None off Linux
    max_load: float = MAX_LOAD
    max_other_cores: float = MAX_OTHER_CORES
    reasons: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.reasons)

    def line(self) -> str:
        """One line for a report: load before / after, the others' CPU, quiet or BUSY."""
        b, a = (" ".join(f"{x:.2f}" for x in t) for t in (self.load_before, self.load_after))
        others = "unknown" if self.other_cores is None else f"{self.other_cores:.2f}"
        verdict = "BUSY: " + "; ".join(self.reasons) if self.busy else "quiet"
        return (f"load average (1/5/15 min) before {b}, after {a}; other processes used {others} of "
                f"{self.cpus} cores during the {self.seconds:.0f} s run: {verdict}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"busy": self.busy, "line": self.line()}


class LoadWatch:
    """Context manager around a measurement; ``report`` is set on exit and a busy run warns on stderr.

    Children must have been waited for before the block ends, or their CPU counts as the others'.
    """

    def __init__(self, name: str, *, max_load: float = MAX_LOAD, max_other_cores: float = MAX_OTHER_CORES,
                 warn: bool = True) -> None:
        self.name = name
        self.max_load = max_load
        self.max_other_cores = max_other_cores
        self.warn = warn
        self.report: LoadReport | None = None

    def start(self) -> Self:
        """Take the start reading."""
        self._load0 = load_average()
        self._t0 = time.monotonic()
        self._busy0, self._own0 = _busy_ticks(), _own_ticks()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        """Take the end reading (once) and warn when the run was busy."""
        if self.report is not None:
            return self.report
        seconds = max(time.monotonic() - self._t0, 1e-9)
        busy1, own1 = _busy_ticks(), _own_ticks()
        other = None
        if None not in (busy1, own1, self._busy0, self._own0):
            hz = os.sysconf("SC_CLK_TCK")
            other = max(0.0, ((busy1 - self._busy0) - (own1 - self._own0)) / hz / seconds)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        r = LoadReport(self.name, cpus, seconds, self._load0, load_average(), other, self.max_load,
                       self.max_other_cores)
        if r.load_before[0] > self.max_load:
            r.reasons.append(f"1-min load {r.load_before[0]:.2f} > {self.max_load} at the start")
        if other is not None and other > self.max_other_cores:
            r.reasons.append(f"other processes kept {other:.2f} cores busy (> {self.max_other_cores})")
        self.report = r
        if self.warn and r.busy:
            warn_busy(r)
        return r


def warn_busy(r: LoadReport) -> None:
    """A banner on stderr that no reader of the log can miss."""
    bar = "!" * 78
    print(f"\n{bar}\n!! {r.name}: THE MACHINE WAS BUSY; DO NOT PUBLISH THESE FIGURES\n!! {r.line()}\n"
          f"!! Stop other jobs and rerun on a quiet machine.\n{bar}\n", file=sys.stderr, flush=True)
