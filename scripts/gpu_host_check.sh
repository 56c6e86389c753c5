#!/usr/bin/env bash
# Exercise the GPU runtimes for real on a GPU host (TensorRT, ONNX Runtime CUDA/TensorRT EPs,
# torch CUDA): export a model (unless one is given), build TensorRT engines (fp32 and fp16)
# through the CLI, check parity against ONNX Runtime CPU and time every runtime.
#
#   scripts/gpu_host_check.sh [MODEL_DIR]      (needs: pip install '.[export,tensorrt,gpu]')
#
# Results go to ${OUT_DIR:-gpu-check}/ (logs, JSON). Exit status is non-zero on any failure.
set -euo pipefail

cd "$(dirname "$0")/.."
out="${OUT_DIR:-gpu-check}"
mkdir -p "$out"
cache="$out/engines"
export LATENTDIAL_ENGINE_CACHE="$cache"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python -c "import tensorrt; print('tensorrt', tensorrt.__version__)" | tee -a "$out/gpu.txt"

model_dir="${1:-}"
if [[ -z "$model_dir" ]]; then
  # an untrained model of the default architecture: speed and parity do not depend on weights
  run_dir="$out/run"
  rm -rf "$run_dir" "$out/model"
  python - "$run_dir" <<'PY'
import json, sys
from pathlib import Path
from latentdial.training.model import ModelConfig, build_model
from latentdial.training.run_dir import save_weights
run = Path(sys.argv[1]); run.mkdir(parents=True)
cfg = ModelConfig()
save_weights(build_model(cfg), run / "model.safetensors")
(run / "config.json").write_text(json.dumps({"model": cfg.to_dict(), "dataset": {"name": "dsprites"},
                                             "objective": {"name": "untrained"}}))
PY
  model_dir="$out/model/check/1"
  latentdial export "$run_dir" "$model_dir" --variants fp16,int8 | tee "$out/export.log"
fi

echo "== build engines (fp32, then fp16), then again: the second run must reuse the cache"
latentdial build-engine "$model_dir" --cache-dir "$cache" | tee "$out/build-fp32.log"
latentdial build-engine "$model_dir" --cache-dir "$cache" --fp16 | tee "$out/build-fp16.log"
start=$(date +%s)
latentdial build-engine "$model_dir" --cache-dir "$cache" --fp16 > "$out/build-cached.log"
echo "cached engine lookup took $(( $(date +%s) - start )) s"
find "$cache" -name '*.engine' -printf '%p %s bytes\n'

echo "== parity vs ONNX Runtime CPU and speed of every GPU runtime"
python scripts/gpu_host_check.py "$model_dir" --cache-dir "$cache" --json "$out/parity.json" \
  | tee "$out/parity.log"

echo "== side-by-side benchmark (CPU and GPU runtimes)"
python benchmarks/bench_runtimes.py --json "$out/bench.json" | tee "$out/bench.md"
echo "gpu host check passed; results in $out/"
