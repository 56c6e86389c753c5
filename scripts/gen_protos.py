"""Generate the Python gRPC stubs of protos/ into latentdial/v1/ and latentdial/inference/.

protos/latentdial/v1/ is latentdial's own API. protos/inference/grpc_service.proto is the
Open Inference Protocol, whose proto package must stay ``inference`` (the wire name of its
service); protoc maps it to the virtual path latentdial/inference/ so its stubs import as
``latentdial.inference`` instead of a top-level ``inference`` package.

The generated files are committed; tests/core/test_protos.py regenerates them into a
temporary directory and fails when they differ, so the .proto stays the one
source of truth. Run `make protos` after editing a .proto file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PROTO_FILES = sorted(PROTO_ROOT.glob("latentdial/v1/*.proto"))
OIP_DIR = PROTO_ROOT / "inference"
OIP_FILES = sorted(OIP_DIR.glob("*.proto"))
#: where each set of stubs lands under the output root
STUB_DIRS = ("latentdial/v1", "latentdial/inference")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on every .proto; return the stub files written."""
    from grpc_tools import protoc  # dev dependency, pinned in pyproject.toml

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-Ilatentdial/inference={OIP_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p) for p in PROTO_FILES],
        *[f"latentdial/inference/{p.name}" for p in OIP_FILES],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted(p for d in STUB_DIRS for p in (out_dir / d).glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo root)")
    written = generate(parser.parse_args().out)
    for path in written:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
