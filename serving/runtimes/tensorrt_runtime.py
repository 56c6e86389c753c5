"""TensorRT runtime: a deserialised engine executed with ``execute_async_v3`` on a CUDA stream.

Memory and streams come from cuda-python (``cuda.bindings.runtime``, or the older
``cuda.cudart`` module). Device buffers are allocated once for the largest batch of
the engine's optimisation profile; each call sets the input shape, copies the batch
in, enqueues the engine and copies the outputs back, all on one stream.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from latentdial.serving.runtimes.base import Runtime, RuntimeFailure, RuntimeUnavailable

log = logging.getLogger(__name__)


def import_cudart():
    """cuda-python's runtime API module, or RuntimeUnavailable."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as e:
            raise RuntimeUnavailable("cuda-python is not installed (pip install 'latentdial[tensorrt]')") from e
    return cudart


def cuda_call(cudart, result):
    """Unwrap a cuda-python ``(err, *values)`` tuple; raise RuntimeFailure on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeFailure(f"CUDA error {err}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_name(cudart, device: int = 0) -> str:
    """The GPU model, e.g. "NVIDIA H100 80GB HBM3"; RuntimeUnavailable if there is no GPU."""
    try:
        count = cuda_call(cudart, cudart.cudaGetDeviceCount())
    except RuntimeFailure as e:
        raise RuntimeUnavailable(f"no usable CUDA device: {e}") from e
    if not count:
        raise RuntimeUnavailable("no CUDA device")
    props = cuda_call(cudart, cudart.cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00").strip()


class TensorRTRuntime(Runtime):
    """One serialised engine (see tensorrt_build.ensure_engine for how it is made)."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, *, max_batch_size: int, trt=None, cudart=None) -> None:
        from latentdial.serving.runtimes.tensorrt_build import import_tensorrt

        self._trt = trt = trt or import_tensorrt()
        self._cudart = cudart = cudart or import_cudart()
        self.path = Path(engine_path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise RuntimeUnavailable(f"TensorRT could not deserialise {self.path}; rebuild the engine")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = tuple(n for n in names if is_input[n])
        self.output_names = tuple(n for n in names if not is_input[n])
        # profile 0's max shape bounds the batch
        _, _, dims = self._engine.get_tensor_profile_shape(self.input_names[0], 0)
        max_shape = tuple(int(d) for d in dims)  # trt.Dims -> tuple (Dims does not slice)
        self.max_batch_size = min(int(max_batch_size), max_shape[0])
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._item_shapes: dict[str, tuple[int, ...]] = {}
        self._item_shapes[self.input_names[0]] = max_shape[1:]
        # Output shapes for the max batch: set the input shape once, then ask the context.
        self._context.set_input_shape(self.input_names[0], max_shape)
        for n in self.output_names:
            self._item_shapes[n] = tuple(int(d) for d in self._context.get_tensor_shape(n))[1:]
        self._stream = cuda_call(cudart, cudart.cudaStreamCreate())
        self._device: dict[str, int] = {}
        for n in names:
            nbytes = self.max_batch_size * int(np.prod(self._item_shapes[n])) * self._dtypes[n].itemsize
            self._device[n] = cuda_call(cudart, cudart.cudaMalloc(nbytes))
            self._context.set_tensor_address(n, int(self._device[n]))
        self._lock = threading.Lock()  # one context, one set of buffers
        self._closed = False

    def _run(self, inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        cudart, name = self._cudart, self.input_names[0]
        host_in = np.ascontiguousarray(inputs[name], dtype=self._dtypes[name])
        outs = {o: np.empty((n, *self._item_shapes[o]), dtype=self._dtypes[o]) for o in self.output_names}
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            if not self._context.set_input_shape(name, host_in.shape):
                raise RuntimeFailure(f"{self.name}: input shape {host_in.shape} is outside the engine profile")
            cuda_call(cudart, cudart.cudaMemcpyAsync(self._device[name], host_in.ctypes.data,
                                                     host_in.nbytes, h2d, self._stream))
            if not self._context.execute_async_v3(int(self._stream)):
                raise RuntimeFailure(f"{self.name}: execute_async_v3 failed for batch {n}")
            for o, arr in outs.items():
                cuda_call(cudart, cudart.cudaMemcpyAsync(arr.ctypes.data, self._device[o], arr.nbytes,
                                                         d2h, self._stream))
            cuda_call(cudart, cudart.cudaStreamSynchronize(self._stream))
        return {o: arr.astype(np.float32, copy=False) for o, arr in outs.items()}

    def warmup(self, example_inputs: dict[str, np.ndarray]) -> None:
        """Run batch 1 and the profile's max batch before the runtime reports ready."""
        x = np.asarray(example_inputs[self.input_names[0]], dtype=np.float32)
        for n in sorted({1, self.max_batch_size}):
            self.run({self.input_names[0]: np.repeat(x[:1], n, axis=0)})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ptr in self._device.values():
            self._cudart.cudaFree(ptr)
        self._cudart.cudaStreamDestroy(self._stream)
        self._device.clear()

    def describe(self) -> str:
        return f"{self.name} ({self.path.name}, max batch {self.max_batch_size})"
