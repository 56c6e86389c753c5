"""The Open Inference Protocol v2 gRPC front door: ``inference.GRPCInferenceService``.

Served on the same port as ``latentdial.v1.LatentDial``, through the same engine: the same
batchers (an OIP ModelInfer and a v1 Encode of one graph merge into one batch), validation,
limits, auth, metrics and drain. Inputs may come as ``raw_input_contents`` or as typed
``contents``; outputs always go back raw. Model naming and tensors: :mod:`oip`.
"""

from __future__ import annotations

import numpy as np

from latentdial.inference import grpc_service_pb2 as pb
from latentdial.inference import grpc_service_pb2_grpc as pb_grpc
from latentdial.serving import oip
from latentdial.serving.engine import Engine
from latentdial.serving.errors import FailedPrecondition, InvalidArgument, NotFound
from latentdial.serving.grpc_call import rpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
#: OIP RPCs that answer without a token, like the gRPC health service (load balancers probe them)
OPEN_METHODS = (f"/{SERVICE_NAME}/ServerLive", f"/{SERVICE_NAME}/ServerReady")

#: typed-contents field of InferTensorContents for each datatype (the protocol's table)
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}


def _inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    oip.check_tensor_count(len(request.inputs), "inputs")
    oip.check_tensor_count(len(request.raw_input_contents), "raw_input_contents")
    oip.check_tensor_count(len(request.outputs), "outputs")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send one per input"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, t in enumerate(request.inputs):
        what = f"input {t.name!r}"
        if t.name in arrays:
            raise InvalidArgument(f"{what} is given twice")
        if len(t.shape) > 8:
            raise InvalidArgument(f"{what}: shape has {len(t.shape)} dims, more than 8")
        if raw:
            if t.HasField("contents"):
                raise InvalidArgument(f"{what}: send raw_input_contents or typed contents, not both")
            arrays[t.name] = oip.array_from_bytes(raw[i], t.datatype, list(t.shape), what)
            continue
        field = _CONTENTS_FIELD.get(t.datatype)
        if field is None:
            raise InvalidArgument(f"{what}: datatype {t.datatype!r} has no typed contents; send it raw")
        values = getattr(t.contents, field)  # read once, into the tensor's own dtype: no list of Python numbers
        try:
            flat = np.fromiter(values, dtype=oip.DATATYPES[t.datatype], count=len(values))
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidArgument(f"{what}: contents are not {t.datatype} numbers ({e})") from None
        arrays[t.name] = oip.array_from_values(flat, t.datatype, list(t.shape), what)
    return arrays


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """inference.GRPCInferenceService over an :class:`Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.engine.ready)

    @rpc("oip.ModelReady")
    async def ModelReady(self, request, context):
        try:
            oip.resolve(self.engine, request.name, request.version)
        except (NotFound, FailedPrecondition):  # not served, or a graph this model's kind has not
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self.engine.ready)

    @rpc("oip.ServerMetadata")
    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=oip.SERVER_NAME, version=oip.server_version(), extensions=[])

    @rpc("oip.ModelMetadata")
    async def ModelMetadata(self, request, context):
        s, graph = oip.resolve(self.engine, request.name, request.version)
        inputs, outputs = oip.signature(s, graph)

        def meta(t: oip.TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
            return pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)

        return pb.ModelMetadataResponse(
            name=oip.oip_name(s, graph), versions=self.engine.repository.versions(s.name), platform=oip.PLATFORM,
            inputs=[meta(t) for t in inputs], outputs=[meta(t) for t in outputs],
        )

    @rpc("oip.ModelInfer")
    async def ModelInfer(self, request, context):
        s, graph = oip.resolve(self.engine, request.model_name, request.model_version)
        outputs = await oip.infer(self.engine, s, graph, _inputs(request), [o.name for o in request.outputs])
        resp = pb.ModelInferResponse(model_name=oip.oip_name(s, graph), model_version=s.version, id=request.id)
        for name, a in outputs.items():
            resp.outputs.add(name=name, datatype=oip.datatype_of(a), shape=a.shape)
            resp.raw_output_contents.append(a.tobytes())
        return resp
