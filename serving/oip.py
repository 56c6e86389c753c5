"""Open Inference Protocol v2 (KServe v2) semantics shared by its gRPC and HTTP bindings.

Each graph of each served model version is one OIP model, named ``<model>.encoder`` and
``<model>.decoder``, with the repository's versions. Tensors are those of the v1 API, so an
OIP encode equals a v1 Encode of the same images:

| OIP model | input | outputs |
|---|---|---|
| ``<model>.encoder`` | ``images`` (N, H, W, C) FP32 in [0, 1] (UINT8 in [0, 255] also accepted) | ``mean``, ``log_var`` (N, D) FP32 |
| ``<model>.decoder`` | ``latents`` (N, D) FP32 | ``images`` (N, H, W, C) FP32 in [0, 1] |

An editor-kind model (``Manifest.kind`` "editor": no latent space) is two other OIP models, one per
graph; its ``<model>.encoder`` and ``<model>.decoder`` answer FAILED_PRECONDITION saying why:

| OIP model | inputs | outputs |
|---|---|---|
| ``<model>.classifier`` | ``images`` (N, H, W, C) FP32 in [0, 1] (or UINT8) | ``codes`` (N, D) FP32 |
| ``<model>.editor`` | ``images`` (N, H, W, C) FP32 in [0, 1] (or UINT8), ``codes`` (N, D) FP32 target codes | ``images`` (N, H, W, C) FP32 in [0, 1] |

Both bindings call :func:`infer`, which validates with :mod:`codec` and runs the graph through
the engine's batcher, the same queue v1 Encode and Decode (or an editor's EditAttributes) use.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

import numpy as np

from latentdial.manifest import GRAPHS_OF_KIND
from latentdial.serving import codec
from latentdial.serving.engine import (
    Engine,
    ServedModel,
    check_serves,
    current_deadline,
)
from latentdial.serving.errors import InvalidArgument, NotFound

SERVER_NAME = "latentdial"
PLATFORM = "latentdial_onnx"
#: the protocol's tensor data types latentdial reads or writes, with their numpy dtypes
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
#: the graphs of a model of any kind, each one OIP model ``<model>.<graph>``
GRAPH_SUFFIXES = tuple(dict.fromkeys(g for graphs in GRAPHS_OF_KIND.values() for g in graphs))
#: Most input or output tensors one inference request may name (a graph has one input, two outputs at
#: most); checked on the list's length before any tensor is read.
MAX_TENSORS = 8


def check_tensor_count(n: int, what: str) -> None:
    """Refuse a request naming more than :data:`MAX_TENSORS` inputs (or outputs)."""
    if n > MAX_TENSORS:
        raise InvalidArgument(f"{what}: {n} given, more than the limit of {MAX_TENSORS} per request")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an OIP model; -1 marks the batch dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def server_version() -> str:
    """The installed latentdial distribution's version."""
    try:
        return importlib.metadata.version("latentdial")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def oip_name(s: ServedModel, graph: str) -> str:
    return f"{s.name}.{graph}"


def split_name(name: str) -> tuple[str, str]:
    """``"dsprites.encoder"`` -> ("dsprites", "encoder"); NotFound says how models are named."""
    model, _, graph = name.rpartition(".")
    if not model or graph not in GRAPH_SUFFIXES:
        raise NotFound(
            f"OIP model {name!r} is not served; OIP models are named <model>.encoder or <model>.decoder "
            "(a VAE), <model>.classifier or <model>.editor (an editor)"
        )
    return model, graph


def resolve(engine: Engine, name: str, version: str = "") -> tuple[ServedModel, str]:
    """The served model version and graph behind an OIP model name; NotFound lists what exists.

    A graph the model's kind does not have: FailedPrecondition saying why for an editor asked for
    its encoder or decoder (it has no latent space), NotFound for a VAE asked for an editor's graph.
    """
    model, graph = split_name(name)
    s = engine.served(model, version)
    if graph not in s.model.graphs:
        check_serves(s.model, f"oip.{graph}")
        raise NotFound(f"OIP model {name!r} is not served; model {s.name}/{s.version} is a {s.kind}, its OIP models "
                       f"are {', '.join(oip_name(s, g) for g in s.model.graphs)}")
    return s, graph


