"""The committed gRPC stubs are exactly what protos/ generates (one source of truth)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_stubs_match_what_the_proto_generates(tmp_path):
    written = _gen_module().generate(tmp_path)
    assert {str(p.relative_to(tmp_path)) for p in written} == {
        "latentdial/v1/latentdial_pb2.py",
        "latentdial/v1/latentdial_pb2.pyi",
        "latentdial/v1/latentdial_pb2_grpc.py",
        "latentdial/inference/grpc_service_pb2.py",
        "latentdial/inference/grpc_service_pb2.pyi",
        "latentdial/inference/grpc_service_pb2_grpc.py",
    }
    for fresh in written:
        committed = ROOT / fresh.relative_to(tmp_path)
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


def test_open_inference_protocol_names_and_numbers_are_the_specifications():
    """Clients written against the published OIP proto (tritonclient, KServe) need these exact names and numbers."""
    from latentdial.inference import grpc_service_pb2 as oip

    assert oip.DESCRIPTOR.package == "inference"
    service = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert {m.name for m in service.methods} == {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    }

    def numbers(message) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert numbers(oip.ModelInferRequest) == {
        "model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5, "outputs": 6,
        "raw_input_contents": 7,
    }
    assert numbers(oip.ModelInferRequest.InferInputTensor) == {
        "name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5,
    }
    assert numbers(oip.ModelInferResponse) == {
        "model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "outputs": 5, "raw_output_contents": 6,
    }
    assert numbers(oip.ModelMetadataResponse) == {"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5}
    assert numbers(oip.ModelMetadataResponse.TensorMetadata) == {"name": 1, "datatype": 2, "shape": 3}
    assert numbers(oip.InferTensorContents) == {
        "bool_contents": 1, "int_contents": 2, "int64_contents": 3, "uint_contents": 4, "uint64_contents": 5,
        "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8,
    }
    assert numbers(oip.InferParameter) == {
        "bool_param": 1, "int64_param": 2, "string_param": 3, "double_param": 4, "uint64_param": 5,
    }
