"""Locust load test of the latentdial gRPC API.

    locust -f loadtest/locustfile.py --host 127.0.0.1:50051              # web UI on :8089
    python loadtest/run_headless.py --users 8 --run-time 20s --out reports/  # bounded, CI

Each simulated user holds one gRPC channel and loops over a weighted mix of Encode,
Decode, Traverse and EditAttributes (see workload.py). Every call fires one Locust
request event named after the RPC (request_type "grpc"); a failed call is reported with
its status code name (e.g. ``RESOURCE_EXHAUSTED: queue full``), so Locust's failure table
groups by code.

Environment: LATENTDIAL_TOKEN (bearer token), LATENTDIAL_MODEL (model name; default the
repository's default model), LOADTEST_TIMEOUT_S (per-call deadline, default 10),
LOADTEST_SUMMARY_JSON (where to write the final per-RPC summary; run_headless.py reads it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# gRPC's C core must cooperate with gevent's event loop before any channel exists.
import grpc
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import numpy as np
from locust import User, between, events, task
from locust.exception import StopUser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import TASK_WEIGHTS, Workload, auth_metadata

from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

TIMEOUT_S = float(os.environ.get("LOADTEST_TIMEOUT_S", "10"))
_WORKLOAD: Workload | None = None


class RpcFailure(Exception):
    """A failed RPC; the message starts with the gRPC status code name."""


def _target(host: str | None) -> str:
    if not host:
        raise ValueError("give the server as --host 127.0.0.1:50051")
    return host.removeprefix("grpc://").removeprefix("http://").rstrip("/")


def _workload(stub: pb_grpc.LatentDialStub, metadata: tuple) -> Workload:
    """The shared request builder (image pool rendered once per Locust process)."""
    global _WORKLOAD
    if _WORKLOAD is None:
        info = stub.GetModelInfo(
            pb.GetModelInfoRequest(model=pb.ModelRef(name=os.environ.get("LATENTDIAL_MODEL", ""))),
            timeout=TIMEOUT_S, metadata=metadata,
        )
        _WORKLOAD = Workload.for_model(info, pool_size=256, seed=os.getpid())
    return _WORKLOAD


class LatentDialUser(User):
    """One client: a channel, a stub and the weighted task mix."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        # Own TCP connection per user (gRPC shares subchannels between equal channels by
        # default), so that users spread over SO_REUSEPORT workers like separate clients.
        self.channel = grpc.insecure_channel(
            _target(self.host), options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.stub = pb_grpc.LatentDialStub(self.channel)
        self.metadata = auth_metadata(os.environ.get("LATENTDIAL_TOKEN"))
        self.rng = np.random.default_rng()
        start = time.perf_counter()
        try:
            self.workload = _workload(self.stub, self.metadata)
        except grpc.RpcError as e:
            self._fire("GetModelInfo", start, 0, RpcFailure(f"{e.code().name}: {e.details()}"))
            raise StopUser() from e
        self.builders = self.workload.builders()

    def on_stop(self) -> None:
        self.channel.close()

    def call(self, rpc: str) -> None:
        """Send one request of kind ``rpc`` and fire exactly one request event."""
        request = self.builders[rpc](self.rng)
        method = getattr(self.stub, rpc)
        start = time.perf_counter()
        length, exception = 0, None
        try:
            reply = method(request, timeout=TIMEOUT_S, metadata=self.metadata)
            length = reply.ByteSize()
        except grpc.RpcError as e:
            exception = RpcFailure(f"{e.code().name}: {(e.details() or '')[:160]}")
        self._fire(rpc, start, length, exception)

    def _fire(self, name: str, start: float, length: int, exception: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )

    @task(TASK_WEIGHTS["Encode"])
    def encode(self) -> None:
        self.call("Encode")

    @task(TASK_WEIGHTS["Decode"])
    def decode(self) -> None:
        self.call("Decode")

    @task(TASK_WEIGHTS["Traverse"])
    def traverse(self) -> None:
        self.call("Traverse")

    @task(TASK_WEIGHTS["EditAttributes"])
    def edit(self) -> None:
        self.call("EditAttributes")


def summary(stats) -> dict:
    """Final per-RPC figures plus the "Aggregated" row and the failures by message."""
    rows = []
    for e in [*sorted(stats.entries.values(), key=lambda e: e.name), stats.total]:
        rows.append({
            "name": e.name,
            "requests": e.num_requests,
            "failures": e.num_failures,
            "p50_ms": e.get_response_time_percentile(0.50),
            "p95_ms": e.get_response_time_percentile(0.95),
            "p99_ms": e.get_response_time_percentile(0.99),
            "max_ms": e.max_response_time,
            "rps": e.total_rps,
        })
    errors = {f"{err.name}: {err.error}": err.occurrences for err in stats.errors.values()}
    return {"rows": rows, "errors": errors}


@events.quitting.add_listener
def _write_summary(environment, **_kwargs) -> None:
    """Write the final figures before Locust shuts down (its CSV lags by up to 2 s)."""
    path = os.environ.get("LOADTEST_SUMMARY_JSON")
    if path:
        Path(path).write_text(json.dumps(summary(environment.stats), indent=2) + "\n")
