"""Turn a trained VAEModel into the two graphs of a model directory.

The graphs have the fixed signatures of ``latentdial.manifest``:

- encoder: ``images`` (N, C, H, W) float32 in [0, 1] -> ``mean``, ``log_var`` (N, D)
- decoder: ``latents`` (N, D) float32 -> ``images`` (N, C, H, W) float32 in [0, 1]

The decoder of ``training/model.py`` returns logits; :class:`DecoderGraph` puts the
sigmoid inside the exported graph so that no caller ever sees logits. The batch
axis is dynamic in every file written here.

Two formats are written:

- ONNX (``torch.onnx.export``; the torch.export-based exporter by default, the
  TorchScript exporter on request), checked with ``onnx.checker`` and slimmed with
  onnxslim (constant folding, dead-node removal, fusions);
- a ``torch.export`` program (``.pt2``) that the torch runtime loads without any
  code from ``training/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from latentdial.manifest import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    Graph,
)

log = logging.getLogger(__name__)

Exporter = Literal["dynamo", "torchscript"]
#: Largest batch the symbolic batch dimension admits during torch.export tracing.
MAX_TRACE_BATCH = 1 << 16


class EncoderGraph(nn.Module):
    """images (N, C, H, W) in [0, 1] -> (mean (N, D), log_var (N, D))."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(images)


class DecoderGraph(nn.Module):
    """latents (N, D) -> images (N, C, H, W) in [0, 1]: the decoder's logits through a sigmoid."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(latents))


def graph_module(model: nn.Module, graph: Graph) -> nn.Module:
    """The exportable wrapper of ``model.encoder`` or ``model.decoder``, in eval mode."""
    if graph == "encoder":
        return EncoderGraph(model.encoder).eval()
    if graph == "decoder":
        return DecoderGraph(model.decoder).eval()
    raise ValueError(f"unknown graph {graph!r}; valid: ['decoder', 'encoder']")


def io_names(graph: Graph) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(input names, output names) of ``graph``, as fixed by the manifest contract."""
    if graph == "encoder":
        return ENCODER_INPUTS, ENCODER_OUTPUTS
    return DECODER_INPUTS, DECODER_OUTPUTS


def example_input(graph: Graph, image_shape: tuple[int, int, int], latent_dim: int,
                  batch: int = 2) -> torch.Tensor:
    """A deterministic example input for tracing: (batch, C, H, W) or (batch, D)."""
    gen = torch.Generator().manual_seed(0)
    if graph == "encoder":
        return torch.rand((batch, *image_shape), generator=gen)
    return torch.randn((batch, latent_dim), generator=gen)


def export_onnx(
    module: nn.Module,
    graph: Graph,
    example: torch.Tensor,
    path: Path,
    *,
    opset: int = 17,
    exporter: Exporter = "dynamo",
) -> Path:
    """Write ``module`` as ONNX with a dynamic batch axis and the contract's I/O names; check it.

    Raises ValueError for opset < 17 and onnx.checker.ValidationError for an invalid graph.
    """
    import onnx

    if opset < 17:
        raise ValueError(f"opset {opset} is too old; latentdial exports opset >= 17")
    inputs, outputs = io_names(graph)
    path = Path(path)
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=MAX_TRACE_BATCH)
        program = torch.onnx.export(
            module, (example,), dynamo=True, opset_version=opset, input_names=list(inputs),
            output_names=list(outputs), dynamic_shapes={inputs[0]: {0: batch}}, verbose=False,
        )
        program.save(str(path))
    elif exporter == "torchscript":
        axes = {name: {0: "batch"} for name in (*inputs, *outputs)}
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=list(inputs), output_names=list(outputs), dynamic_axes=axes,
        )
    else:
        raise ValueError(f"unknown exporter {exporter!r}; valid: ['dynamo', 'torchscript']")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    _check_signature(model, graph)
    return path


def _check_signature(model, graph: Graph) -> None:
    """The ONNX file has exactly the contract's names and a symbolic batch axis on every I/O."""
    inputs, outputs = io_names(graph)
    got_in = tuple(i.name for i in model.graph.input)
    got_out = tuple(o.name for o in model.graph.output)
    if got_in != inputs or got_out != outputs:
        raise ValueError(f"{graph}: exported I/O {got_in} -> {got_out}, expected {inputs} -> {outputs}")
    for value in (*model.graph.input, *model.graph.output):
        dim0 = value.type.tensor_type.shape.dim[0]
        if dim0.HasField("dim_value"):
            raise ValueError(f"{graph}: {value.name} has a fixed batch of {dim0.dim_value}; must be dynamic")


def optimise_onnx(src: Path, dst: Path) -> Path:
    """Graph optimisation pass: onnxslim (constant folding, dead code, fusions); re-checked."""
    import onnx
    import onnxslim

    slim = onnxslim.slim(str(src))
    onnx.checker.check_model(slim, full_check=True)
    onnx.save(slim, str(dst))
    return Path(dst)


def export_program(module: nn.Module, graph: Graph, example: torch.Tensor, path: Path) -> Path:
    """Save a ``torch.export`` program (.pt2) with a dynamic batch; loads with torch.export.load."""
    inputs, _ = io_names(graph)
    batch = torch.export.Dim("batch", min=1, max=MAX_TRACE_BATCH)
    program = torch.export.export(module, (example,), dynamic_shapes={inputs[0]: {0: batch}})
    torch.export.save(program, str(path))
    return Path(path)
