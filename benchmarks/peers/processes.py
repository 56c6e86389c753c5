"""Start a peer server in its own virtual environment, wait for ``peer_cli.READY``, stop it with SIGTERM.

Each peer runs in a new session (process group) so that the server binaries it starts
(PyTriton's ``tritonserver``, for one) stop with it; a peer that ignores SIGTERM is killed
with its group after a grace period. Output goes to a log file, read back when a start fails.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from peer_cli import READY  # a script beside this one (benchmarks/peers/ is on sys.path)


class PeerStartError(RuntimeError):
    """The peer exited, or did not print ``peer_cli.READY`` in time; the message ends with its log's tail."""


def _pump(stream: IO[str], log: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        lines.put(line)
    lines.put("")


class PeerProcess:
    """``python SCRIPT ARGS`` with a given interpreter; started on enter, stopped on exit."""

    def __init__(self, python: Path, script: Path, args: list[str], log_path: Path,
                 startup_timeout_s: float = 120.0, grace_s: float = 20.0) -> None:
        self.command = [str(python), str(script), *args]
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")  # noqa: SIM115 - closed by the pump's owner on stop
        self._log = log
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, cwd=Path(self.command[1]).parent,
                                     env=os.environ | {"PYTHONUNBUFFERED": "1"})
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=_pump, args=(self.proc.stdout, log, lines), daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=self.startup_timeout_s)
                if line == "":
                    raise PeerStartError(f"exited with code {self.proc.wait()} before ready:\n{self.tail()}")
                if READY in line:
                    return self
        except queue.Empty:
            self.stop()
            raise PeerStartError(f"not ready after {self.startup_timeout_s:.0f} s:\n{self.tail()}") from None
        except BaseException:
            self.stop()
            raise

    def tail(self, n: int = 15) -> str:
        """The last lines of the peer's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM to the peer, SIGKILL after the grace period; then to what is left of its process group."""
        from latentdial.serving.embedded import terminate

        if self.proc is None:
            return None
        terminate(self.proc, self.grace_s)
        try:  # children left in the group (the server binary) follow their parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
