"""Start a ``latentdial serve`` subprocess on 127.0.0.1 and wait until it is SERVING.

Shared by ``run_headless.py``, ``soak.py`` and the tests. The server process itself is
:class:`latentdial.serving.embedded.ServerProcess` (the one way to start a server from
Python); this module adds what load tools need beside it. Load tools here only ever
target loopback addresses: :func:`require_loopback` rejects anything else.

    with ServerProcess(repository="models", log_path=Path("reports/server.log")) as srv:
        print(srv.address, srv.pid)
"""

from __future__ import annotations

import ipaddress
import socket

from latentdial.serving.embedded import (
    ServerProcess,
    ServerStartError,
    free_port,
    health_status,
    wait_serving,
)

__all__ = ["ServerProcess", "ServerStartError", "free_port", "health_status", "require_loopback", "rss_kib",
           "wait_serving"]


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
