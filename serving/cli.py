"""``latentdial serve``: serve a model repository over gRPC.

Every ServerConfig field is a flag (``--max-batch-size 64``) and an environment
variable (``LATENTDIAL_MAX_BATCH_SIZE=64``); the flag wins. Prints the address,
the models with their runtimes, and a line starting with ``ready`` once health
reports SERVING. Standard library only at import time.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from latentdial.serving.config import add_config_arguments

    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from latentdial.serving.config import config_from_sources

    try:
        config = config_from_sources(args)
    except ValueError as e:
        print(f"latentdial serve: {e}", file=sys.stderr)
        return 2
    from latentdial.serving.ports import PortInUse

    if config.workers > 1:
        from latentdial.serving.supervisor import run_workers

        try:
            return int(run_workers(config, config.workers))
        except PortInUse as e:
            print(f"latentdial serve: {e}", file=sys.stderr)
            return 2

    import asyncio

    from latentdial.serving.server import serve
    from latentdial.serving.structured_log import configure_logging

    configure_logging(config.log_format)

    def on_ready(handle, port: int) -> None:
        scheme = "grpcs" if config.tls_cert else "grpc"
        print(f"latentdial serving on {scheme}://{config.host}:{port}", flush=True)
        repo = handle.engine.repository
        for m in repo.all():
            default = " (default)" if m.name == repo.default else ""
            print(f"  model {m.name}/{m.version}{default}: {m.describe()}", flush=True)
        for name, reason in repo.failed.items():
            print(f"  NOT SERVED {name}: {reason}", flush=True)
        from latentdial.serving.listener import scheme

        web = scheme(config)
        if handle.http is not None:
            print(f"  http on {web}://{config.host}:{handle.http.port}/ (slider page; REST /v1, OIP v2 /v2, /docs)",
                  flush=True)
        if handle.metrics_port:
            print(f"  metrics on {web}://{config.metrics_host}:{handle.metrics_port}/metrics", flush=True)
        guards = [g for g, on in (("bearer token", config.token), ("TLS", config.tls),
                                  ("client certificates", config.tls_client_ca)) if on]
        plain = " (HTTP and metrics in plain text: http_plaintext)" if config.tls and config.http_plaintext else ""
        print(f"  guarded by {', '.join(guards) if guards else 'nothing (no token, no TLS)'}{plain}; "
              f"at most {config.max_in_flight} requests in flight, {config.request_timeout_s:g} s deadline by default",
              flush=True)
        if config.model_control == "poll":
            print(f"  model control poll: {config.repository} scanned every {config.poll_interval_s:g} s", flush=True)
        elif config.model_control == "explicit":
            print("  model control explicit: LoadModel / UnloadModel change what is served", flush=True)
        wait = "adaptive" if config.adaptive_batching else f"waits up to {config.max_queue_delay_ms} ms"
        batching = f"batching on (max batch {config.max_batch_size}, {wait})" if config.batching else "batching off"
        servable = "" if repo.all() else "; readiness NOT_SERVING until a model version loads"
        print(f"ready: {len(repo.all())} model version(s), {batching}{servable}", flush=True)

    from latentdial.serving.listener import TlsFilesError

    try:
        return asyncio.run(serve(config, on_ready=on_ready))
    except (PortInUse, TlsFilesError) as e:
        print(f"latentdial serve: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"latentdial serve: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
