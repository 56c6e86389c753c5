"""Container health probe: asks a latentdial server's standard gRPC health service.

Exit status 0 when the service answers SERVING, 1 otherwise (not serving, unreachable,
timeout) — the contract of Docker's HEALTHCHECK and of Kubernetes exec probes.
Needs only ``grpcio`` and ``grpcio-health-checking`` (both in the ``serve`` extra).

    python healthcheck.py                       # 127.0.0.1:$LATENTDIAL_PORT (default 50051)
    python healthcheck.py --address 127.0.0.1:50051 --service latentdial.v1.LatentDial
    python healthcheck.py --tls-ca ca.pem --tls-cert client.pem --tls-key client.key
"""

from __future__ import annotations

import argparse
import os
import sys


def _credentials(args: argparse.Namespace):
    import grpc

    def read(path: str | None) -> bytes | None:
        return open(path, "rb").read() if path else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(args.tls_ca),
        private_key=read(args.tls_key),
        certificate_chain=read(args.tls_cert),
    )


def check(args: argparse.Namespace) -> int:
    """Return 0 if the server reports SERVING for ``args.service``, else 1 (with a reason on stderr)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if args.tls_ca or args.tls_cert:
        channel = grpc.secure_channel(args.address, _credentials(args))
    else:
        channel = grpc.insecure_channel(args.address)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout_s
            )
        except grpc.RpcError as e:
            print(f"unhealthy: {args.address}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {args.address} reports {status}", file=sys.stderr)
        return 1
    print(f"healthy: {args.address} reports {status}")
    return 0


def main(argv: list[str] | None = None) -> int:
    port = os.environ.get("LATENTDIAL_PORT", "50051")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default=f"127.0.0.1:{port}", help="host:port of the gRPC server")
    p.add_argument(
        "--service", default="", help="health service name; empty asks about the whole server"
    )
    p.add_argument("--timeout-s", type=float, default=2.0)
    p.add_argument("--tls-ca", default=os.environ.get("LATENTDIAL_HEALTHCHECK_TLS_CA"))
    p.add_argument("--tls-cert", default=os.environ.get("LATENTDIAL_HEALTHCHECK_TLS_CERT"))
    p.add_argument("--tls-key", default=os.environ.get("LATENTDIAL_HEALTHCHECK_TLS_KEY"))
    return check(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
