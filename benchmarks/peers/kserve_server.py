"""KServe's ``ModelServer`` serving latentdial's ONNX graphs with ONNX Runtime.

Runs in ``.venv-kserve`` (``make kserve-venv``: kserve, onnxruntime, numpy). Each graph is one
KServe model, ``<model>.encoder`` / ``<model>.decoder``, whose ``predict`` runs
:class:`onnx_graph.OnnxGraph` on the request's batch as it comes (KServe's ModelServer has no
dynamic batcher of its own). Open Inference Protocol v2 over gRPC and REST, one worker, latency
logging and the per-call INFO log line off. Prints ``peer_cli.READY`` once the gRPC port accepts connections, stops on SIGTERM.

    .venv-kserve/bin/python benchmarks/peers/kserve_server.py --model-dir models/dsprites/5 \
        --model dsprites --grpc-port 8081 --http-port 8080
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from typing import Any

import peer_cli
from onnx_graph import OnnxGraph, load_graphs


def kserve_model(name: str, graph: OnnxGraph) -> Any:
    """A ``kserve.Model`` whose predict runs one graph."""
    from kserve import InferOutput, InferRequest, InferResponse, Model

    class GraphModel(Model):
        def load(self) -> bool:
            self.ready = True
            return self.ready

        def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                    response_headers: dict[str, str] | None = None) -> InferResponse:
            outputs = graph.infer(payload.inputs[0].as_numpy())
            infer_outputs = []
            for k, v in outputs.items():
                out = InferOutput(name=k, shape=list(v.shape), datatype="FP32")
                out.set_data_from_numpy(v, binary_data=True)
                infer_outputs.append(out)
            return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=infer_outputs)

    model = GraphModel(name)
    model.load()
    return model


def announce_when_listening(port: int, timeout_s: float = 60.0) -> None:
    """Print ``peer_cli.READY`` once 127.0.0.1:port accepts a connection (ModelServer.start blocks)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                peer_cli.announce_ready()
                return
        except OSError:
            time.sleep(0.2)


def main() -> int:
    args = peer_cli.parser(__doc__.splitlines()[0]).parse_args()
    graphs = load_graphs(args.model_dir, args.model, peer_cli.files(args), args.session)
    from kserve import ModelServer

    sys.argv = sys.argv[:1]  # KServe reads its own flags from the command line at import time
    models = [kserve_model(name, g) for name, g in graphs.items()]
    server = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1,
                         enable_grpc=True, enable_latency_logging=False, grace_period=5)
    logging.getLogger("kserve").setLevel(logging.WARNING)  # its INFO line per gRPC call; latentdial logs none
    threading.Thread(target=announce_when_listening, args=(args.grpc_port,), daemon=True).start()
    server.start(models)  # returns when the server has stopped (SIGTERM / SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
