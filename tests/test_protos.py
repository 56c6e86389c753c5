"""The committed gRPC stubs are exactly what protos/ generates (one source of truth)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_stubs_match_what_the_proto_generates(tmp_path):
    written = _gen_module().generate(tmp_path)
    assert {p.name for p in written} == {
        "latentdial_pb2.py",
        "latentdial_pb2.pyi",
        "latentdial_pb2_grpc.py",
    }
    for fresh in written:
        committed = ROOT / "latentdial" / "v1" / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: run `make protos` after editing protos/"
        )


def test_service_declares_every_rpc_of_the_design():
    from latentdial.v1 import latentdial_pb2

    service = latentdial_pb2.DESCRIPTOR.services_by_name["LatentDial"]
    assert set(service.methods_by_name) == {
        "ListModels",
        "GetModelInfo",
        "Encode",
        "Decode",
        "Reconstruct",
        "Traverse",
        "EditAttributes",
        "Generate",
        "LoadModel",
        "UnloadModel",
    }
