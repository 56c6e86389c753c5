"""Scale out on one host: N ``latentdial serve`` processes sharing one port.

Each worker is a separate Python process (its own GIL, its own ONNX Runtime sessions and
dynamic batcher) that binds the *same* gRPC port. The supervisor has its workers set
``SO_REUSEPORT`` (``reuse_port``: gRPC's ``grpc.so_reuseport``), so the kernel spreads
incoming connections over the workers. Worker ``i`` serves Prometheus metrics on
``metrics_port + i`` (none when ``metrics_port`` is 0).

Rules:

- Every worker line of output is re-printed with a ``[worker i pid P]`` prefix, so the
  logs show which process did what.
- SIGTERM / SIGINT to the supervisor is forwarded to every worker as SIGTERM; each one
  drains (health NOT_SERVING, then ``server.stop(grace)``) and exits. Workers still alive
  ``grace_s + 5`` seconds later are killed.
- A worker that dies after it was ready is restarted after a backoff (as gunicorn's
  arbiter does), while the others keep serving: the supervisor logs its exit code and when
  it comes back. The backoff doubles for a worker that dies again soon after a restart.
- Whole-service restarts are left to the process manager above (Docker's ``restart:``,
  Kubernetes, systemd), and only for crash loops: when workers crash more than
  ``RestartPolicy.max_restarts`` times within ``window_s``, or a worker of the first start
  exits before it was ever ready (a configuration or port problem that a restart cannot
  fix), the supervisor stops every worker and returns non-zero.
- Only the workers of one supervisor share the port (``reuse_port``): before it starts
  them the supervisor checks that the gRPC port and every metrics port are free, and
  fails with one line when another process holds one.

Only the standard library is imported, so ``latentdial serve --workers N`` starts fast.
"""

from __future__ import annotations

import collections
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
    """The config of worker ``index``: same port (shared via SO_REUSEPORT), ``metrics_port + index``, one worker."""
    metrics_port = int(getattr(config, "metrics_port", 0) or 0)
    return dataclasses.replace(
        config, workers=1, metrics_port=metrics_port + index if metrics_port else 0, reuse_port=True
    )


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """When a dead worker comes back, and when the supervisor gives up (a crash loop)."""

    #: Delay before the first restart of a worker; doubles for each quick re-crash, up to max_backoff_s.
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    #: A worker that served this long before dying restarts after backoff_s again.
    stable_s: float = 30.0
    #: More than max_restarts crashes (all workers together) within window_s is a crash loop.
    max_restarts: int = 5
    window_s: float = 60.0

    def delay(self, consecutive: int) -> float:
        """Seconds before restarting a worker that crashed ``consecutive`` times in a row (>= 1)."""
        return min(self.backoff_s * 2 ** (max(consecutive, 1) - 1), self.max_backoff_s)


