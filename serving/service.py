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
from latentdial.serving.edits import Edit, check_edit_count, check_traversal, sample_posterior
from latentdial.serving.engine import (
    Decoded,
    Engine,
    ServedModel,
    Source,
    current_deadline,
)
from latentdial.serving.errors import FailedPrecondition, InvalidArgument
from latentdial.serving.grpc_call import rpc
from latentdial.serving.repository import DRAINING, FAILED, LOADING, READY
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_KINDS = {
    "continuous": pb.FACTOR_KIND_CONTINUOUS,
    "categorical": pb.FACTOR_KIND_CATEGORICAL,
    "circular": pb.FACTOR_KIND_CIRCULAR,
}
_PIN_OPS = {"value": "set_value", "latent": "set_latent", "label": "set_label"}
_VERSION_STATES = {
    LOADING: pb.VERSION_STATE_LOADING, READY: pb.VERSION_STATE_READY,
    DRAINING: pb.VERSION_STATE_DRAINING, FAILED: pb.VERSION_STATE_FAILED,
}


class LatentDialService(pb_grpc.LatentDialServicer):
    """latentdial.v1.LatentDial over an :class:`Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---------------------------------------------------------------- helpers
    def _served(self, ref: pb.ModelRef) -> ServedModel:
        return self.engine.served(ref.name, ref.version)

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
    def _ref(s: ServedModel) -> pb.ModelRef:
        return pb.ModelRef(name=s.name, version=s.version)

    def _decoded(self, s: ServedModel, d: Decoded, output_format: int) -> dict:
        """The ``model``, ``images`` and ``latents`` fields of a response."""
        return {"model": self._ref(s), "images": codec.batch_from_images(d.images, output_format),
                "latents": codec.array_to_tensor(d.latents)}

    # ------------------------------------------------------------------- RPCs
    @rpc("ListModels")
    async def ListModels(self, request, context):
        repo = self.engine.repository
        return pb.ListModelsResponse(
            models=[
                pb.ModelSummary(
                    name=name,
                    versions=repo.versions(name),
                    latest_version=repo.versions(name)[-1],
                    is_default=name == repo.default,
                    version_status=[
                        pb.VersionStatus(version=v, state=_VERSION_STATES[st.state], reason=st.reason)
                        for v, st in repo.statuses(name).items()
                    ],
                    default_version=(repo.default_version or "") if name == repo.default else "",
                )
                for name in repo.names()
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
        s = self._served(request.model)
        m = s.model
        c, h, w = m.image_shape
        factors = []
        for f in m.card.factors if m.card else []:
            lo, hi = f.value_range
            factors.append(
                pb.FactorInfo(
                    name=f.name, kind=_KINDS[f.kind], dimensions=f.dims, min_value=lo, max_value=hi,
                    values=f.values, labels=f.labels,
                )
            )
        b = s.encoder
        return pb.ModelInfo(
            model=self._ref(s), channels=c, height=h, width=w, latent_dim=m.latent_dim, factors=factors,
            metrics={k: float(v) for k, v in m.manifest.metrics.items()},
            runtime=m.runtime_name,
            batching=pb.BatchingInfo(
                max_batch_size=b.max_batch_size, max_queue_delay_ms=b.max_queue_delay_s * 1e3,
                max_queue_size=b.max_queue_size, enabled=b.enabled,
            ),
            provenance={k: v if isinstance(v, str) else json.dumps(v) for k, v in m.manifest.provenance.items()},
            max_request_items=self.engine.max_request_items,
        )

    @rpc("Encode")
    async def Encode(self, request, context):
        s = self._served(request.model)
        mean, log_var = await self.engine.encode(s, self._images(s, request.images), current_deadline())
        resp = pb.EncodeResponse(
            model=self._ref(s), mean=codec.array_to_tensor(mean), log_var=codec.array_to_tensor(log_var)
        )
        if request.sample:
            resp.sample.CopyFrom(codec.array_to_tensor(sample_posterior(mean, log_var, request.seed)))
        return resp

    @rpc("Decode")
    async def Decode(self, request, context):
        s = self._served(request.model)
        codec.check_output_format(request.output_format)
        images = await self.engine.decode(s, self._latents(s, request.latents), current_deadline())
        return pb.DecodeResponse(model=self._ref(s), images=codec.batch_from_images(images, request.output_format))

    @rpc("Reconstruct")
    async def Reconstruct(self, request, context):
        s = self._served(request.model)
        codec.check_output_format(request.output_format)
        d = await self.engine.reconstruct(s, self._images(s, request.images), sample=request.sample,
                                          seed=request.seed, deadline=current_deadline())
        return pb.ReconstructResponse(**self._decoded(s, d, request.output_format))

    @rpc("Traverse")
    async def Traverse(self, request, context):
        s = self._served(request.model)
        codec.check_output_format(request.output_format)
        if request.WhichOneof("source") is None:
            raise InvalidArgument("no source; set images or latents")
        # the lists' sizes before anything is copied out of the message
        check_traversal(len(request.dimensions), len(request.factors), request.steps or 10)
        t = await self.engine.traverse(
            s, self._source(s, request), dims=list(request.dimensions), factors=list(request.factors),
            start=request.start if request.HasField("start") else None,
            stop=request.stop if request.HasField("stop") else None,
            steps=request.steps or 10, deadline=current_deadline(),
        )
        return pb.TraverseResponse(
            model=self._ref(s), images=codec.batch_from_images(t.images, request.output_format),
            num_sources=t.num_sources, num_targets=len(t.plan.targets), steps=t.steps, targets=t.plan.targets,
            values=codec.array_to_tensor(t.plan.values),
        )

    @rpc("EditAttributes")
    async def EditAttributes(self, request, context):
        s = self._served(request.model)
        codec.check_output_format(request.output_format)
        check_edit_count(len(request.edits))  # before converting thousands of messages
        edits = [_edit_from_proto(e, i) for i, e in enumerate(request.edits)]
        d = await self.engine.edit(s, self._source(s, request), edits, current_deadline())
        return pb.EditAttributesResponse(**self._decoded(s, d, request.output_format))

    @rpc("Generate")
    async def Generate(self, request, context):
        s = self._served(request.model)
        codec.check_output_format(request.output_format)
        temperature = request.temperature if request.HasField("temperature") else 1.0
        check_edit_count(len(request.pins), "pins")
        pins = [_pin_from_proto(p, i) for i, p in enumerate(request.pins)]
        d = await self.engine.generate(s, request.count, seed=request.seed, temperature=temperature, pins=pins,
                                       deadline=current_deadline())
        return pb.GenerateResponse(**self._decoded(s, d, request.output_format))


def _target(msg, what: str) -> tuple[str | None, int | None]:
    kind = msg.WhichOneof("target")
    if kind == "factor":
        return msg.factor, None
    if kind == "dimension":
        return None, int(msg.dimension)
    raise InvalidArgument(f"{what}: no target; set factor or dimension")


def finite(v: float, what: str) -> float:
    """``v`` as a float, or InvalidArgument if it is NaN or infinite."""
    if not np.isfinite(v):
        raise InvalidArgument(f"{what}: value {v} is not finite")
    return float(v)


def _edit_from_proto(e: pb.FactorEdit, i: int) -> Edit:
    what = f"edits[{i}]"
    factor, dim = _target(e, what)
    op = e.WhichOneof("operation")
    if op is None:
        raise InvalidArgument(f"{what}: no operation; set one of set_value, shift, set_latent, set_label")
    value = e.set_label if op == "set_label" else finite(getattr(e, op), what)
    return Edit(factor, dim, op, value)


def _pin_from_proto(p: pb.FactorPin, i: int) -> Edit:
    what = f"pins[{i}]"
    factor, dim = _target(p, what)
    kind = p.WhichOneof("pinned")
    if kind is None:
        raise InvalidArgument(f"{what}: nothing pinned; set value, latent or label")
    value = p.label if kind == "label" else finite(getattr(p, kind), what)
    return Edit(factor, dim, _PIN_OPS[kind], value)
