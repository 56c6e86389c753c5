"""Prometheus metrics of the service, in a registry of its own (several servers may share a process).

The metrics port serves :meth:`ServiceMetrics.asgi_app` through :mod:`listener` (uvicorn on the
server's loop, the gRPC port's TLS, bound to ``metrics_host``, 127.0.0.1 by default), and asks
for the bearer token when the server has one, like every other route with data.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """Requests, failures by code, latency per RPC, queue time, batch sizes, in-flight requests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("latentdial_requests", "RPCs received", ["rpc"], registry=r)
        self.failures = Counter("latentdial_failures", "RPCs that failed, by status code", ["rpc", "code"], registry=r)
        self.latency = Histogram(
            "latentdial_request_seconds", "RPC latency", ["rpc"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_time = Histogram(
            "latentdial_queue_seconds", "time the oldest item of a batch waited", ["model", "graph"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "latentdial_batch_size", "items per runtime call", ["model", "graph"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.in_flight = Gauge("latentdial_in_flight_requests", "RPCs being handled", registry=r)
        self.model_load_failures = Counter(
            "latentdial_model_load_failures", "model versions refused (checksum, manifest, runtime)", ["model"],
            registry=r,
        )
        self.served_versions = Gauge("latentdial_served_versions", "model versions being served", registry=r)
        self._children: dict[str, tuple] = {}

    def rpc_children(self, rpc: str) -> tuple:
        """(requests counter, latency histogram) of ``rpc``, resolved once (labels() takes a lock)."""
        got = self._children.get(rpc)
        if got is None:
            got = self._children[rpc] = (self.requests.labels(rpc), self.latency.labels(rpc))
        return got

    def batch_observer(self, model: str, graph: str):
        """Callback for DynamicBatcher: (batch size, queue seconds) -> histograms."""
        size = self.batch_size.labels(model, graph)
        wait = self.queue_time.labels(model, graph)

        def observe(n: int, waited_s: float) -> None:
            size.observe(n)
            wait.observe(waited_s)

        return observe

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def asgi_app(self, token: str | None):
        """The metrics port's app: ``GET /metrics`` (with ``Authorization: Bearer <token>`` when a
        token is set: 401 otherwise), 404 for any other path."""
        from latentdial.serving.auth import TOKEN_HINT, bearer_ok

        async def app(scope, receive, send) -> None:
            if scope["type"] != "http":
                return
            status, kind, body, extra = 200, CONTENT_TYPE_LATEST, b"", []
            if scope["path"] != "/metrics":
                status, kind, body = 404, "text/plain", b"not found; metrics are at /metrics\n"
            elif scope["method"] not in ("GET", "HEAD"):
                status, kind, body = 405, "text/plain", b"use GET /metrics\n"
            elif token and not bearer_ok(dict(scope["headers"]).get(b"authorization"), token):
                status, kind, body = 401, "text/plain", (TOKEN_HINT + "\n").encode()
                extra = [(b"www-authenticate", b"Bearer")]
            else:
                body = generate_latest(self.registry)
            headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode()), *extra]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

        return app
