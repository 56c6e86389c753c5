"""Single-image encode through each front door, side by side: v1 gRPC, OIP gRPC, OIP HTTP (binary).

One ``latentdial serve`` process serves a generated 64x64 model on a gRPC port (v1 and OIP) and
an HTTP port; this process drives it with 1, 8 and 64 concurrent callers per front door. The
front doors run interleaved inside each round and every cell is the median of ``--repeat``
rounds, so the comparison holds on a machine whose speed drifts. Requests are prepared once
(bytes on the wire), so the client's own serialisation is not measured:

- ``v1-grpc``: ``latentdial.v1.LatentDial/Encode``, one (1, 64, 64, 1) uint8 tensor;
- ``oip-grpc``: ``inference.GRPCInferenceService/ModelInfer`` on ``<model>.encoder``, the same
  pixels as ``raw_input_contents`` (UINT8);
- ``oip-http``: ``POST /v2/models/<model>.encoder/infer`` with the binary tensor data extension,
  binary outputs (httpx, HTTP/1.1 keep-alive, one connection per caller).

Prints the load average before and after (latentdial.machine_load) and warns when the machine
was busy: figures from a busy machine must not be published. Usage:

    python benchmarks/bench_frontdoors.py [--models toy conv] [--callers 1 8 64] [--duration 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from closed_loop import drive, percentile_ms  # noqa: E402

DOORS = ("v1-grpc", "oip-grpc", "oip-http")


@dataclass
class Cell:
    model: str
    door: str
    callers: int
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def bodies(model: str) -> dict[str, bytes]:
    """The prepared request bytes of each front door for one (1, 64, 64, 1) uint8 image."""
    from latentdial.inference import grpc_service_pb2 as oip
    from latentdial.v1 import latentdial_pb2 as pb

    x = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 1), dtype=np.uint8)
    v1 = pb.EncodeRequest(model=pb.ModelRef(name=model), images=pb.ImageBatch(
        tensor=pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=x.shape, raw=x.tobytes())))
    infer = oip.ModelInferRequest(model_name=f"{model}.encoder", inputs=[
        oip.ModelInferRequest.InferInputTensor(name="images", datatype="UINT8", shape=x.shape)],
        raw_input_contents=[x.tobytes()])
    head = json.dumps({"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "UINT8",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return {"v1-grpc": v1.SerializeToString(), "oip-grpc": infer.SerializeToString(),
            "oip-http": head + x.tobytes(), "oip-http-header": str(len(head)).encode()}


async def run_cell(door: str, model: str, grpc_address: str, http_url: str, body: dict[str, bytes], callers: int,
                   duration: float, warmup: float) -> Cell:
    if door == "oip-http":
        import httpx

        limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
        headers = {"Inference-Header-Content-Length": body["oip-http-header"].decode(),
                   "Content-Type": "application/octet-stream"}
        async with httpx.AsyncClient(base_url=http_url, limits=limits, timeout=30) as client:
            path = f"/v2/models/{model}.encoder/infer"

            async def call():
                r = await client.post(path, content=body[door], headers=headers)
                r.raise_for_status()

            n, errors, lat = await drive(call, callers, duration, warmup)
    else:
        import grpc

        method = ("/latentdial.v1.LatentDial/Encode" if door == "v1-grpc"
                  else "/inference.GRPCInferenceService/ModelInfer")
        async with grpc.aio.insecure_channel(grpc_address) as channel:
            stub = channel.unary_unary(method)

            async def call():
                await stub(body[door], timeout=30)

            n, errors, lat = await drive(call, callers, duration, warmup)
    return Cell(model, door, callers, n, duration, errors, percentile_ms(lat, 0.50), percentile_ms(lat, 0.95),
                percentile_ms(lat, 0.99))


def start_server(repo: Path) -> tuple[subprocess.Popen, str, str]:
    from latentdial.serving.supervisor import free_port

    port, http_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "latentdial.cli", "serve", "--repository", str(repo), "--host", "127.0.0.1",
           "--port", str(port), "--http-port", str(http_port), "--metrics-port", "0", "--max-request-items", "1024"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("ready"):
            break
    else:
        raise RuntimeError("the server did not start:\n" + "".join(seen[-20:]))
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, f"127.0.0.1:{port}", f"http://127.0.0.1:{http_port}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["toy", "conv"], choices=["toy", "conv"],
                   help="toy: linear graph (transport-bound); conv: the disentanglement_lib conv encoder")
    p.add_argument("--callers", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--repeat", type=int, default=3, help="rounds; each cell reports its median round")
    p.add_argument("--json", type=Path, help="also write the cells and the load report here")
    args = p.parse_args()

    from fixtures.toy_model import build_conv_model, build_toy_model

    from latentdial.machine_load import LoadWatch

    watch = LoadWatch("bench_frontdoors").start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-frontdoors-"))
    if "toy" in args.models:
        build_toy_model(tmp, "toy", "1", image_shape=(1, 64, 64), latent_dim=10, with_card=False)
    if "conv" in args.models:
        build_conv_model(tmp, "conv", "1")
    proc, grpc_address, http_url = start_server(tmp)
    rounds: dict[tuple[str, str, int], list[Cell]] = {}
    try:
        for r in range(args.repeat):
            for model in args.models:
                body = bodies(model)
                for callers in args.callers:
                    for door in DOORS:
                        cell = asyncio.run(run_cell(door, model, grpc_address, http_url, body, callers,
                                                    args.duration, args.warmup))
                        rounds.setdefault((model, door, callers), []).append(cell)
                        print(f"round {r + 1}/{args.repeat} {model:4s} {door:8s} x{callers:<3d} "
                              f"{cell.rps:8.0f} req/s  p50 {cell.p50_ms:6.2f} ms  errors {cell.errors}",
                              file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    report = watch.stop()

    cells = [sorted(v, key=lambda c: c.rps)[len(v) // 2] for v in rounds.values()]
    print(f"\nlatentdial front doors, single-image Encode (median of {args.repeat} interleaved rounds; "
          f"client and server share this machine)\n")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in report.load_before)}")
    print("| model | callers | front door | req/s | p50 ms | p95 ms | p99 ms | errors | req/s vs v1-grpc |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    by_key = {(c.model, c.door, c.callers): c for c in cells}
    for model in args.models:
        for callers in args.callers:
            base = by_key[(model, "v1-grpc", callers)].rps
            for door in DOORS:
                c = by_key[(model, door, callers)]
                ratio = c.rps / base if base else float("nan")
                print(f"| {model} | {callers} | {door} | {c.rps:.0f} | {c.p50_ms:.2f} | {c.p95_ms:.2f} | "
                      f"{c.p99_ms:.2f} | {c.errors} | {ratio:.2f} |")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in report.load_after)}")
    print(report.line())
    if args.json:
        args.json.write_text(json.dumps({"cells": [asdict(c) | {"rps": c.rps} for c in cells],
                                         "rounds": {f"{k[0]}/{k[1]}/{k[2]}": [x.rps for x in v]
                                                    for k, v in rounds.items()},
                                         "median_of": args.repeat, "load": report.as_dict()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
