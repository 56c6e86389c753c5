"""What a GPU-host check stage writes: its figures and failures as they happen, then its status.

A stage appends one JSON line per figure or failure to ``<out>/<stage>.jsonl`` as soon as it has
it (a stage stopped at its time limit keeps what it measured), and writes ``<out>/<stage>.json``
with its status when it ends: ``ok``, ``failed``, or ``skipped: <why>`` (``skipped: no CUDA`` on a
host without a usable GPU, after everything before the first CUDA call has run).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

NO_CUDA = "skipped: no CUDA"


class Skip(Exception):
    """A stage cannot go on here (no CUDA); everything before this point ran."""


def cuda_reason() -> str | None:
    """None when a CUDA device is usable here, else why not (torch when installed, else cuda-python)."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        if not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA device"
        return None
    try:
        from latentdial.serving.runtimes.tensorrt_runtime import import_cudart

        cudart = import_cudart()
        err, count = cudart.cudaGetDeviceCount()
        return None if int(err) == 0 and count > 0 else f"cudaGetDeviceCount: error {int(err)}, {count} devices"
    except Exception as e:  # noqa: BLE001 - any failure here means no usable CUDA
        return f"neither torch nor cuda-python finds a GPU ({e})"


def require_cuda() -> None:
    """Raise :class:`Skip` (``skipped: no CUDA``) unless a CUDA device is usable here."""
    reason = cuda_reason()
    if reason is not None:
        raise Skip(f"{NO_CUDA} ({reason})")


class StageRecord:
    """Figures and failures of one stage, streamed to ``<out>/<stage>.jsonl``."""

    def __init__(self, out: Path, stage: str) -> None:
        self.out, self.stage = out, stage
        out.mkdir(parents=True, exist_ok=True)
        self.lines_path = out / f"{stage}.jsonl"
        self.lines_path.write_text("")
        self.failures: list[str] = []
        self.started = time.monotonic()

    def _append(self, kind: str, data: dict[str, Any]) -> None:
        with self.lines_path.open("a") as f:
            f.write(json.dumps({"kind": kind, "t_s": round(time.monotonic() - self.started, 2)} | data,
                               default=str) + "\n")

    def figure(self, **data: Any) -> None:
        """One measured result (printed and appended)."""
        print(f"[{self.stage}] " + ", ".join(f"{k}={v}" for k, v in data.items()), flush=True)
        self._append("figure", data)

    def fail(self, what: str) -> None:
        """One failure; the stage goes on and ends ``failed``."""
        print(f"[{self.stage}] FAIL {what}", flush=True)
        self.failures.append(what)
        self._append("failure", {"what": what})

    def finish(self, status: str | None = None, **extra: Any) -> dict[str, Any]:
        """Write ``<stage>.json``: status (ok / failed / the given one), failures, seconds."""
        status = status or ("failed" if self.failures else "ok")
        result = {"stage": self.stage, "status": status, "failures": self.failures,
                  "seconds": round(time.monotonic() - self.started, 1)} | extra
        (self.out / f"{self.stage}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        return result


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a stage appended (an empty list when it wrote none)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
