"""The grpc.aio server: LatentDial service + health + reflection, auth, TLS, metrics, graceful stop.

``create_server(config)`` binds (port 0 picks a free port), starts, loads and
warms every model, flips health to SERVING and returns ``(server, port)``.
``serve(config)`` runs until SIGTERM/SIGINT, then drains: health NOT_SERVING,
no new RPCs, in-flight ones finish within ``grace_s``, exit code 0.

Health has two meanings. Readiness (service ``""`` and ``latentdial.v1.LatentDial``) is
SERVING only while at least one model version is servable and the server is not draining,
so balancers do not route to a replica that would answer NOT_FOUND to everything.
Liveness (service ``liveness``) is SERVING from start-up on: the process answers, whatever
it serves. ``model/<name>`` and ``model/<name>/<version>`` say whether a model (any version)
and each version are served; model control (:mod:`model_control`) updates all of them. A port another process holds fails start-up with :class:`PortInUse`.

Security (docs/api.md#security-model): with ``token`` every data and admin RPC needs
``authorization: Bearer <token>`` (the health service, OIP ServerLive / ServerReady and
reflection stay open); with ``tls_cert`` / ``tls_key`` the gRPC, HTTP and metrics ports all
serve TLS, and with ``tls_client_ca`` all demand a client certificate (``http_plaintext``
alone lets the HTTP and metrics ports speak plain text beside a TLS gRPC port).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from latentdial.inference import grpc_service_pb2_grpc as oip_pb_grpc
from latentdial.serving.auth import GRPC_TOKEN_HINT, bearer_ok
from latentdial.serving.config import ServerConfig
from latentdial.serving.engine import Engine
from latentdial.serving.http.app import HttpFrontDoor
from latentdial.serving.listener import UvicornListener, bind, check_tls_files
from latentdial.serving.metrics import ServiceMetrics
from latentdial.serving.model_control import ModelControl
from latentdial.serving.oip_grpc import OPEN_METHODS as OIP_OPEN_METHODS
from latentdial.serving.oip_grpc import SERVICE_NAME as OIP_SERVICE_NAME
from latentdial.serving.oip_grpc import InferenceService
from latentdial.serving.ports import (
    PortInUse,
    grpc_port_message,
    metrics_port_message,
    require_free,
)
from latentdial.serving.repository import READY
from latentdial.serving.service import LatentDialService
from latentdial.serving.wire_guard import WireGuard, add_guarded
from latentdial.v1 import MAX_EDITS, MAX_TRAVERSE_TARGETS
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LatentDial"].full_name
#: RPCs that answer without a token (load balancers probe them).
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.", *OIP_OPEN_METHODS)
#: Health service name that answers SERVING while the process runs (liveness), beside readiness.
LIVENESS_SERVICE = "liveness"
_READINESS_SERVICES = ("", SERVICE_NAME, OIP_SERVICE_NAME)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` metadata with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._token = token

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, GRPC_TOKEN_HINT)

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(_OPEN_PREFIXES):
            return await continuation(details)
        for key, value in details.invocation_metadata or ():
            if key == "authorization" and bearer_ok(value, self._token):
                return await continuation(details)
        return self._deny


class LatentDialServer:
    """A started grpc.aio server plus what it needs to drain: health, engine, front doors, metrics endpoint."""

    def __init__(self, server: grpc.aio.Server, engine: Engine, service: LatentDialService,
                 health_servicer: health.aio.HealthServicer, config: ServerConfig, metrics: ServiceMetrics) -> None:
        self.grpc_server = server
        self.engine = engine
        self.service = service
        self.health = health_servicer
        self.config = config
        self.metrics = metrics
        self.port = 0
        self.metrics_port = 0
        self.metrics_listener: UvicornListener | None = None  # the metrics port, when metrics_port
        self.control: ModelControl | None = None
        self.http: HttpFrontDoor | None = None  # the HTTP front door, when config.http
        self._stopped = False
        self._model_health: set[str] = set()  # "model/<name>[/<version>]" names ever reported

    async def set_serving(self, serving: bool) -> None:
        """Readiness: SERVING only when asked and something servable is loaded (never once stopping)."""
        repo = self.engine.repository
        ready = serving and not self._stopped and repo is not None and bool(repo.all())
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in _READINESS_SERVICES:
            await self.health.set(name, status)

    async def refresh_health(self) -> None:
        """Re-derive readiness, ``model/<name>`` and ``model/<name>/<version>`` after the served set changed."""
        await self.set_serving(True)
        repo = self.engine.repository
        if repo is None:
            return
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        now: dict[str, int] = {}
        for name in {*repo.models, *(n for n, _ in repo.pending)}:
            statuses = repo.statuses(name)
            now[f"model/{name}"] = serving if name in repo.models and not self._stopped else not_serving
            for version, st in statuses.items():
                now[f"model/{name}/{version}"] = serving if st.state == READY and not self._stopped else not_serving
        for gone in self._model_health - set(now):
            now[gone] = not_serving
        for service_name, status in now.items():
            await self.health.set(service_name, status)
        self._model_health |= set(now)
        self.metrics.served_versions.set(len(repo.all()))

    async def stop(self, grace_s: float | None = None) -> None:
        """Health NOT_SERVING, refuse new RPCs, let in-flight ones finish within grace, release everything."""
        if self._stopped:
            return
        self._stopped = True
        await self.set_serving(False)
        if self.control is not None:
            await self.control.close()
        grace = self.config.grace_s if grace_s is None else grace_s
        self.engine.draining = True  # HTTP answers 503 to readiness probes and new requests
        stops = [self.grpc_server.stop(grace)]
        if self.http is not None:
            stops.append(self.http.stop())
        await asyncio.gather(*stops)
        await self.engine.close()
        if self.metrics_listener is not None:
            await self.metrics_listener.stop()

    async def wait_for_termination(self) -> None:
        await self.grpc_server.wait_for_termination()


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
        return None
    key = Path(config.tls_key).read_bytes()
    cert = Path(config.tls_cert).read_bytes()
    ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def grpc_options(config: ServerConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # only the workers of one supervisor share a port; a lone server must own its port
        ("grpc.so_reuseport", 1 if config.reuse_port else 0),
    ]


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    """Bind the gRPC port (PortInUse with one clear line when another process holds it)."""
    address = config.address
    if not config.reuse_port:
        require_free(config.host, config.port, grpc_port_message(config.host, config.port))
    creds = _credentials(config)
    try:
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    except RuntimeError as e:  # grpcio >= 1.50 raises instead of returning 0
        raise PortInUse(f"{grpc_port_message(config.host, config.port)} ({e})") from None
    if port == 0:
        raise PortInUse(grpc_port_message(config.host, config.port))
    return port


def v1_guards(config: ServerConfig) -> dict[str, WireGuard]:
    """The limits of the v1 requests, checked on their bytes before they are parsed."""
    images = {"png": {"images": config.max_request_items}, "tensor": {"shape": 8}}
    latents = {"shape": 8}
    specs = {
        "Encode": (pb.EncodeRequest, {"images": images}),
        "Reconstruct": (pb.ReconstructRequest, {"images": images}),
        "Decode": (pb.DecodeRequest, {"latents": latents}),
        "Traverse": (pb.TraverseRequest, {"images": images, "latents": latents, "dimensions": MAX_TRAVERSE_TARGETS,
                                          "factors": MAX_TRAVERSE_TARGETS}),
        "EditAttributes": (pb.EditAttributesRequest, {"images": images, "latents": latents, "edits": MAX_EDITS}),
        "Generate": (pb.GenerateRequest, {"pins": MAX_EDITS}),
    }
    return {name: WireGuard(message.DESCRIPTOR, spec) for name, (message, spec) in specs.items()}


def oip_guards(config: ServerConfig) -> dict[str, WireGuard]:
    """The limits of ModelInfer, checked on its bytes: tensors, shapes, parameters, typed contents."""
    from latentdial.inference import grpc_service_pb2 as oip_pb
    from latentdial.serving.oip import MAX_TENSORS

    values = config.max_message_bytes // 4  # a typed content's entries: what the message could hold as FP32
    contents = {name: values for name in ("bool_contents", "int_contents", "int64_contents", "uint_contents",
                                          "uint64_contents", "fp32_contents", "fp64_contents")}
    contents["bytes_contents"] = MAX_TENSORS
    spec = {
        "inputs": (MAX_TENSORS, {"shape": 8 * MAX_TENSORS, "parameters": 64, "contents": contents}),
        "outputs": (MAX_TENSORS, {"parameters": 64}),
        "raw_input_contents": MAX_TENSORS,
        "parameters": 64,
    }
    return {"ModelInfer": WireGuard(oip_pb.ModelInferRequest.DESCRIPTOR, spec)}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warn_about_plaintext(config: ServerConfig) -> None:
    """One warning line per port whose bearer token would cross the network in plain text."""
    if not config.token:
        return
    plain = []
    if not config.tls and not _loopback(config.host):
        plain.append(f"gRPC{' and HTTP' if config.http else ''} on {config.host}")
    elif config.tls and config.http and config.http_plaintext and not _loopback(config.host):
        plain.append(f"HTTP on {config.host} (http_plaintext)")
    if config.metrics_port and not config.http_tls and not _loopback(config.metrics_host):
        plain.append(f"metrics on {config.metrics_host}")
    if plain:
        log.warning("the bearer token travels in plain text to %s; serve TLS (--tls-cert, --tls-key) "
                    "or bind to 127.0.0.1", ", ".join(plain))


async def create_server(config: ServerConfig, *, metrics: ServiceMetrics | None = None) -> tuple[LatentDialServer, int]:
    """Build, bind, start, load models, warm up and report SERVING. Returns (server, bound port)."""
    metrics = metrics or ServiceMetrics()
    check_tls_files(config)
    _warn_about_plaintext(config)
    interceptors = [BearerTokenInterceptor(config.token)] if config.token else []
    server = grpc.aio.server(interceptors=interceptors, options=grpc_options(config))
    engine = Engine(config, metrics)
    service = LatentDialService(engine)
    # each request's repeated fields are counted on the wire before protobuf parses them (wire_guard.py)
    add_guarded(pb_grpc.add_LatentDialServicer_to_server, service, server, v1_guards(config))
    add_guarded(oip_pb_grpc.add_GRPCInferenceServiceServicer_to_server, InferenceService(engine), server,
                oip_guards(config))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, OIP_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    handle = LatentDialServer(server, engine, service, health_servicer, config, metrics)
    await handle.set_serving(False)
    await health_servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    # Both ports are taken before anything starts, so a busy one fails with one line and nothing to undo.
    metrics_sock = None
    try:
        port = _bind(server, config)
        if config.metrics_port:
            metrics_sock = bind(config.metrics_host, config.metrics_port, reuse_port=False,
                                message=metrics_port_message(config.metrics_host, config.metrics_port))
    except BaseException:
        await server.stop(None)
        engine.runtime_threads.shutdown(wait=False)
        raise
    handle.port = port
    if metrics_sock is not None:
        handle.metrics_listener = UvicornListener(metrics.asgi_app(config.token), metrics_sock, config, name="metrics")
    await server.start()
    try:
        if handle.metrics_listener is not None:
            handle.metrics_port = await handle.metrics_listener.start()
        if config.http:
            handle.http = HttpFrontDoor(engine, config)
            await handle.http.start(config.host, config.http_port)
        repo = await engine.load()
    except BaseException:
        await handle.stop(0)
        raise
    for name, reason in repo.failed.items():
        log.error("model %s is not served: %s", name, reason)
        metrics.model_load_failures.labels(name.partition("/")[0]).inc()
    if not repo.all():
        log.error("no model version is servable: readiness stays NOT_SERVING (liveness is SERVING)")
    if config.model_control != "none":
        handle.control = engine.control = ModelControl(engine, config, metrics, handle.refresh_health)
        if config.model_control == "poll":
            handle.control.start_polling()
    await handle.refresh_health()
    return handle, port


async def serve(config: ServerConfig, *, on_ready: Callable[[LatentDialServer, int], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT; drain gracefully; return the exit code."""
    handle, port = await create_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready:
        on_ready(handle, port)
    await stop.wait()
    log.info("draining: health NOT_SERVING, finishing in-flight requests (grace %.1f s)", config.grace_s)
    await handle.stop()
    log.info("stopped")
    return 0
