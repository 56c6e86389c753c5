#!/usr/bin/env bash
# The GPU host check in one bounded command (8 minutes by default): TensorRT engines (fp32, fp16) for
# every shipped model checked against ONNX Runtime CPU; the default model served on TensorRT, ONNX
# Runtime CUDA and torch CUDA with the service benchmark at 1, 8 and 64 callers and batch 64; the
# CUDA-graph training step under an lr cooldown with the lr it read checked. Each stage runs on its
# own, so one failure does not stop the rest (scripts/gpu_host_check.py says more).
#
#   scripts/gpu_host_check.sh [--out DIR] [--budget-s 480] [--stages ...]
#       (needs: pip install '.[export,tensorrt,gpu]' and torch with CUDA)
#
# Every figure and failure goes to DIR (default: $OUT, else gpu-check/). Exit status 1 when a stage failed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" scripts/gpu_host_check.py "$@"
