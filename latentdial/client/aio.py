"""asyncio client of the latentdial API; same methods as :class:`latentdial.client.Client`, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Self

import grpc

from latentdial.client import convert as cv
from latentdial.client.errors import from_rpc_error
from latentdial.client.info import ModelInfo, ModelSummary
from latentdial.client.sync import Attempts, ChannelSettings, _Requests
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc


class AsyncClient(_Requests):
    """``async with AsyncClient("host:50051") as c: z = (await c.encode(x)).mean``.

    Takes the same ``options`` (extra gRPC channel arguments) and settings as ``Client``.
    """

    def __init__(
        self, address: str = "localhost:50051", *, options: Sequence[tuple[str, Any]] = (), **settings: Any
    ) -> None:
        self.settings = ChannelSettings(**settings)
        self._channel = self.settings.open_channel(address, grpc.aio, options)
        self._stub = pb_grpc.LatentDialStub(self._channel)
        self.address = address

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _call(self, method: str, request, timeout_s: float | None):
        """Send ``request`` within one deadline (``Attempts``), retrying only UNAVAILABLE."""
        fn = getattr(self._stub, method)
        attempts = Attempts(self.settings, timeout_s)
        while True:
            try:
                return await fn(request, timeout=attempts.remaining(), metadata=self.settings.metadata())
            except grpc.RpcError as e:
                wait = attempts.backoff(e)
                if wait is None:
                    raise from_rpc_error(e) from e
                await asyncio.sleep(wait)

    async def list_models(self, *, timeout_s: float | None = None) -> list[ModelSummary]:
        reply = await self._call("ListModels", pb.ListModelsRequest(), timeout_s)
        return [ModelSummary.from_proto(m) for m in reply.models]

    async def load_model(self, model: str, *, version: str | None = None, timeout_s: float | None = None) -> str:
        """Admin: see :meth:`Client.load_model`."""
        reply = await self._call("LoadModel", pb.LoadModelRequest(model=cv.model_ref(model, version)), timeout_s)
        return reply.model.version

    async def unload_model(self, model: str, *, version: str | None = None,
                           timeout_s: float | None = None) -> list[str]:
        """Admin: see :meth:`Client.unload_model`."""
        reply = await self._call("UnloadModel", pb.UnloadModelRequest(model=cv.model_ref(model, version)), timeout_s)
        return [r.version for r in reply.unloaded]

    async def model_info(self, model: str | None = None, *, version: str | None = None,
                         timeout_s: float | None = None) -> ModelInfo:
        return ModelInfo.from_proto(
            await self._call("GetModelInfo", pb.GetModelInfoRequest(model=cv.model_ref(model, version)), timeout_s))

    async def encode(self, images: cv.ImagesIn, *, model: str | None = None, version: str | None = None,
                     sample: bool = False, seed: int = 0, timeout_s: float | None = None) -> cv.EncodeResult:
        req = self._encode_req(images, model, version, sample, seed)
        return self._encode_result(await self._call("Encode", req, timeout_s))

    async def decode(self, latents: Any, *, output: str = "float32", model: str | None = None,
                     version: str | None = None, timeout_s: float | None = None) -> Any:
        req = pb.DecodeRequest(model=cv.model_ref(model, version), latents=cv.latents_tensor(latents),
                               output_format=cv.wire_format(output))
        return cv.images_out((await self._call("Decode", req, timeout_s)).images, output)

    async def reconstruct(self, images: cv.ImagesIn, *, output: str = "float32", sample: bool = False,
                          seed: int = 0, model: str | None = None, version: str | None = None,
                          timeout_s: float | None = None) -> cv.ImagesResult:
        req = pb.ReconstructRequest(model=cv.model_ref(model, version), images=cv.image_batch(images),
                                    output_format=cv.wire_format(output), sample=sample, seed=int(seed))
        return self._images_result(await self._call("Reconstruct", req, timeout_s), output)

    async def traverse(self, source: Any, *, dims: list[int] | None = None, factors: list[str] | None = None,
                       start: float | None = None, stop: float | None = None, steps: int = 10,
                       output: str = "float32", model: str | None = None, version: str | None = None,
                       timeout_s: float | None = None) -> cv.Traversal:
        req = self._traverse_req(source, dims, factors, start, stop, steps, output, model, version)
        return cv.traversal_from(await self._call("Traverse", req, timeout_s), output)

    async def edit(self, source: Any, edits: Any, *, output: str = "float32", model: str | None = None,
                   version: str | None = None, timeout_s: float | None = None) -> cv.ImagesResult:
        req = self._edit_req(source, edits, output, model, version)
        return self._images_result(await self._call("EditAttributes", req, timeout_s), output)

    async def generate(self, count: int, *, seed: int = 0, pins: Any = None, temperature: float = 1.0,
                       output: str = "float32", model: str | None = None, version: str | None = None,
                       timeout_s: float | None = None) -> cv.ImagesResult:
        req = self._generate_req(count, seed, pins, temperature, output, model, version)
        return self._images_result(await self._call("Generate", req, timeout_s), output)
