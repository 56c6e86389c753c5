"""torch runtime: the export's ``torch.export`` program (``encoder.pt2`` / ``decoder.pt2``).

For GPUs without TensorRT. The program is self-contained (``torch.export.load``), so
serving needs no code from ``training/``. torch is imported lazily; serving images
without torch simply never select this runtime.

On CUDA: optional half precision (weights and activations in float16, float32 I/O),
and CUDA graphs captured for a fixed set of batch buckets; a batch is padded up to
the smallest bucket that holds it and the padding rows are dropped from the output.
On CPU the program runs eagerly in float32 as a reference (``torch-cpu``).
"""

from __future__ import annotations

import bisect
import threading
from pathlib import Path

import numpy as np

from latentdial.serving.runtimes.base import Runtime, RuntimeFailure, RuntimeUnavailable

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def batch_buckets(max_batch_size: int, buckets: tuple[int, ...] = DEFAULT_BUCKETS) -> tuple[int, ...]:
    """Sorted buckets up to ``max_batch_size``, always ending with ``max_batch_size`` itself."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    return tuple(sorted({b for b in buckets if b < max_batch_size} | {max_batch_size}))


def bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """Smallest bucket >= n (buckets sorted); ValueError if n exceeds the largest."""
    i = bisect.bisect_left(buckets, n)
    if i == len(buckets):
        raise ValueError(f"batch {n} exceeds the largest bucket {buckets[-1]}")
    return buckets[i]


def ieee_fp32(torch) -> None:
    """Make fp32 convolutions and matrix products on CUDA full fp32 (process-wide).

    cuDNN runs fp32 convolutions in TF32 (a 10-bit mantissa) on Ampere and later GPUs unless
    told not to; served that way on an H100, dsprites/5's decoder differed from ONNX Runtime
    CPU by 1.3e-3, over the 1e-3 that an fp32 runtime is held to (scripts/gpu_check/parity.py).
    A runtime asked for fp16 is the one that trades precision for speed.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class TorchRuntime(Runtime):
    """A torch.export program on ``device`` ("cuda", "cuda:1", or "cpu")."""

    def __init__(
        self,
        program_path: Path,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
        *,
        device: str = "cuda",
        half: bool = False,
        cuda_graphs: bool = True,
        max_batch_size: int = 256,
        buckets: tuple[int, ...] = DEFAULT_BUCKETS,
    ) -> None:
        try:
            import torch
        except ImportError as e:
            raise RuntimeUnavailable("torch is not installed (pip install torch)") from e
        self._torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailable("torch has no CUDA device here")
        if not Path(program_path).is_file():
            raise RuntimeUnavailable(f"{program_path} is missing; re-export with torch programs enabled")
        self.name = "torch-cuda" if self.device.type == "cuda" else "torch-cpu"
        self.path = Path(program_path)
        self.input_names, self.output_names = tuple(input_names), tuple(output_names)
        self.max_batch_size = max_batch_size
        self.half = bool(half and self.device.type == "cuda")
        self.dtype = torch.float16 if self.half else torch.float32
        if self.device.type == "cuda" and not self.half:
            ieee_fp32(torch)
        module = torch.export.load(str(program_path)).module()
        self._module = module.to(self.device, self.dtype) if self.half else module.to(self.device)
        self.use_graphs = bool(cuda_graphs and self.device.type == "cuda")
        self.buckets = batch_buckets(max_batch_size, buckets)
        self._graphs: dict[int, tuple[object, object, tuple]] = {}  # bucket -> (graph, in, outs)
        self._lock = threading.Lock()  # static graph buffers are shared between calls

    # ------------------------------------------------------------------ execution
    def _eager(self, x):
        with self._torch.inference_mode():
            out = self._module(x)
        return out if isinstance(out, tuple | list) else (out,)

    def _capture(self, bucket: int, item_shape: tuple[int, ...]):
        """Capture one CUDA graph for ``bucket`` rows (static input/output buffers)."""
        torch = self._torch
        static_in = torch.zeros((bucket, *item_shape), device=self.device, dtype=self.dtype)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # let lazy init and cuDNN autotuning happen outside the capture
                self._eager(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            out = self._module(static_in)
        outs = out if isinstance(out, tuple | list) else (out,)
        self._graphs[bucket] = (graph, static_in, tuple(outs))
        return self._graphs[bucket]

    def _run(self, inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        torch = self._torch
        x_np = np.ascontiguousarray(inputs[self.input_names[0]], dtype=np.float32)
        try:
            x = torch.from_numpy(x_np).to(self.device, self.dtype, non_blocking=False)
            if self.use_graphs:
                bucket = bucket_for(n, self.buckets)
                with self._lock:
                    graph, static_in, static_outs = self._graphs.get(bucket) or self._capture(
                        bucket, tuple(x.shape[1:]))
                    static_in[:n].copy_(x)
                    if n < bucket:
                        static_in[n:].zero_()
                    graph.replay()
                    outs = [o[:n].float().cpu() for o in static_outs]
            else:
                outs = self._eager(x)
            result = {name: o.float().cpu().numpy() for name, o in zip(self.output_names, outs, strict=True)}
        except (RuntimeError, ValueError) as e:
            raise RuntimeFailure(f"{self.name}: {self.path.name} failed: {e}") from e
        return result

    def warmup(self, example_inputs: dict[str, np.ndarray]) -> None:
        """Run once; on CUDA with graphs, capture every bucket so no request pays for capture."""
        self.run(example_inputs)
        if self.use_graphs:
            x = np.asarray(example_inputs[self.input_names[0]])
            with self._lock:
                for b in self.buckets:
                    if b not in self._graphs:
                        self._capture(b, tuple(x.shape[1:]))

    def close(self) -> None:
        self._graphs.clear()

    def describe(self) -> str:
        extra = ", fp16" if self.half else ""
        extra += f", CUDA graphs {list(self.buckets)}" if self.use_graphs else ""
        return f"{self.name} ({self.path.name}{extra}, max batch {self.max_batch_size})"
