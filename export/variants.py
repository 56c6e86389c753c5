"""Precision variants of an exported fp32 graph: FP16 (GPU) and INT8 (CPU).

FP16 keeps float32 inputs and outputs (``keep_io_types=True``) so callers never
see half precision; the weights and activations inside are float16. It is meant
for GPUs (TensorRT 11 and strongly typed networks take precision from the ONNX
types); on a CPU it is slower than fp32.

INT8 is ONNX Runtime static quantisation in QDQ format (per-channel weights,
activations calibrated with MinMax on procedural inputs: random filled shapes for
the encoder, N(0, 1) latents for the decoder). It is kept only when it is both
faster than fp32 on this CPU and within :data:`INT8_TOLERANCE`; the measurement
is recorded either way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latentdial.manifest import Graph

#: FP16 vs the fp32 reference. fp16's unit roundoff is 2**-11 ~ 4.9e-4; through the
#: 7-8 layers of the conv encoder/decoder with activations of order 1-10 the error
#: grows to ~1e-3. 1e-2 is 2.5/255 of the image range (invisible) and 1% of the
#: prior's standard deviation for latents, while a wrong conversion (dropped casts,
#: overflow) gives errors of order 0.1-1 and is still caught.
FP16_TOLERANCE = 1e-2
#: INT8 vs the fp32 reference: 8-bit activations quantise each layer's range into
#: 256 steps, so errors of a few percent of the output range are inherent; above
#: 0.1 (25/255 of an image) edits and reconstructions visibly change.
INT8_TOLERANCE = 0.1
#: INT8 must be at least this much faster than fp32 (images/s ratio) to be kept.
INT8_MIN_SPEEDUP = 1.05


def convert_fp16(src: Path, dst: Path) -> Path:
    """Write ``src`` with float16 weights/activations and float32 I/O to ``dst``; checked."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    # The converter appends the float32<->float16 casts of the graph I/O at the end of the
    # node list; onnxslim re-sorts the graph topologically (and folds redundant casts).
    import onnxslim

    model = onnxslim.slim(model)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))
    return Path(dst)


def procedural_images(n: int, image_shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """(n, C, H, W) float32 images of one filled rectangle or ellipse each, on black, in [0, 1].

    Close to what the models are trained on (dSprites-like sprites) without any dataset code.
    """
    c, h, w = image_shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((n, c, h, w), dtype=np.float32)
    for i in range(n):
        cy, cx = rng.uniform(0.2, 0.8, 2) * (h, w)
        ry, rx = rng.uniform(0.05, 0.25, 2) * (h, w)
        if rng.random() < 0.5:
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        else:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        colour = rng.uniform(0.5, 1.0, c) if c > 1 else np.ones(1)
        out[i] = mask[None] * colour[:, None, None].astype(np.float32)
    return out


def calibration_batches(graph: Graph, image_shape: Sequence[int], latent_dim: int, *,
                        batches: int = 8, batch_size: int = 16, seed: int = 1) -> list[np.ndarray]:
    """Calibration inputs for static quantisation: procedural images or prior latents."""
    rng = np.random.default_rng(seed)
    if graph == "encoder":
        return [procedural_images(batch_size, image_shape, rng) for _ in range(batches)]
    return [rng.standard_normal((batch_size, latent_dim), dtype=np.float32) for _ in range(batches)]


def quantise_int8(src: Path, dst: Path, graph: Graph, image_shape: Sequence[int],
                  latent_dim: int) -> Path:
    """Static QDQ INT8 quantisation of ``src`` calibrated on procedural inputs; written to ``dst``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    input_name = "images" if graph == "encoder" else "latents"

    class _Reader(CalibrationDataReader):
        def __init__(self, data: list[np.ndarray]) -> None:
            self._it: Iterator[np.ndarray] = iter(data)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    quantize_static(
        str(src), str(dst), _Reader(calibration_batches(graph, image_shape, latent_dim)),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )
    return Path(dst)


@dataclass
class SpeedComparison:
    """Images/s of a candidate file against the fp32 baseline, measured interleaved."""

    batch: int
    baseline_items_per_s: float
    candidate_items_per_s: float

    @property
    def speedup(self) -> float:
        return self.candidate_items_per_s / self.baseline_items_per_s

    def to_notes(self) -> dict[str, float]:
        d = {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}
        d["speedup"] = round(self.speedup, 3)
        return d


def compare_speed(baseline: Path, candidate: Path, example: np.ndarray, *,
                  rounds: int = 5, iters: int = 3, threads: int = 0) -> SpeedComparison:
    """Median items/s of two ONNX files on ONNX Runtime CPU, alternating rounds so that
    background load on a shared machine hits both alike."""
    import onnxruntime as ort

    def session(path: Path):
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    sessions = [session(baseline), session(candidate)]
    name = sessions[0].get_inputs()[0].name
    rates: list[list[float]] = [[], []]
    for s in sessions:
        s.run(None, {name: example})  # warm-up
    for _ in range(rounds):
        for k, s in enumerate(sessions):
            t0 = time.perf_counter()
            for _ in range(iters):
                s.run(None, {name: example})
            rates[k].append(iters * len(example) / (time.perf_counter() - t0))
    return SpeedComparison(len(example), statistics.median(rates[0]), statistics.median(rates[1]))
