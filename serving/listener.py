"""The HTTP-speaking ports (the HTTP front door and the metrics port): socket, TLS and uvicorn.

Both run uvicorn on the gRPC server's event loop and take the gRPC port's TLS settings: with
``tls_cert`` / ``tls_key`` they serve HTTPS with the same certificate and key, and with
``tls_client_ca`` they demand a client certificate signed by that CA (``ssl.CERT_REQUIRED``),
exactly as gRPC does. They serve plain text next to a TLS gRPC port only when
``http_plaintext`` says so (a TLS-terminating proxy in front); there is no silent fallback.

The socket is bound before anything starts, so a busy port fails start-up with one line
(:class:`~latentdial.serving.ports.PortInUse`) and nothing to undo.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import uvicorn

from latentdial.serving.config import ServerConfig
from latentdial.serving.ports import PortInUse, require_free


def bind(host: str, port: int, *, reuse_port: bool, message: str) -> socket.socket:
    """A bound (not yet listening) TCP socket on ``host:port``; PortInUse with ``message`` when taken.

    Only the workers of one supervisor (``reuse_port``) share a port, as for gRPC.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit TCP_NODELAY on Linux: without it a keep-alive reply written in two
    # parts waits for the client's delayed ACK (about 40 ms per request)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if not reuse_port:
        try:
            require_free(host, port, message)
        except BaseException:
            sock.close()
            raise
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise PortInUse(f"{message} ({e})") from None
    return sock


def ssl_options(config: ServerConfig) -> dict[str, Any]:
    """uvicorn's TLS settings for the HTTP-speaking ports: the gRPC port's certificate, key and client CA.

    Empty (plain text) without TLS, or with ``http_plaintext``.
    """
    if not config.http_tls:
        return {}
    options: dict[str, Any] = {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key}
    if config.tls_client_ca:
        options.update(ssl_ca_certs=config.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


class TlsFilesError(ValueError):
    """The TLS certificate, key or client CA cannot be loaded (start-up stops with one line)."""


def check_tls_files(config: ServerConfig) -> None:
    """Load the certificate, key and client CA once, as every TLS port will, before any port opens;
    TlsFilesError names the file setting that is wrong (gRPC's own message would blame the port)."""
    if not config.tls:
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise TlsFilesError(f"cannot load tls_cert {config.tls_cert} with tls_key {config.tls_key}: {e}") from None
    if config.tls_client_ca:
        try:
            ctx.load_verify_locations(cafile=config.tls_client_ca)
        except (OSError, ssl.SSLError) as e:
            raise TlsFilesError(f"cannot load tls_client_ca {config.tls_client_ca}: {e}") from None


def scheme(config: ServerConfig) -> str:
    """``https`` when the HTTP-speaking ports serve TLS, else ``http``."""
    return "https" if config.http_tls else "http"


class UvicornListener:
    """One ASGI app served by uvicorn on a bound socket, on the running event loop."""

    def __init__(self, app: Any, sock: socket.socket, config: ServerConfig, *, name: str) -> None:
        self.app = app
        self.sock = sock
        self.config = config
        self.name = name
        self.port = int(sock.getsockname()[1])
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> int:
        """Serve; returns the port once uvicorn listens (raises what stopped it otherwise)."""
        cfg = uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=False,
            timeout_graceful_shutdown=max(1, int(self.config.grace_s)),
            limit_concurrency=None, ws="none", **ssl_options(self.config),
        )
        self._server = uvicorn.Server(cfg)
        self._server.install_signal_handlers = lambda: None  # the gRPC server's serve() owns the signals
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self.sock]), name=self.name)
        while not self._server.started:
            if self._task.done():
                self.sock.close()
                await self._task  # raises what stopped it
                raise OSError(f"the {self.name} server stopped while starting")
            await asyncio.sleep(0.005)
        return self.port

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to grace_s), close."""
        if self._server is None:
            self.sock.close()
            return
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._server = None
        self.sock.close()
