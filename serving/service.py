"""The LatentDial gRPC servicer: every RPC of ``protos/latentdial/v1/latentdial.proto``.

Handlers validate with :mod:`codec`, do latent math with :mod:`edits` and run
the graphs through one :class:`DynamicBatcher` per (model version, graph).
Errors are :class:`ServiceError` subclasses mapped to status codes; anything
unexpected is logged with the request id and answered INTERNAL without a trace.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from latentdial.serving import codec
from latentdial.serving.batcher import DynamicBatcher
from latentdial.serving.config import ServerConfig
from latentdial.serving.edits import Edit, apply_edits, generate_latents, sample_posterior, traverse
from latentdial.serving.errors import InvalidArgument, ServiceError, Unavailable
from latentdial.serving.metrics import ServiceMetrics
from latentdial.serving.repository import LoadedModel, ModelRepository
from latentdial.serving.structured_log import request_id

from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_KINDS = {
    "continuous": pb.FACTOR_KIND_CONTINUOUS,
    "categorical": pb.FACTOR_KIND_CATEGORICAL,
    "circular": pb.FACTOR_KIND_CIRCULAR,
}
_PIN_OPS = {"value": "set_value", "latent": "set_latent", "label": "set_label"}


def rpc(name: str):
    """Wrap a handler: request id, metrics, readiness check and error -> status code mapping."""

    def deco(fn):
        @functools.wraps(fn)
        async def wrapper(self: LatentDialService, request, context: grpc.aio.ServicerContext):
            rid = _request_id(context)
            token = request_id.set(rid)
            m = self.metrics
            requests, latency = m.rpc_children(name)
            requests.inc()
            m.in_flight.inc()
            t0 = time.perf_counter()
            code: grpc.StatusCode | None = None
            message = ""
            try:
                if self.repository is None:
                    raise Unavailable("the server is still loading models; retry shortly")
                return await fn(self, request, context)
            except ServiceError as e:
                code, message = e.code, e.message
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                log.exception("%s failed (request id %s)", name, rid)
                code = grpc.StatusCode.INTERNAL
                message = f"internal error in {name} (request id {rid}); the server log has the details"
            finally:
                m.in_flight.dec()
                latency.observe(time.perf_counter() - t0)
                if code is not None:
                    m.failures.labels(name, code.name).inc()
                request_id.reset(token)
            if code is grpc.StatusCode.INTERNAL:
                log.error("%s -> INTERNAL (request id %s)", name, rid)
            else:
                log.debug("%s -> %s: %s", name, code.name, message)
            context.set_trailing_metadata((("x-request-id", rid),))
            await context.abort(code, message)

        return wrapper

    return deco


_ID_PREFIX = uuid.uuid4().hex[:8]
_ID_COUNTER = itertools.count(1)


def _request_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's ``x-request-id``, or a new one unique to this process (prefix-counter)."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and value:
            return value[:64]
    return f"{_ID_PREFIX}-{next(_ID_COUNTER)}"


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining


class LatentDialService(pb_grpc.LatentDialServicer):
    """Holds the repository, the batchers and the executor that runs the graphs."""

    def __init__(self, config: ServerConfig, metrics: ServiceMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or ServiceMetrics()
        self.repository: ModelRepository | None = None
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="runtime")
        self._batchers: list[DynamicBatcher] = []

    # -------------------------------------------------------------- lifecycle
    async def load(self) -> ModelRepository:
        """Load and warm every model (in a thread), then attach the batchers."""
        c = self.config
        repo = await asyncio.get_running_loop().run_in_executor(
            None,
            functools.partial(
                ModelRepository.load, Path(c.repository), runtime=c.runtime, max_batch_size=c.max_batch_size
            ),
        )
        for m in repo.all():
            for graph, runtime in (("encoder", m.encoder), ("decoder", m.decoder)):
                b = DynamicBatcher(
                    runtime.run,
                    name=f"{m.name}/{m.version}/{graph}",
                    max_batch_size=m.max_batch[graph],
                    max_queue_delay_s=c.max_queue_delay_ms / 1e3,
                    max_queue_size=c.max_queue_size,
                    enabled=c.batching,
                    executor=self.executor,
                    observer=self.metrics.batch_observer(f"{m.name}/{m.version}", graph),
                )
                m.extras[graph] = b
                self._batchers.append(b)
        self.repository = repo
        return repo

    async def close(self) -> None:
        for b in self._batchers:
            await b.close()
        if self.repository is not None:
            self.repository.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- helpers
    def _model(self, ref: pb.ModelRef) -> LoadedModel:
        assert self.repository is not None
        return self.repository.get(ref.name, ref.version)

    def _images(self, m: LoadedModel, batch: pb.ImageBatch, what: str = "images") -> np.ndarray:
        return codec.images_from_batch(batch, m.image_shape, self.config.max_request_items, what)

    def _latents(self, m: LoadedModel, t: pb.Tensor, what: str = "latents") -> np.ndarray:
        return codec.latents_from_tensor(t, m.latent_dim, self.config.max_request_items, what)

    async def _encode(self, m: LoadedModel, x: np.ndarray, deadline: float | None) -> tuple[np.ndarray, np.ndarray]:
        out = await m.extras["encoder"].submit({"images": x}, deadline=deadline)
        return out["mean"], out["log_var"]

    async def _decode(self, m: LoadedModel, z: np.ndarray, deadline: float | None) -> np.ndarray:
        out = await m.extras["decoder"].submit({"latents": np.ascontiguousarray(z, np.float32)}, deadline=deadline)
        return out["images"]

    async def _source_latents(self, m: LoadedModel, request, context) -> np.ndarray:
        kind = request.WhichOneof("source")
        if kind == "images":
            return (await self._encode(m, self._images(m, request.images), _deadline(context)))[0]
        if kind == "latents":
            return self._latents(m, request.latents)
        raise InvalidArgument("no source; set images or latents")

    @staticmethod
    def _ref(m: LoadedModel) -> pb.ModelRef:
        return pb.ModelRef(name=m.name, version=m.version)

    async def _decoded(self, m: LoadedModel, z: np.ndarray, output_format: int, deadline: float | None) -> dict:
        """Decode latents z (N, D); the ``model``, ``images`` and ``latents`` fields of the response."""
        images = await self._decode(m, z, deadline)
        return {"model": self._ref(m), "images": codec.batch_from_images(images, output_format),
                "latents": codec.array_to_tensor(z)}

    # ------------------------------------------------------------------- RPCs
    @rpc("ListModels")
    async def ListModels(self, request, context):
        repo = self.repository
        return pb.ListModelsResponse(
            models=[
                pb.ModelSummary(
                    name=name,
                    versions=repo.versions(name),
                    latest_version=repo.versions(name)[-1],
                    is_default=name == repo.default,
                )
                for name in repo.names()
            ]
        )

    @rpc("GetModelInfo")
    async def GetModelInfo(self, request, context):
        m = self._model(request.model)
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
        b = m.extras["encoder"]
        return pb.ModelInfo(
            model=self._ref(m), channels=c, height=h, width=w, latent_dim=m.latent_dim, factors=factors,
            metrics={k: float(v) for k, v in m.manifest.metrics.items()},
            runtime=m.runtime_name,
            batching=pb.BatchingInfo(
                max_batch_size=b.max_batch_size, max_queue_delay_ms=b.max_queue_delay_s * 1e3,
                max_queue_size=b.max_queue_size, enabled=b.enabled,
            ),
            provenance={k: v if isinstance(v, str) else json.dumps(v) for k, v in m.manifest.provenance.items()},
            max_request_items=self.config.max_request_items,
        )

    @rpc("Encode")
    async def Encode(self, request, context):
        m = self._model(request.model)
        mean, log_var = await self._encode(m, self._images(m, request.images), _deadline(context))
        resp = pb.EncodeResponse(
            model=self._ref(m), mean=codec.array_to_tensor(mean), log_var=codec.array_to_tensor(log_var)
        )
        if request.sample:
            resp.sample.CopyFrom(codec.array_to_tensor(sample_posterior(mean, log_var, request.seed)))
        return resp

    @rpc("Decode")
    async def Decode(self, request, context):
        m = self._model(request.model)
        codec.check_output_format(request.output_format)
        images = await self._decode(m, self._latents(m, request.latents), _deadline(context))
        return pb.DecodeResponse(model=self._ref(m), images=codec.batch_from_images(images, request.output_format))

    @rpc("Reconstruct")
    async def Reconstruct(self, request, context):
        m = self._model(request.model)
        codec.check_output_format(request.output_format)
        deadline = _deadline(context)
        mean, log_var = await self._encode(m, self._images(m, request.images), deadline)
        z = sample_posterior(mean, log_var, request.seed) if request.sample else mean
        return pb.ReconstructResponse(**await self._decoded(m, z, request.output_format, deadline))

    @rpc("Traverse")
    async def Traverse(self, request, context):
        m = self._model(request.model)
        codec.check_output_format(request.output_format)
        steps = request.steps or 10
        start = request.start if request.HasField("start") else None
        stop = request.stop if request.HasField("stop") else None
        if request.WhichOneof("source") is None:
            raise InvalidArgument("no source; set images or latents")
        # validate the plan before spending compute on the source
        probe = np.zeros((1, m.latent_dim), np.float32)
        _, plan = traverse(probe, dims=list(request.dimensions), factors=list(request.factors),
                           start=start, stop=stop, steps=steps, card=m.card)
        base = await self._source_latents(m, request, context)
        total = len(base) * len(plan.targets) * steps
        if total > self.config.max_request_items:
            raise InvalidArgument(
                f"the grid has {len(base)} sources x {len(plan.targets)} targets x {steps} steps = {total} "
                f"images, more than max_request_items={self.config.max_request_items}; sweep fewer"
            )
        grid, plan = traverse(base, dims=list(request.dimensions), factors=list(request.factors),
                              start=start, stop=stop, steps=steps, card=m.card)
        images = await self._decode(m, grid, _deadline(context))
        return pb.TraverseResponse(
            model=self._ref(m), images=codec.batch_from_images(images, request.output_format),
            num_sources=len(base), num_targets=len(plan.targets), steps=steps, targets=plan.targets,
            values=codec.array_to_tensor(plan.values),
        )

    @rpc("EditAttributes")
    async def EditAttributes(self, request, context):
        m = self._model(request.model)
        codec.check_output_format(request.output_format)
        edits = [_edit_from_proto(e, i) for i, e in enumerate(request.edits)]
        apply_edits(np.zeros((1, m.latent_dim), np.float32), edits, m.card)  # validate before compute
        z = apply_edits(await self._source_latents(m, request, context), edits, m.card)
        return pb.EditAttributesResponse(**await self._decoded(m, z, request.output_format, _deadline(context)))

    @rpc("Generate")
    async def Generate(self, request, context):
        m = self._model(request.model)
        codec.check_output_format(request.output_format)
        limit = self.config.max_request_items
        if not 1 <= request.count <= limit:
            raise InvalidArgument(f"count={request.count} is outside 1..{limit} (max_request_items)")
        temperature = request.temperature if request.HasField("temperature") else 1.0
        pins = [_pin_from_proto(p, i) for i, p in enumerate(request.pins)]
        z = generate_latents(request.count, m.latent_dim, seed=request.seed, temperature=temperature,
                             pins=pins, card=m.card)
        return pb.GenerateResponse(**await self._decoded(m, z, request.output_format, _deadline(context)))


def _target(msg, what: str) -> tuple[str | None, int | None]:
    kind = msg.WhichOneof("target")
    if kind == "factor":
        return msg.factor, None
    if kind == "dimension":
        return None, int(msg.dimension)
    raise InvalidArgument(f"{what}: no target; set factor or dimension")


def _finite(v: float, what: str) -> float:
    if not np.isfinite(v):
        raise InvalidArgument(f"{what}: value {v} is not finite")
    return float(v)


def _edit_from_proto(e: pb.FactorEdit, i: int) -> Edit:
    what = f"edits[{i}]"
    factor, dim = _target(e, what)
    op = e.WhichOneof("operation")
    if op is None:
        raise InvalidArgument(f"{what}: no operation; set one of set_value, shift, set_latent, set_label")
    value = e.set_label if op == "set_label" else _finite(getattr(e, op), what)
    return Edit(factor, dim, op, value)


def _pin_from_proto(p: pb.FactorPin, i: int) -> Edit:
    what = f"pins[{i}]"
    factor, dim = _target(p, what)
    kind = p.WhichOneof("pinned")
    if kind is None:
        raise InvalidArgument(f"{what}: nothing pinned; set value, latent or label")
    value = p.label if kind == "label" else _finite(getattr(p, kind), what)
    return Edit(factor, dim, _PIN_OPS[kind], value)
