"""Blocking client of the latentdial API: numpy and PIL in and out, no protobuf in sight.

Example::

    from latentdial.client import Client
    with Client("localhost:50051") as c:
        z = c.encode(images).mean                       # (N, D)
        grid = c.traverse(images[:1], factors=["scale"], steps=8, output="uint8").images
        edited = c.edit(images, {"scale": 0.8, "shape": "heart"}).images
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import grpc
import numpy as np

from latentdial.client import convert as cv
from latentdial.client.errors import from_rpc_error
from latentdial.client.info import ModelInfo, ModelSummary
from latentdial.v1 import DEFAULT_MAX_MESSAGE_MB
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE,)


@dataclass
class ChannelSettings:
    """How to reach a server: TLS files, token, message limit, retries, default timeout.

    ``timeout_s`` is the default deadline of one call, retries and their backoff included.
    """

    token: str | None = None
    tls_ca: str | None = None  # PEM of the CA that signed the server's cert; set: use TLS
    tls_cert: str | None = None  # client cert + key for mutual TLS
    tls_key: str | None = None
    tls_server_name: str | None = None  # override the name checked in the server's cert
    max_message_mb: int = DEFAULT_MAX_MESSAGE_MB
    timeout_s: float = 30.0
    retries: int = 3
    retry_backoff_s: float = 0.1

    def __post_init__(self) -> None:
        self.timeout_s = check_timeout(self.timeout_s)
        if int(self.retries) < 0 or self.retry_backoff_s < 0:
            raise cv.InvalidArgumentError(
                f"retries and retry_backoff_s must be >= 0, got {self.retries} and {self.retry_backoff_s}")

    def options(self, extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
        """gRPC channel arguments: the message-size limits (and TLS name override), then ``extra``.

        ``extra`` holds (name, value) pairs such as ``("grpc.lb_policy_name", "round_robin")``;
        a name the client sets itself takes the value given in ``extra``.
        """
        n = self.max_message_mb * 1024 * 1024
        opts: dict[str, Any] = {"grpc.max_receive_message_length": n, "grpc.max_send_message_length": n}
        if self.tls_server_name:
            opts["grpc.ssl_target_name_override"] = self.tls_server_name
        for pair in extra:
            if not (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise TypeError(
                    f"channel options must be (name, value) pairs such as "
                    f"('grpc.lb_policy_name', 'round_robin'); got {pair!r}"
                )
            opts[pair[0]] = pair[1]
        return list(opts.items())

    def open_channel(self, address: str, grpc_module: Any, extra_options: Sequence[tuple[str, Any]] = ()) -> Any:
        """A channel to ``address`` from ``grpc`` or ``grpc.aio`` (same call shape): TLS when a CA
        is set, plaintext otherwise, with :meth:`options` (``extra_options`` merged in)."""
        creds = self.credentials()
        opts = self.options(extra_options)
        if creds:
            return grpc_module.secure_channel(address, creds, options=opts)
        return grpc_module.insecure_channel(address, options=opts)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls_ca:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.tls_ca).read_bytes(),
            private_key=Path(self.tls_key).read_bytes() if self.tls_key else None,
            certificate_chain=Path(self.tls_cert).read_bytes() if self.tls_cert else None,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def check_timeout(timeout_s: float) -> float:
    """A deadline in seconds must be a finite number > 0; InvalidArgumentError otherwise."""
    try:
        t = float(timeout_s)
    except (TypeError, ValueError):
        t = float("nan")
    if not (t > 0 and math.isfinite(t)):
        raise cv.InvalidArgumentError(
            f"timeout_s must be a number of seconds > 0, got {timeout_s!r}; omit it for the client's default")
    return t


class Attempts:
    """One deadline over every attempt of one call (after tritonclient's client-side timeout).

    ``timeout_s`` (None: the settings' default) is the whole call's budget: each attempt gets
    what is left of it, and a retry happens only if its backoff ends before the deadline.
    Only UNAVAILABLE is retried, at most ``settings.retries`` times, backing off
    ``retry_backoff_s * 2**attempt``.
    """

    def __init__(self, settings: ChannelSettings, timeout_s: float | None) -> None:
        self.settings = settings
        total = settings.timeout_s if timeout_s is None else check_timeout(timeout_s)
        self.deadline = time.monotonic() + total
        self.attempt = 0

    def remaining(self) -> float:
        """Seconds left before the deadline (> 0 while a retry is allowed)."""
        return max(self.deadline - time.monotonic(), 1e-3)

    def backoff(self, error: grpc.RpcError) -> float | None:
        """Seconds to wait before retrying after ``error``; None if the call must fail with it."""
        wait = self.settings.retry_backoff_s * 2**self.attempt
        if (error.code() not in _RETRY_CODES or self.attempt >= self.settings.retries
                or time.monotonic() + wait >= self.deadline):
            return None
        self.attempt += 1
        return wait


class _Requests:
    """Request builders shared by Client and AsyncClient (checks happen here, before sending)."""

    @staticmethod
    def _encode_req(images, model, version, sample, seed) -> pb.EncodeRequest:
        return pb.EncodeRequest(model=cv.model_ref(model, version), images=cv.image_batch(images),
                                sample=sample, seed=int(seed))

    @staticmethod
    def _source(req, source) -> None:
        """Images (any image-like) or latents (float (N, D) ndarray passed as latents=)."""
        if isinstance(source, LatentsSource):
            req.latents.CopyFrom(cv.latents_tensor(source.latents))
        else:
            req.images.CopyFrom(cv.image_batch(source))

    def _traverse_req(self, source, dims, factors, start, stop, steps, output, model, version) -> pb.TraverseRequest:
        req = pb.TraverseRequest(model=cv.model_ref(model, version), dimensions=list(dims or []),
                                 factors=list(factors or []), steps=int(steps), output_format=cv.wire_format(output))
        if start is not None:
            req.start = float(start)
        if stop is not None:
            req.stop = float(stop)
        self._source(req, source)
        return req

    def _edit_req(self, source, edits, output, model, version) -> pb.EditAttributesRequest:
        req = pb.EditAttributesRequest(model=cv.model_ref(model, version), edits=cv.edits_proto(edits),
                                       output_format=cv.wire_format(output))
        self._source(req, source)
        return req

    @staticmethod
    def _generate_req(count, seed, pins, temperature, output, model, version) -> pb.GenerateRequest:
        if int(count) < 1:
            raise cv.InvalidArgumentError(f"count must be >= 1, got {count}")
        return pb.GenerateRequest(model=cv.model_ref(model, version), count=int(count), seed=int(seed),
                                  pins=cv.pins_proto(pins), temperature=float(temperature),
                                  output_format=cv.wire_format(output))

    @staticmethod
    def _encode_result(r: pb.EncodeResponse) -> cv.EncodeResult:
        return cv.EncodeResult(cv.from_tensor(r.mean), cv.from_tensor(r.log_var),
                               cv.from_tensor(r.sample) if r.HasField("sample") else None,
                               (r.model.name, r.model.version))

    @staticmethod
    def _images_result(r, output: str) -> cv.ImagesResult:
        return cv.ImagesResult(cv.images_out(r.images, output), cv.from_tensor(r.latents),
                               (r.model.name, r.model.version))


@dataclass(frozen=True)
class LatentsSource:
    """Marks a traverse/edit source as latents (N, D) rather than images: ``latents(z)``."""

    latents: np.ndarray


def latents(z: Any) -> LatentsSource:
    """Wrap (N, D) latents as the source of ``traverse`` or ``edit``."""
    return LatentsSource(np.asarray(z, dtype=np.float32))


class Client(_Requests):
    """Synchronous client. Keyword-only options; ``timeout_s`` per call or for the client.

    ``settings`` are the fields of :class:`ChannelSettings`; ``options`` are extra gRPC channel
    arguments merged with the client's own message-size limits, e.g. client-side load balancing
    over every replica::

        Client("ipv4:10.0.0.11:50051,10.0.0.12:50051", options=[("grpc.lb_policy_name", "round_robin")])
    """

    def __init__(
        self, address: str = "localhost:50051", *, options: Sequence[tuple[str, Any]] = (), **settings: Any
    ) -> None:
        self.settings = ChannelSettings(**settings)
        self._channel = self.settings.open_channel(address, grpc, options)
        self._stub = pb_grpc.LatentDialStub(self._channel)
        self.address = address

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request, timeout_s: float | None):
        """Send ``request`` within one deadline (``Attempts``), retrying only UNAVAILABLE."""
        fn = getattr(self._stub, method)
        attempts = Attempts(self.settings, timeout_s)
        while True:
            try:
                return fn(request, timeout=attempts.remaining(), metadata=self.settings.metadata())
            except grpc.RpcError as e:
                wait = attempts.backoff(e)
                if wait is None:
                    raise from_rpc_error(e) from e
                time.sleep(wait)

    # ------------------------------------------------------------------ API
    def list_models(self, *, timeout_s: float | None = None) -> list[ModelSummary]:
        """Every served model: ``.name``, ``.versions``, ``.latest_version``, ``.is_default``, ..."""
        return [ModelSummary.from_proto(m) for m in self._call("ListModels", pb.ListModelsRequest(), timeout_s).models]

    def load_model(self, model: str, *, version: str | None = None, timeout_s: float | None = None) -> str:
        """Admin (server with ``--model-control explicit``): verify, load, warm and serve a version
        (default: the newest on disk); returns the version now served. FailedPreconditionError says
        why a version was refused; the versions served before keep serving."""
        return self._call("LoadModel", pb.LoadModelRequest(model=cv.model_ref(model, version)), timeout_s).model.version

    def unload_model(self, model: str, *, version: str | None = None, timeout_s: float | None = None) -> list[str]:
        """Admin: stop serving a version (default: every version) once its in-flight requests finish;
        returns the versions unloaded."""
        reply = self._call("UnloadModel", pb.UnloadModelRequest(model=cv.model_ref(model, version)), timeout_s)
        return [r.version for r in reply.unloaded]

    def model_info(self, model: str | None = None, *, version: str | None = None,
                   timeout_s: float | None = None) -> ModelInfo:
        """Shapes, factors, metrics, runtime and batching of a model version (default: the default model)."""
        return ModelInfo.from_proto(
            self._call("GetModelInfo", pb.GetModelInfoRequest(model=cv.model_ref(model, version)), timeout_s))

    def encode(self, images: cv.ImagesIn, *, model: str | None = None, version: str | None = None,
               sample: bool = False, seed: int = 0, timeout_s: float | None = None) -> cv.EncodeResult:
        """Images (N, H, W, C) -> posterior mean and log-variance (N, D) [+ seeded sample]."""
        return self._encode_result(self._call("Encode", self._encode_req(images, model, version, sample, seed),
                                              timeout_s))

    def decode(self, latents: Any, *, output: str = "float32", model: str | None = None,
               version: str | None = None, timeout_s: float | None = None) -> Any:
        """Latents (N, D) -> images in ``output`` format."""
        req = pb.DecodeRequest(model=cv.model_ref(model, version), latents=cv.latents_tensor(latents),
                               output_format=cv.wire_format(output))
        return cv.images_out(self._call("Decode", req, timeout_s).images, output)

    def reconstruct(self, images: cv.ImagesIn, *, output: str = "float32", sample: bool = False, seed: int = 0,
                    model: str | None = None, version: str | None = None,
                    timeout_s: float | None = None) -> cv.ImagesResult:
        req = pb.ReconstructRequest(model=cv.model_ref(model, version), images=cv.image_batch(images),
                                    output_format=cv.wire_format(output), sample=sample, seed=int(seed))
        return self._images_result(self._call("Reconstruct", req, timeout_s), output)

    def traverse(self, source: Any, *, dims: list[int] | None = None, factors: list[str] | None = None,
                 start: float | None = None, stop: float | None = None, steps: int = 10, output: str = "float32",
                 model: str | None = None, version: str | None = None,
                 timeout_s: float | None = None) -> cv.Traversal:
        """Sweep dims or factors from images (or ``latents(z)``); grid (N, T, S, H, W, C)."""
        req = self._traverse_req(source, dims, factors, start, stop, steps, output, model, version)
        return cv.traversal_from(self._call("Traverse", req, timeout_s), output)

    def edit(self, source: Any, edits: Any, *, output: str = "float32", model: str | None = None,
             version: str | None = None, timeout_s: float | None = None) -> cv.ImagesResult:
        """Apply ``edits`` ([Edit(...)] or {"scale": 0.8, "shape": "heart"}) in order to every item."""
        req = self._edit_req(source, edits, output, model, version)
        return self._images_result(self._call("EditAttributes", req, timeout_s), output)

    def generate(self, count: int, *, seed: int = 0, pins: Any = None, temperature: float = 1.0,
                 output: str = "float32", model: str | None = None, version: str | None = None,
                 timeout_s: float | None = None) -> cv.ImagesResult:
        """``count`` prior samples with ``pins`` ([Pin(...)] or {"shape": "heart"}) held fixed."""
        req = self._generate_req(count, seed, pins, temperature, output, model, version)
        return self._images_result(self._call("Generate", req, timeout_s), output)
