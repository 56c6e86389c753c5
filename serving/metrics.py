"""Prometheus metrics of the service, in a registry of its own (several servers may share a process)."""

from __future__ import annotations

import errno

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
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
        self._http = None
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

    def serve_http(self, port: int, host: str = "0.0.0.0") -> int:
        """Start the /metrics endpoint on ``port``; returns the port. PortInUse when another process holds it."""
        from latentdial.serving.ports import PortInUse, metrics_port_message

        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(metrics_port_message(host, port)) from None
            raise
        self._http = server
        return int(server.server_address[1])

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def text(self) -> str:
        return generate_latest(self.registry).decode()
