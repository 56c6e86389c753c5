"""Ports a server is about to take: refuse busy ones with one line that says what to do.

gRPC sets ``SO_REUSEPORT`` when asked, and then a second server on the same port starts
and silently takes half the connections. Only the workers of one supervisor may share a
port (:mod:`latentdial.serving.supervisor`); everyone else first checks that the port is
free with a plain bind (``SO_REUSEADDR`` only, as a listening server uses), which fails
with "address in use" whether the holder set ``SO_REUSEPORT`` or not.
"""

from __future__ import annotations

import errno
import socket


class PortInUse(OSError):
    """A port the server needs is held by another process; the message says how to pick another."""


def grpc_port_message(host: str, port: int) -> str:
    return (
        f"gRPC address {host}:{port} is already in use (address in use): another server holds it; "
        "stop that one or pick another port with --port N (env LATENTDIAL_PORT)"
    )


def http_port_message(host: str, port: int) -> str:
    return (
        f"HTTP port {port} on {host} is already in use (address in use); pick another with "
        "--http-port N (env LATENTDIAL_HTTP_PORT) or turn the HTTP front door off with --http off"
    )


def metrics_port_message(host: str, port: int) -> str:
    return (
        f"metrics port {port} on {host} is already in use (address in use); pick another with "
        "--metrics-port N (env LATENTDIAL_METRICS_PORT) or disable the endpoint with --metrics-port 0"
    )


def _bind_host(host: str) -> str:
    return "0.0.0.0" if host in ("", "0.0.0.0", "[::]", "::") else host.strip("[]")


def is_free(host: str, port: int) -> bool:
    """True when a listening socket could bind ``host:port`` now, without ``SO_REUSEPORT``."""
    if int(port) == 0:
        return True
    try:
        infos = socket.getaddrinfo(_bind_host(host), int(port), type=socket.SOCK_STREAM)
    except socket.gaierror:
        return True  # let the server report the unresolvable host itself
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return False
                if e.errno == errno.EADDRNOTAVAIL:  # e.g. no IPv6 on this host
                    continue
                raise
    return True


def require_free(host: str, port: int, message: str) -> None:
    """Raise :class:`PortInUse` with ``message`` when ``host:port`` is taken."""
    if not is_free(host, port):
        raise PortInUse(message)
