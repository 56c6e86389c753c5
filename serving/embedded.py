"""Run a server from Python: in this process (:class:`EmbeddedServer`) or as a child process
(:class:`ServerProcess`). The one way every caller starts a server it does not run with
``latentdial serve`` by hand: ``latentdial evaluate-edits``, the tests, the load tests and the
service benchmark.

    with EmbeddedServer(ServerConfig(repository="models", port=0)) as server:
        Client(server.address)          # a real server on a free port, same process

    with ServerProcess(repository="models", args=["--batching", "off"]) as server:
        server.pid, server.address      # ``latentdial serve`` in a child, SERVING on return

An embedded server runs its own asyncio event loop in a daemon thread, so blocking callers
(the synchronous client, tests) can use it. A child process is for measuring the server on
its own (CPU time, memory) or for signals (graceful drain). Only the embedded server needs
the ``serve`` extra (it is imported when one starts): load tools that only start child
processes need grpcio and grpcio-health-checking alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from latentdial.serving.supervisor import free_port

if TYPE_CHECKING:
    from latentdial.serving.config import ServerConfig
    from latentdial.serving.server import LatentDialServer

__all__ = ["EmbeddedServer", "ServerProcess", "ServerStartError", "free_port", "health_status", "terminate",
           "wait_serving"]


class ServerStartError(RuntimeError):
    """The server exited or did not report SERVING in time."""


class EmbeddedServer:
    """A started server in a background thread with its own event loop; stops gracefully on exit.

    ``config.port = 0`` binds a free port (``port`` and ``address`` tell which).
    """

    def __init__(self, config: ServerConfig, *, name: str = "embedded-server") -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)
        self.handle: LatentDialServer | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """``host:port`` to connect to (loopback when the server binds every interface)."""
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{host}:{self.port}"

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 120.0) -> Any:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def start(self) -> Self:
        from latentdial.serving.server import create_server

        self._thread.start()
        try:
            self.handle, self.port = self.call(create_server(self.config))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace_s: float = 1.0) -> None:
        """Drain (health NOT_SERVING, in-flight calls finish within ``grace_s``), then end the loop."""
        if self.handle is not None:
            self.call(self.handle.stop(grace_s))
            self.handle = None
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def health_status(address: str, timeout_s: float = 1.0) -> str:
    """The server's overall health status name (e.g. "SERVING"), or the gRPC error code name."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError as e:
            return e.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_serving(address: str, timeout_s: float, proc: subprocess.Popen | None = None) -> float:
    """Poll the health service until SERVING; return seconds waited. Raise ServerStartError."""
    start = time.monotonic()
    status = "no answer"
    while time.monotonic() - start < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"the server exited with code {proc.returncode} before SERVING")
        status = health_status(address)
        if status == "SERVING":
            return time.monotonic() - start
        time.sleep(0.2)
    raise ServerStartError(f"{address} not SERVING after {timeout_s:.0f} s (last status {status})")


def terminate(proc: subprocess.Popen, timeout_s: float) -> int:
    """SIGTERM a child, wait up to ``timeout_s`` for it to exit, then SIGKILL it. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class ServerProcess:
    """``python -m latentdial.cli serve`` on 127.0.0.1:<free port>, SERVING on start, stopped on exit.

    Extra flags go in ``args`` (e.g. ``["--max-batch-size", "32"]``). The server's output
    goes to ``log_path`` (or is discarded).
    """

    def __init__(
        self,
        *,
        repository: str | os.PathLike[str] = "models",
        args: list[str] | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 60.0,
        grace_s: float = 5.0,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.repository = str(repository)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.args = list(args or [])
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "latentdial.cli", "serve",
            "--repository", self.repository,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--metrics-port", "0", "--http-port", "0", "--grace-s", str(self.grace_s),
            *self.args,
        ]

    def start(self) -> Self:
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.cwd)
        try:
            wait_serving(self.address, self.startup_timeout_s, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """SIGTERM, wait for the graceful drain, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        terminate(self.proc, self.grace_s + 10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