@dataclasses.dataclass
class _Worker:
    index: int
    proc: subprocess.Popen
    ready: threading.Event
    pump: threading.Thread
    started: float  # time.monotonic() at spawn
    restarted: bool  # False for the first start


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
    """Starts, watches, restarts and stops the worker processes. Use :func:`run_workers`."""

    def __init__(self, config: Any, n: int, *, out: TextIO | None = None,
                 policy: RestartPolicy | None = None) -> None:
        if n < 1:
            raise ValueError(f"the number of workers must be >= 1, got {n}")
        if not dataclasses.is_dataclass(config):
            raise TypeError("config must be a ServerConfig dataclass")
        if int(config.port) == 0:
            config = dataclasses.replace(config, port=free_port(config.host))
        if getattr(config, "http", False) and int(getattr(config, "http_port", 1)) == 0:
            config = dataclasses.replace(config, http_port=free_port(config.host))  # one port shared by all
        self.config = config
        self.n = n
        self.out = out or sys.stdout
        self.policy = policy or RestartPolicy()
        self.workers: list[_Worker] = []
        self._retired: list[_Worker] = []  # dead workers whose output pumps may still be draining
        self._stopping = threading.Event()
        self._restart_at: dict[int, float] = {}  # index -> monotonic time of its restart
        self._consecutive = [0] * n  # quick crashes in a row, per worker index
        self._crashes: collections.deque[float] = collections.deque()  # monotonic times, within the window

    @property
    def procs(self) -> list[subprocess.Popen]:
        """The current process of every worker."""
        return [w.proc for w in self.workers]

    # ------------------------------------------------------------------ lifecycle
    def log(self, message: str) -> None:
        self.out.write(f"[supervisor pid {os.getpid()}] {message}\n")
        self.out.flush()

    def check_ports(self) -> None:
        """PortInUse (one line) when another process holds the gRPC or HTTP port or a worker's metrics port."""
        from latentdial.serving.ports import (
            grpc_port_message,
            http_port_message,
            metrics_port_message,
            require_free,
        )

        require_free(self.config.host, self.config.port, grpc_port_message(self.config.host, self.config.port))
        if getattr(self.config, "http", False):
            require_free(self.config.host, self.config.http_port, http_port_message(self.config.host, self.config.http_port))
        metrics_host = getattr(self.config, "metrics_host", self.config.host)
        for i in range(self.n):
            port = worker_config(self.config, i).metrics_port
            if port:
                require_free(metrics_host, port, metrics_port_message(metrics_host, port))

    def _spawn(self, i: int, *, restarted: bool) -> _Worker:
        cfg = worker_config(self.config, i)
        cmd = [sys.executable, "-m", "latentdial.cli", "serve", "--workers", "1"]
        proc = subprocess.Popen(
            cmd, env=worker_env(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        ready = threading.Event()
        pump = threading.Thread(target=_pump, args=(i, proc, self.out, ready), daemon=True)
        pump.start()
        w = _Worker(i, proc, ready, pump, time.monotonic(), restarted)
        metrics = f"metrics :{cfg.metrics_port}" if cfg.metrics_port else "no metrics"
        verb = "restarted" if restarted else "started"
        self.log(f"{verb} worker {i} pid {proc.pid} on {self.config.address} ({metrics})")
        return w

    def start(self) -> None:
        """Check the ports, then spawn every worker (``python -m latentdial.cli serve --workers 1``)."""
        self.check_ports()
        for i in range(self.n):
            self.workers.append(self._spawn(i, restarted=False))

    def _signal_all(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                try:
                    w.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward SIGTERM to every live worker and cancel pending restarts (idempotent)."""
        first = not self._stopping.is_set()
        self._stopping.set()
        if first:
            self.log(f"received {signal.Signals(signum).name}; draining {self.n} workers")
        self._signal_all()

    def _wait_all(self) -> None:
        deadline = time.monotonic() + float(self.config.grace_s) + KILL_AFTER_GRACE_S
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"worker {w.index} pid {w.proc.pid} did not stop within the grace period; killing it")
                w.proc.kill()
                w.proc.wait()
        for w in self._retired + self.workers:
            w.pump.join(timeout=2.0)

    def _on_exit(self, w: _Worker, code: int, now: float, announced: bool) -> str | None:
        """Schedule the restart of a dead worker; return why the supervisor gives up instead, if it does."""
        pid = w.proc.pid
        if not w.restarted and not w.ready.is_set() and not announced:
            return (f"worker {w.index} pid {pid} exited with code {code} before it was ready; "
                    "a restart cannot fix that (see its last lines above); stopping")
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.policy.window_s:
            self._crashes.popleft()
        if len(self._crashes) > self.policy.max_restarts:
            return (f"worker {w.index} pid {pid} exited with code {code}: {len(self._crashes)} worker crashes "
                    f"within {self.policy.window_s:g} s is a crash loop; stopping every worker so that the "
                    "process manager restarts the service")
        ran = now - w.started
        self._consecutive[w.index] = 1 if ran >= self.policy.stable_s else self._consecutive[w.index] + 1
        delay = self.policy.delay(self._consecutive[w.index])
        self._restart_at[w.index] = now + delay
        self.log(f"worker {w.index} pid {pid} exited with code {code} after {ran:.1f} s; restarting it in "
                 f"{delay:.2f} s while the other workers keep serving")
        return None

    def watch(self, poll_s: float = 0.1) -> int:
        """Block until a stop is requested or the workers crash in a loop; return the exit status."""
        give_up: str | None = None
        code: int | None = None
        announced = False
        back: set[int] = set()  # restarted workers whose ready line is still awaited
        while not self._stopping.is_set() and give_up is None:
            now = time.monotonic()
            for w in self.workers:
                code = w.proc.poll()
                if code is not None and w.index not in self._restart_at:
                    give_up = self._on_exit(w, code, now, announced)
                    if give_up is not None:
                        break
            if give_up is not None:
                break
            for i, at in sorted(self._restart_at.items()):
                if now >= at and not self._stopping.is_set():
                    del self._restart_at[i]
                    self._retired = [w for w in self._retired if w.pump.is_alive()]
                    self._retired.append(self.workers[i])
                    self.workers[i] = self._spawn(i, restarted=True)
                    back.add(i)
            for i in sorted(back):
                if self.workers[i].ready.is_set():
                    back.discard(i)
                    self.log(f"worker {i} pid {self.workers[i].proc.pid} is back and ready")
            if not announced and all(w.ready.is_set() for w in self.workers):
                announced = True
                self.log(f"ready: {self.n} workers serving on {self.config.address}")
            self._stopping.wait(poll_s)
        if give_up is not None:
            self.log(give_up)
            self.request_stop()
        else:
            self._signal_all()  # a worker spawned while the stop signal arrived gets it too
        self._wait_all()
        if give_up is not None:
            return code if code not in (0, None) else 1
        # a worker waiting for its restart when the stop came has had its crash reported already
        stopped = [w for w in self.workers if w.index not in self._restart_at]
        bad = [(w.index, w.proc.returncode) for w in stopped if w.proc.returncode not in (0, -signal.SIGTERM)]
        if bad:
            self.log(f"workers exited with non-zero codes: {bad}")
            return 1
        self.log("all workers stopped")
        return 0


def run_workers(config: Any, n: int, *, out: TextIO | None = None, policy: RestartPolicy | None = None) -> int:
    """Run ``n`` server processes on ``config.port`` until SIGTERM/SIGINT; return an exit code.

    ``config`` is a :class:`latentdial.serving.config.ServerConfig`. Installs SIGTERM and
    SIGINT handlers (call it from the main thread). Returns 0 after a clean stop, non-zero
    when the workers crashed in a loop or one could not start. Raises PortInUse before
    starting anything when a port is taken.
    """
    sup = Supervisor(config, n, out=out, policy=policy)
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
