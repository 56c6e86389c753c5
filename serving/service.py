"""The latentdial v1 gRPC front door: every RPC of ``protos/latentdial/v1/latentdial.proto``.

An adapter over :class:`~latentdial.serving.engine.Engine`: each handler reads its
request message into numpy with :mod:`codec`, calls the engine and writes the
response message. Errors are :class:`ServiceError` subclasses mapped to status
codes; anything unexpected arrives from :meth:`Engine.call` as INTERNAL with a
request id and no trace.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from latentdial.serving import codec
from latentdial.serving.dataplane import DataPlane
from latentdial.serving.edits import CheckedEdit, check_edit_count, check_traversal
from latentdial.serving.engine import Engine, ServedModel
from latentdial.serving.errors import FailedPrecondition, InvalidArgument
from latentdial.serving.grpc_call import rpc
from latentdial.serving.repository import DRAINING, FAILED, LOADING, READY
from latentdial.serving.requests import (
    DEFAULT_TRAVERSE_STEPS,
    EditRequest,
    EncodeRequest,
    GenerateRequest,
    ModelRef,
    ReconstructRequest,
    Source,
    TraverseRequest,
    edit_of,
    pin_of,
)
from latentdial.serving.results import Decoded, FactorInfo, VersionState
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_KINDS = {
    "continuous": pb.FACTOR_KIND_CONTINUOUS,
    "categorical": pb.FACTOR_KIND_CATEGORICAL,
    "circular": pb.FACTOR_KIND_CIRCULAR,
}
_MODEL_KINDS = {"vae": pb.MODEL_KIND_VAE, "editor": pb.MODEL_KIND_EDITOR}
_VERSION_STATES = {
    LOADING: pb.VERSION_STATE_LOADING, READY: pb.VERSION_STATE_READY,
    DRAINING: pb.VERSION_STATE_DRAINING, FAILED: pb.VERSION_STATE_FAILED,
}


class LatentDialService(pb_grpc.LatentDialServicer):
    """latentdial.v1.LatentDial over an :class:`Engine`: proto in, typed request, data plane, proto out."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.plane = DataPlane(engine)

    # ---------------------------------------------------------------- helpers
    def _served(self, ref: pb.ModelRef, call: str) -> ServedModel:
        """The model version ``call`` runs on; FailedPrecondition before anything is read when its kind
        does not serve ``call`` (an editor serves EditAttributes on images only)."""
        return self.plane.served(ModelRef(ref.name, ref.version), call)

    def _images(self, s: ServedModel, batch: pb.ImageBatch, what: str = "images") -> np.ndarray:
        return codec.images_from_batch(batch, s.model.image_shape, self.engine.max_request_items, what)

    def _latents(self, s: ServedModel, t: pb.Tensor, what: str = "latents") -> np.ndarray:
        return codec.latents_from_tensor(t, s.model.latent_dim, self.engine.max_request_items, what)

    def _source(self, s: ServedModel, request) -> Source:
        kind = request.WhichOneof("source")
        if kind == "images":
            return Source(images=self._images(s, request.images))
        if kind == "latents":
            return Source(latents=self._latents(s, request.latents))
        raise InvalidArgument("no source; set images or latents")

    @staticmethod
    def _ref(ref: ModelRef) -> pb.ModelRef:
        return pb.ModelRef(name=ref.name, version=ref.version)

    def _decoded(self, d: Decoded, output_format: int) -> dict:
        """The ``model``, ``images`` and ``latents`` fields of a response."""
        return {"model": self._ref(d.model), "images": codec.batch_from_images(d.images, output_format),
                "latents": codec.array_to_tensor(d.latents)}

    # ------------------------------------------------------------------- RPCs
    @rpc("ListModels")
    async def ListModels(self, request, context):
        return pb.ListModelsResponse(
            models=[
                pb.ModelSummary(
                    name=m.name, versions=m.versions, latest_version=m.latest_version, is_default=m.is_default,
                    version_status=_states_proto(m.version_states),
                    default_version=m.default_version, kind=_MODEL_KINDS[m.kind],
                )
                for m in self.plane.list_models()
            ]
        )

    @rpc("LoadModel", deadline=False)
    async def LoadModel(self, request, context):
        m = await self._control().load(request.model.name, request.model.version)
        return pb.LoadModelResponse(model=pb.ModelRef(name=m.name, version=m.version))

    @rpc("UnloadModel", deadline=False)
    async def UnloadModel(self, request, context):
        name = request.model.name
        versions = await self._control().unload(name, request.model.version)
        return pb.UnloadModelResponse(unloaded=[pb.ModelRef(name=name, version=v) for v in versions])

    def _control(self):
        control = self.engine.control
        if control is None or control.mode != "explicit":
            mode = control.mode if control is not None else "none"
            raise FailedPrecondition(
                f"the server runs with --model-control {mode}; start it with --model-control explicit "
                "to load and unload models through LoadModel / UnloadModel"
            )
        return control

    @rpc("GetModelInfo")
    async def GetModelInfo(self, request, context):
        info = self.plane.model_info(ModelRef(request.model.name, request.model.version))
        b = info.batching
        return pb.ModelInfo(
            model=self._ref(info.model), channels=info.channels, height=info.height, width=info.width,
            latent_dim=info.latent_dim, factors=[_factor_proto(f) for f in info.factors], metrics=info.metrics,
            runtime=info.runtime,
            batching=pb.BatchingInfo(max_batch_size=b.max_batch_size, max_queue_delay_ms=b.max_queue_delay_ms,
                                     max_queue_size=b.max_queue_size, enabled=b.enabled),
            provenance={k: v if isinstance(v, str) else json.dumps(v) for k, v in info.provenance.items()},
            max_request_items=info.max_request_items, version_status=_states_proto(info.version_states),
            kind=_MODEL_KINDS[info.kind],
        )

    @rpc("Encode")
    async def Encode(self, request, context):
        s = self._served(request.model, "Encode")
        r = await self.plane.encode(s, EncodeRequest(self._images(s, request.images), request.sample, request.seed))
        resp = pb.EncodeResponse(
            model=self._ref(r.model), mean=codec.array_to_tensor(r.mean), log_var=codec.array_to_tensor(r.log_var)
        )
        if r.sample is not None:
            resp.sample.CopyFrom(codec.array_to_tensor(r.sample))
        return resp

    @rpc("Decode")
    async def Decode(self, request, context):
        s = self._served(request.model, "Decode")
        codec.check_output_format(request.output_format)
        d = await self.plane.decode(s, self._latents(s, request.latents))
        return pb.DecodeResponse(model=self._ref(d.model), images=codec.batch_from_images(d.images, request.output_format))

    @rpc("Reconstruct")
    async def Reconstruct(self, request, context):
        s = self._served(request.model, "Reconstruct")
        codec.check_output_format(request.output_format)
        r = ReconstructRequest(self._images(s, request.images), request.sample, request.seed)
        return pb.ReconstructResponse(**self._decoded(await self.plane.reconstruct(s, r), request.output_format))

    @rpc("Traverse")
    async def Traverse(self, request, context):
        s = self._served(request.model, "Traverse")
        codec.check_output_format(request.output_format)
        if request.WhichOneof("source") is None:
            raise InvalidArgument("no source; set images or latents")
        steps = request.steps or DEFAULT_TRAVERSE_STEPS
        # the lists' sizes before anything is copied out of the message
        check_traversal(len(request.dimensions), len(request.factors), steps)
        t = await self.plane.traverse(s, TraverseRequest(
            self._source(s, request), dims=list(request.dimensions), factors=list(request.factors),
            start=request.start if request.HasField("start") else None,
            stop=request.stop if request.HasField("stop") else None, steps=steps,
        ))
        return pb.TraverseResponse(
            model=self._ref(t.model), images=codec.batch_from_images(t.images, request.output_format),
            num_sources=t.num_sources, num_targets=len(t.plan.targets), steps=t.steps, targets=t.plan.targets,
            values=codec.array_to_tensor(t.plan.values),
        )

    @rpc("EditAttributes")
    async def EditAttributes(self, request, context):
        s = self._served(request.model, "EditAttributes")
        codec.check_output_format(request.output_format)
        check_edit_count(len(request.edits))  # before converting thousands of messages
        edits = [_edit_from_proto(e, i) for i, e in enumerate(request.edits)]
        d = await self.plane.edit(s, EditRequest(self._source(s, request), edits))
        return pb.EditAttributesResponse(**self._decoded(d, request.output_format))

    @rpc("Generate")
    async def Generate(self, request, context):
        s = self._served(request.model, "Generate")
        codec.check_output_format(request.output_format)
        temperature = request.temperature if request.HasField("temperature") else 1.0
        check_edit_count(len(request.pins), "pins")
        pins = [_pin_from_proto(p, i) for i, p in enumerate(request.pins)]
        d = await self.plane.generate(s, GenerateRequest(request.count, request.seed, temperature, pins))
        return pb.GenerateResponse(**self._decoded(d, request.output_format))


def _factor_proto(f: FactorInfo) -> pb.FactorInfo:
    return pb.FactorInfo(name=f.name, kind=_KINDS[f.kind], dimensions=f.dims, min_value=f.min_value,
                         max_value=f.max_value, values=f.values, labels=f.labels, calibrated=f.calibrated)


def _states_proto(states: list[VersionState]) -> list[pb.VersionStatus]:
    return [pb.VersionStatus(version=v.version, state=_VERSION_STATES[v.state], reason=v.reason) for v in states]


def _target(msg) -> tuple[str | None, int | None]:
    kind = msg.WhichOneof("target")
    return (msg.factor if kind == "factor" else None), (msg.dimension if kind == "dimension" else None)


def _edit_from_proto(e: pb.FactorEdit, i: int) -> CheckedEdit:
    op = e.WhichOneof("operation")
    return edit_of(*_target(e), {op: getattr(e, op)} if op else {}, f"edits[{i}]")


def _pin_from_proto(p: pb.FactorPin, i: int) -> CheckedEdit:
    kind = p.WhichOneof("pinned")
    return pin_of(*_target(p), {kind: getattr(p, kind)} if kind else {}, f"pins[{i}]")
