"""``latentdial export RUN_DIR MODEL_DIR``: a training run -> an ONNX model directory.

Imports only the standard library at top level; torch and ONNX load inside ``run``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="training run directory (config.json + model.safetensors)")
    parser.add_argument("model_dir", type=Path, help="output, e.g. models/dsprites/1 (must not exist)")
    parser.add_argument("--name", help="model name (default: parent directory of MODEL_DIR)")
    parser.add_argument("--version", help="model version (default: last component of MODEL_DIR)")
    parser.add_argument("--variants", default="",
                        help="comma-separated precision variants: fp16 (GPU), int8 (CPU; kept only "
                             "if faster at an acceptable error)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    parser.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                        help="torch.onnx exporter (default: the torch.export-based one)")
    parser.add_argument("--no-torch-program", action="store_true",
                        help="do not write encoder.pt2/decoder.pt2 (used by the torch runtime)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing MODEL_DIR")
    parser.add_argument("--choice-rounds", type=int, default=5,
                        help="rounds timing each graph file and session option set on this host for the "
                             "manifest's graph_choice (0: skip; serving then measures at load)")


def run(args: argparse.Namespace) -> int:
    from latentdial.export.bundle import ExportError, export_run
    from latentdial.export.parity import ParityError

    try:
        export_run(
            args.run_dir, args.model_dir, name=args.name, version=args.version,
            variant_names=args.variants, opset=args.opset, exporter=args.exporter,
            torch_program=not args.no_torch_program, overwrite=args.overwrite,
            choice_rounds=args.choice_rounds,
        )
    except (ExportError, ParityError, ValueError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    return 0
