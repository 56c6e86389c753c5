"""The serving core knows no transport and the front doors only translate (docs/architecture.md,
"Serving: one engine, several front doors"): checked on the source, and by importing the core alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SERVING = Path(__file__).resolve().parents[2] / "serving"

#: the transport-free core: requests in, results out, errors by kind
CORE = ("errors", "edits", "requests", "results", "dataplane", "auth", "engine", "batcher", "repository")
#: each front door, by the module that translates its wire format
DOORS = ("service", "oip_grpc", "http.rest_v1", "http.oip_rest", "http.page", "http.ops")
#: what a door may share with the doors of its own transport: glue, not a door
TRANSPORT_GLUE = ("grpc_call", "wire_guard", "http.call", "http.errors", "http.bodies", "http.media", "oip", "codec")
#: packages no core module may import
TRANSPORTS = ("grpc", "grpc_health", "grpc_reflection", "fastapi", "starlette", "pydantic", "uvicorn", "google.protobuf")


def _imports(module: str) -> set[str]:
    """Every module ``serving/<module>.py`` imports, absolute, with ``latentdial.serving.`` cut off."""
    path = SERVING / (module.replace(".", "/") + ".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m.removeprefix("latentdial.serving.") for m in found}


def _hits(imported: set[str], names: tuple[str, ...]) -> set[str]:
    return {m for m in imported for n in names if m == n or m.startswith(n + ".")}


def test_the_lists_name_every_serving_module_that_exists():
    for module in CORE + DOORS + TRANSPORT_GLUE:
        assert (SERVING / (module.replace(".", "/") + ".py")).is_file(), module


def test_no_door_imports_another_door():
    bad = {door: _hits(_imports(door), tuple(d for d in DOORS if d != door)) for door in DOORS}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_core_imports_no_transport_and_no_door():
    bad = {m: _hits(_imports(m), TRANSPORTS + DOORS + TRANSPORT_GLUE + ("http", "server", "listener"))
           for m in CORE}
    assert {k: v for k, v in bad.items() if v} == {}


def test_importing_the_core_loads_no_transport_at_all():
    """Transitively too: the core imported alone pulls in no gRPC, protobuf, FastAPI or pydantic."""
    code = (
        "import sys\n"
        f"for m in {CORE!r}:\n"
        "    __import__('latentdial.serving.' + m)\n"
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {TRANSPORTS!r} or k.startswith('google.protobuf')"
        " or k.endswith('_pb2')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
