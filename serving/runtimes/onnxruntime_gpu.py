"""ONNX Runtime on NVIDIA GPUs: the CUDA and the TensorRT execution providers.

Needs ``onnxruntime-gpu`` (the ``gpu`` extra) instead of ``onnxruntime``. The
TensorRT EP builds engines itself; it is given

- an engine cache and a timing cache directory (``trt_engine_cache_path``,
  ``trt_timing_cache_path``) so engines survive restarts,
- explicit optimisation-profile shapes (``trt_profile_min/opt/max_shapes``) from the
  manifest's batch profile, so a new batch size inside the profile never triggers a
  rebuild,
- FP16 (``trt_fp16_enable``) when asked for.

If ONNX Runtime silently falls back to another provider (missing CUDA libraries,
no GPU), the runtime refuses to load with RuntimeUnavailable instead of running
on the CPU under a GPU name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from latentdial.serving.runtimes.base import RuntimeUnavailable
from latentdial.serving.runtimes.onnxruntime_cpu import OrtSessionRuntime

Provider = Literal["cuda", "tensorrt"]
PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def profile_shapes(input_name: str, item_shape: tuple[int, ...], profile: dict[str, int]) -> dict[str, str]:
    """TensorRT EP profile options, e.g. {"trt_profile_min_shapes": "images:1x1x64x64", ...}."""
    out = {}
    for key in ("min", "opt", "max"):
        dims = "x".join(str(d) for d in (int(profile[key]), *item_shape))
        out[f"trt_profile_{key}_shapes"] = f"{input_name}:{dims}"
    return out


def provider_options(
    provider: Provider,
    *,
    device_id: int = 0,
    input_name: str = "images",
    item_shape: tuple[int, ...] = (),
    profile: dict[str, int] | None = None,
    cache_dir: Path | None = None,
    fp16: bool = False,
    workspace_mb: int = 1024,
) -> list[tuple[str, dict[str, object]] | str]:
    """The ``providers`` list for an InferenceSession: the chosen EP first, then CUDA (for
    nodes TensorRT does not take) and the CPU."""
    cuda = ("CUDAExecutionProvider", {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE"})
    if provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    if provider != "tensorrt":
        raise ValueError(f"unknown provider {provider!r}; valid: {sorted(PROVIDERS)}")
    trt: dict[str, object] = {
        "device_id": device_id,
        "trt_fp16_enable": bool(fp16),
        "trt_max_workspace_size": int(workspace_mb) << 20,
    }
    if cache_dir is not None:
        trt.update({
            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache_dir),
        })
    if profile is not None:
        trt.update(profile_shapes(input_name, item_shape, profile))
    return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]


def unavailable_reason(provider: Provider) -> str | None:
    """None if onnxruntime here offers ``provider``; else why not."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    have = ort.get_available_providers()
    if PROVIDERS[provider] not in have:
        return (f"onnxruntime {ort.__version__} has no {PROVIDERS[provider]} (providers: {have}); "
                "install onnxruntime-gpu")
    return None


class OrtGpuRuntime(OrtSessionRuntime):
    """One ONNX graph on the CUDA or TensorRT execution provider."""

    def __init__(
        self,
        onnx_path: Path,
        provider: Provider,
        *,
        item_shape: tuple[int, ...],
        profile: dict[str, int],
        max_batch_size: int = 256,
        device_id: int = 0,
        cache_dir: Path | None = None,
        fp16: bool = False,
    ) -> None:
        reason = unavailable_reason(provider)
        if reason:
            raise RuntimeUnavailable(reason)
        import onnxruntime as ort

        self.name = f"onnxruntime-{provider}"
        self.path = Path(onnx_path)
        self.max_batch_size = min(int(max_batch_size), int(profile["max"]))  # engines end at the profile
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        probe = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        input_name = probe.get_inputs()[0].name
        del probe
        providers = provider_options(provider, device_id=device_id, input_name=input_name,
                                     item_shape=item_shape, profile=profile, cache_dir=cache_dir,
                                     fp16=fp16)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        except Exception as e:
            raise RuntimeUnavailable(f"{self.name} cannot load {onnx_path}: {e}") from e
        active = self._session.get_providers()
        if not active or active[0] != PROVIDERS[provider]:
            raise RuntimeUnavailable(f"{PROVIDERS[provider]} did not initialise (active: {active}); "
                                     "check the CUDA/TensorRT libraries and the GPU")
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def warmup(self, example_inputs: dict[str, np.ndarray]) -> None:
        """Run the profile's min and max batches so engines/kernels exist before serving."""
        x = np.asarray(example_inputs[self.input_names[0]], dtype=np.float32)
        for n in sorted({1, self.max_batch_size}):
            self.run({self.input_names[0]: np.repeat(x[:1], n, axis=0)})
