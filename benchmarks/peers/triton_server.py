"""Triton Inference Server through PyTriton, serving latentdial's ONNX graphs with ONNX Runtime.

Runs in ``.venv-pytriton`` (``make pytriton-venv``: nvidia-pytriton, which ships the
``tritonserver`` binary, onnxruntime and numpy). Each graph is one Triton model,
``<model>.encoder`` / ``<model>.decoder``, with Triton's dynamic batcher (max batch 256, no
queue delay, like latentdial's) in front of one Python model instance that runs
:class:`onnx_graph.OnnxGraph`. Prints ``peer_cli.READY`` once Triton serves, stops on SIGTERM.

    .venv-pytriton/bin/python benchmarks/peers/triton_server.py --model-dir models/dsprites/5 \
        --model dsprites --grpc-port 8001 --http-port 8000
"""

from __future__ import annotations

import os
import sys
import sysconfig

import numpy as np
import peer_cli
from onnx_graph import OnnxGraph, load_graphs

MAX_BATCH = 256


def infer_function(graph: OnnxGraph):
    """PyTriton's batched inference callable for one graph."""
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return graph.infer(inputs[graph.input_name])

    return infer


def use_this_libpython() -> None:
    """Let Triton's Python stub load this interpreter's libpython, not another one on the system path.

    The stub is linked against ``libpython3.X.so``; found elsewhere (e.g. the distribution's
    3.11.2 beside a pyenv 3.11.7), its built-in modules do not match this interpreter's standard
    library and the model fails to initialise.
    """
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p]
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(paths)


def main() -> int:
    use_this_libpython()
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    args = peer_cli.parser(__doc__.splitlines()[0]).parse_args()
    graphs = load_graphs(args.model_dir, args.model, peer_cli.files(args), args.session)
    config = TritonConfig(grpc_port=args.grpc_port, http_port=args.http_port, allow_metrics=False,
                          exit_timeout_secs=5)
    with Triton(config=config) as triton:
        for name, graph in graphs.items():
            ins, outs = graph.signature()
            triton.bind(model_name=name, infer_func=infer_function(graph),
                        inputs=[Tensor(name=k, dtype=np.float32, shape=v) for k, v in ins.items()],
                        outputs=[Tensor(name=k, dtype=np.float32, shape=v) for k, v in outs.items()],
                        config=ModelConfig(max_batch_size=MAX_BATCH,
                                           batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
                        strict=False)
        triton.run()
        peer_cli.announce_ready()
        peer_cli.wait_for_sigterm()
    return 0


if __name__ == "__main__":
    sys.exit(main())
