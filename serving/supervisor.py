"""Scale out on one host: N ``latentdial serve`` processes sharing one port.

Each worker is a separate Python process (its own GIL, its own ONNX Runtime sessions and
dynamic batcher) that binds the *same* gRPC port. gRPC enables ``SO_REUSEPORT``
(channel option ``grpc.so_reuseport``, on by default on Linux), so the kernel spreads
incoming connections over the workers. Worker ``i`` serves Prometheus metrics on
``metrics_port + i`` (none when ``metrics_port`` is 0).

Rules:

- Every worker line of output is re-printed with a ``[worker i pid P]`` prefix, so the
  logs show which process did what.
- SIGTERM / SIGINT to the supervisor is forwarded to every worker as SIGTERM; each one
  drains (health NOT_SERVING, then ``server.stop(grace)``) and exits. Workers still alive
  ``grace_s + 5`` seconds later are killed.
- Nothing is restarted silently: when a worker exits on its own, the supervisor logs its
  exit code, stops the other workers and returns non-zero. Restarts are the job of the
  process manager above (Docker's ``restart:``, Kubernetes, systemd).

Only the standard library is imported, so ``latentdial serve --workers N`` starts fast.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, TextIO

ENV_PREFIX = "LATENTDIAL_"
#: Extra seconds after ``grace_s`` before a worker that ignores SIGTERM is killed.
KILL_AFTER_GRACE_S = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for ``port=0``: all workers need one number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host if host not in ("0.0.0.0", "") else "127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def worker_config(config: Any, index: int) -> Any:
    """The config of worker ``index``: same port, ``metrics_port + index``, one worker."""
    metrics_port = int(getattr(config, "metrics_port", 0) or 0)
    return dataclasses.replace(
        config, workers=1, metrics_port=metrics_port + index if metrics_port else 0
    )


def worker_env(config: Any, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that makes ``latentdial serve`` resolve exactly ``config``.

    Every field becomes ``LATENTDIAL_<FIELD>``; fields that are None are removed, so a stale
    variable of the supervisor's environment cannot leak into a worker.
    """
    env = dict(os.environ if base is None else base)
    for f in dataclasses.fields(config):
        key = ENV_PREFIX + f.name.upper()
        value = getattr(config, f.name)
        if value is None:
            env.pop(key, None)
        else:
            env[key] = _env_value(value)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _pump(index: int, proc: subprocess.Popen, out: TextIO, ready: threading.Event) -> None:
    """Copy a worker's output line by line with a prefix; set ``ready`` on its ready line."""
    prefix = f"[worker {index} pid {proc.pid}] "
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.lstrip().lower().startswith("ready"):  # the serve CLI's "ready: ..." line
            ready.set()
        out.write(prefix + line)
        out.flush()


class Supervisor:
    """Starts, watches and stops the worker processes. Use :func:`run_workers`."""

    def __init__(self, config: Any, n: int, *, out: TextIO | None = None) -> None:
        if n < 1:
            raise ValueError(f"the number of workers must be >= 1, got {n}")
        if not dataclasses.is_dataclass(config):
            raise TypeError("config must be a ServerConfig dataclass")
        if int(config.port) == 0:
            config = dataclasses.replace(config, port=free_port(config.host))
        self.config = config
        self.n = n
        self.out = out or sys.stdout
        self.procs: list[subprocess.Popen] = []
        self.ready: list[threading.Event] = []
        self._pumps: list[threading.Thread] = []
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def log(self, message: str) -> None:
        self.out.write(f"[supervisor pid {os.getpid()}] {message}\n")
        self.out.flush()

    def start(self) -> None:
        """Spawn every worker (``python -m latentdial.cli serve --workers 1``)."""
        for i in range(self.n):
            cfg = worker_config(self.config, i)
            cmd = [sys.executable, "-m", "latentdial.cli", "serve", "--workers", "1"]
            proc = subprocess.Popen(
                cmd,
                env=worker_env(cfg),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            ready = threading.Event()
            pump = threading.Thread(target=_pump, args=(i, proc, self.out, ready), daemon=True)
            pump.start()
            self.procs.append(proc)
            self.ready.append(ready)
            self._pumps.append(pump)
            metrics = f"metrics :{cfg.metrics_port}" if cfg.metrics_port else "no metrics"
            self.log(f"started worker {i} pid {proc.pid} on {self.config.address} ({metrics})")

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward SIGTERM to every live worker (idempotent)."""
        first = not self._stopping.is_set()
        self._stopping.set()
        if first:
            self.log(f"received {signal.Signals(signum).name}; draining {self.n} workers")
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def _wait_all(self) -> None:
        deadline = time.monotonic() + float(self.config.grace_s) + KILL_AFTER_GRACE_S
        for i, p in enumerate(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"worker {i} pid {p.pid} did not stop within the grace period; killing it")
                p.kill()
                p.wait()
        for t in self._pumps:
            t.join(timeout=2.0)

    def watch(self, poll_s: float = 0.2) -> int:
        """Block until a stop is requested or a worker dies; return the exit status."""
        failed: tuple[int, int] | None = None
        announced = False
        while not self._stopping.is_set():
            for i, p in enumerate(self.procs):
                code = p.poll()
                if code is not None:
                    failed = (i, code)
                    break
            if failed is not None:
                break
            if not announced and all(r.is_set() for r in self.ready):
                announced = True
                self.log(f"ready: {self.n} workers serving on {self.config.address}")
            self._stopping.wait(poll_s)
        if failed is not None:
            i, code = failed
            self.log(
                f"worker {i} pid {self.procs[i].pid} exited with code {code}; "
                "stopping the other workers (workers are not restarted)"
            )
            self.request_stop()
        self._wait_all()
        if failed is not None:
            return code if code not in (0, None) else 1
        codes = [p.returncode for p in self.procs]
        bad = [(i, c) for i, c in enumerate(codes) if c not in (0, -signal.SIGTERM)]
        if bad:
            self.log(f"workers exited with non-zero codes: {bad}")
            return 1
        self.log("all workers stopped")
        return 0


def run_workers(config: Any, n: int, *, out: TextIO | None = None) -> int:
    """Run ``n`` server processes on ``config.port`` until SIGTERM/SIGINT; return an exit code.

    ``config`` is a :class:`latentdial.serving.config.ServerConfig`. Installs SIGTERM and
    SIGINT handlers (call it from the main thread). Returns 0 after a clean stop, non-zero
    when a worker failed.
    """
    sup = Supervisor(config, n, out=out)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: object) -> None:
        sup.request_stop(signum)

    for s in previous:
        signal.signal(s, handler)
    try:
        sup.start()
        return sup.watch()
    finally:
        if any(p.poll() is None for p in sup.procs):  # start() failed half-way
            sup.request_stop()
            sup._wait_all()
        for s, h in previous.items():
            signal.signal(s, h)
