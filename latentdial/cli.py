"""The ``latentdial`` command line: one subcommand per stage.

Each subcommand lives in its stage's package as a module with
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import only the
standard library at top level; heavy dependencies (torch, onnxruntime, grpc)
are imported inside ``run`` so that, e.g., ``latentdial serve`` works in an
environment without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help). Add a stage's command here.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("latentdial.training.cli_train", "train a model (a VAE, InfoGAN-CR, a contrastive encoder, StarGAN) into a run directory"),
    "sweep": ("latentdial.training.cli_sweep", "train several configs for a fixed budget and rank them"),
    "evaluate": ("latentdial.training.cli_evaluate", "compute disentanglement metrics and the factor card"),
    "export": ("latentdial.export.cli", "export a run directory to an ONNX model directory"),
    "build-engine": ("latentdial.serving.runtimes.cli_engine", "build TensorRT engines for a model directory"),
    "serve": ("latentdial.serving.cli", "serve a model repository over gRPC"),
    "client": ("latentdial.client.cli", "call a latentdial server (encode, decode, traverse, edit, generate)"),
    "evaluate-edits": ("latentdial.training.cli_edits", "measure edit fidelity through a running server"),
    "train-reader": ("latentdial.training.cli_reader", "train the attribute reader that judges edits"),
    "make-folder": ("latentdial.training.cli_make_folder", "write a labelled image folder rendered from a dataset"),
    "centrality": ("latentdial.training.cli_centrality",
                   "select the most central of several trained models (ModelCentrality), no labels used"),
}


def _parser(load: set[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentdial", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name in load:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser({chosen} if chosen in COMMANDS else set())
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
