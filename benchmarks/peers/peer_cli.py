"""The command line every peer server shares: which graphs to serve, how, on which ports.

The harness (benchmarks/bench_peers.py) starts each peer server in its own virtual environment
with these flags, waits for the line ``ready`` on its stdout, and stops it with SIGTERM.
Standard library only (the peers' environments do not install latentdial).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

#: what a peer prints once it serves; matched anywhere in a line, because the server binary a
#: peer starts (PyTriton's tritonserver) writes to the same pipe and its half-written lines can
#: surround it
READY = "bench-peers: peer ready"


def announce_ready() -> None:
    print(READY, flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    """--model-dir, --model, --file GRAPH=FILE (repeatable), --session JSON, --grpc-port, --http-port."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--model", required=True, help="served as <model>.encoder and <model>.decoder")
    p.add_argument("--file", action="append", default=[], metavar="GRAPH=FILE",
                   help="the ONNX file of a graph, relative to --model-dir (encoder=encoder.onnx)")
    p.add_argument("--session", type=json.loads, default=None,
                   help='ONNX Runtime session options per graph as JSON, {"encoder": {...}, "decoder": {...}} '
                        "(default: latentdial's tuned serving options)")
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    return p


def files(args: argparse.Namespace) -> dict[str, str]:
    """graph -> file name from the repeated --file GRAPH=FILE flags."""
    out = dict(item.split("=", 1) for item in args.file)
    return out or {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}


def wait_for_sigterm() -> None:
    """Block the main thread until SIGTERM or SIGINT."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
