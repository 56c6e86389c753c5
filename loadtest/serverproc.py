"""Start a ``latentdial serve`` subprocess on 127.0.0.1 and wait until it is SERVING.

Shared by ``run_headless.py``, ``soak.py`` and the tests. Load tools here only ever
target loopback addresses: :func:`require_loopback` rejects anything else.

    with ServerProcess(repository="models", log_path=Path("reports/server.log")) as srv:
        print(srv.address, srv.pid)
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self


class ServerStartError(RuntimeError):
    """The server exited or did not report SERVING in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_loopback(address: str) -> str:
    """Return ``address`` ("host:port") if host is a loopback address, else raise ValueError."""
    address = address.removeprefix("grpc://").removeprefix("http://")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be host:port, got {address!r}")
    host = host.strip("[]")
    try:
        infos = {ai[4][0] for ai in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)}
    except socket.gaierror as e:
        raise ValueError(f"cannot resolve {host!r}: {e}") from e
    bad = [ip for ip in infos if not ipaddress.ip_address(ip.split("%")[0]).is_loopback]
    if bad or not infos:
        raise ValueError(
            f"load tools only target this machine: {host!r} resolves to {sorted(infos)}, "
            "use 127.0.0.1 (or localhost / [::1])"
        )
    return address


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


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB from /proc/<pid>/status (None if gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class ServerProcess:
    """``python -m latentdial.cli serve`` on 127.0.0.1:<free port>, stopped on exit.

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
    ) -> None:
        self.repository = str(repository)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.args = list(args or [])
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._log = None

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

    def start(self) -> ServerProcess:
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env)
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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.grace_s + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