def signature(s: ServedModel, graph: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of one graph in the protocol's terms."""
    c, h, w = s.model.image_shape
    d = s.model.latent_dim
    images = TensorSpec("images", "FP32", (-1, h, w, c))
    if graph == "encoder":
        return [images], [TensorSpec("mean", "FP32", (-1, d)), TensorSpec("log_var", "FP32", (-1, d))]
    if graph == "classifier":
        return [images], [TensorSpec("codes", "FP32", (-1, d))]
    if graph == "editor":
        return [images, TensorSpec("codes", "FP32", (-1, d))], [images]
    return [TensorSpec("latents", "FP32", (-1, d))], [images]


def array_from_bytes(raw: bytes, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """Row-major little-endian bytes of a tensor -> read-only array; checks type, shape and length."""
    dtype = _dtype(datatype, what)
    dims = _dims(shape, what)
    expected = dtype.itemsize
    for s in dims:
        expected *= s  # Python ints: no overflow on hostile shapes
    if len(raw) != expected:
        raise InvalidArgument(
            f"{what}: holds {len(raw)} bytes but shape {list(dims)} of {datatype} needs {expected}; "
            "send the row-major little-endian bytes of the tensor"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(dims)


def array_from_values(values, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """A flat (or nested) list of numbers -> array of ``shape``; checks type and element count."""
    dtype = _dtype(datatype, what)
    dims = _dims(shape, what)
    try:
        a = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArgument(f"{what}: data is not a list of {datatype} numbers ({e})") from e
    count = 1
    for s in dims:
        count *= s
    if a.size != count:
        raise InvalidArgument(f"{what}: has {a.size} values but shape {list(dims)} needs {count}")
    return a.reshape(dims)


def _dtype(datatype: str, what: str) -> np.dtype:
    if datatype not in DATATYPES:
        raise InvalidArgument(f"{what}: datatype {datatype!r} is unknown; use one of {sorted(DATATYPES)}")
    return DATATYPES[datatype]


def _dims(shape, what: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"{what}: shape {shape!r} is not a list of integers") from e
    if any(s < 0 for s in dims) or len(dims) > 8:
        raise InvalidArgument(f"{what}: shape {list(dims)} is malformed (negative entry or > 8 dims)")
    return dims


def datatype_of(a: np.ndarray) -> str:
    for name, dtype in DATATYPES.items():
        if a.dtype == dtype:
            return name
    raise InvalidArgument(f"dtype {a.dtype} has no OIP datatype")


async def infer(engine: Engine, s: ServedModel, graph: str, inputs: dict[str, np.ndarray],
                requested: list[str]) -> dict[str, np.ndarray]:
    """Run one OIP model: named input arrays -> named output arrays (all, or the requested ones, in order),
    under the request's deadline."""
    deadline = current_deadline()
    specs_in, specs_out = signature(s, graph)
    want = {t.name for t in specs_in}
    if set(inputs) != want:
        raise InvalidArgument(
            f"{oip_name(s, graph)} takes inputs {sorted(want)}; got {sorted(inputs)}"
        )
    limit = engine.max_request_items
    if graph == "encoder":
        x = codec.images_from_array(inputs["images"], s.model.image_shape, limit)
        mean, log_var = await engine.encode(s, x, deadline)
        outputs = {"mean": mean, "log_var": log_var}
    elif graph == "classifier":
        x = codec.images_from_array(inputs["images"], s.model.image_shape, limit)
        outputs = {"codes": await engine.classify(s, x, deadline)}
    elif graph == "editor":
        x = codec.images_from_array(inputs["images"], s.model.image_shape, limit)
        codes = codec.latents_from_array(inputs["codes"], s.model.latent_dim, limit, "codes")
        if len(codes) != len(x):
            raise InvalidArgument(f"{oip_name(s, graph)}: {len(x)} images but {len(codes)} rows of codes; "
                                  "send one row of target codes per image")
        images = await engine.translate(s, x, codes, deadline)
        outputs = {"images": np.ascontiguousarray(images.transpose(0, 2, 3, 1), np.float32)}
    else:
        z = codec.latents_from_array(inputs["latents"], s.model.latent_dim, limit)
        images = await engine.decode(s, z, deadline)
        outputs = {"images": np.ascontiguousarray(images.transpose(0, 2, 3, 1), np.float32)}
    names = requested or [t.name for t in specs_out]
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise InvalidArgument(f"{oip_name(s, graph)} has no outputs {unknown}; it has {sorted(outputs)}")
    return {n: np.ascontiguousarray(outputs[n], np.float32) for n in names}
