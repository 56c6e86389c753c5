"""Closed-loop load against one server: OIP gRPC through tritonclient, or latentdial's v1 Encode.

One process per (server, protocol) runs every cell of a plan one after the other and prints
one JSON line per cell. Protocols:

- ``oip``: ``tritonclient.grpc.aio`` (Triton's own client; run it with ``.venv-tritonclient``),
  ``ModelInfer`` on ``<model>.<graph>`` with FP32 tensors in the OIP layout; the same client
  and the same request against every server. Inputs and requested outputs are built once per
  cell and reused, so the client does not rebuild them per call.
- ``v1``: ``latentdial.v1.LatentDial/Encode`` over grpc.aio with the request serialised once
  (FLOAT32 images, the same bytes as the OIP request's tensor); run it with latentdial's venv.

A cell is ``{"model", "graph", "batch", "callers", "image_hwc", "latent_dim"}``.

    python benchmarks/peers/load_client.py --protocol oip --address 127.0.0.1:8001 \
        --plan plan.json --duration 3 --warmup 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from closed_loop import drive, summary  # noqa: E402

MAX_MESSAGE = 256 << 20


def input_array(cell: dict[str, Any]) -> np.ndarray:
    """The cell's request tensor: images in [0, 1] (N, H, W, C) or latents (N, D), FP32, seeded."""
    rng = np.random.default_rng(0)
    if cell["graph"] == "encoder":
        return rng.random((cell["batch"], *cell["image_hwc"]), dtype=np.float32)
    return rng.standard_normal((cell["batch"], cell["latent_dim"])).astype(np.float32)


def oip_outputs(result: Any, cell: dict[str, Any]) -> dict[str, np.ndarray]:
    """The output tensors of a tritonclient InferResult."""
    return {o: result.as_numpy(o) for o in (("mean", "log_var") if cell["graph"] == "encoder" else ("images",))}


def v1_outputs(reply: bytes, cell: dict[str, Any]) -> dict[str, np.ndarray]:
    """mean and log_var of a serialised v1 EncodeResponse."""
    from latentdial.v1 import latentdial_pb2 as pb

    r = pb.EncodeResponse.FromString(reply)
    return {k: np.frombuffer(t.raw, "<f4").reshape(tuple(t.shape)) for k, t in (("mean", r.mean),
                                                                               ("log_var", r.log_var))}


def oip_call(client: Any, cell: dict[str, Any]) -> Callable[[], Awaitable[object]]:
    """An OIP ModelInfer call for the cell through tritonclient's asyncio gRPC client."""
    import tritonclient.grpc.aio as grpcclient

    x = input_array(cell)
    name = "images" if cell["graph"] == "encoder" else "latents"
    inp = grpcclient.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    outs = [grpcclient.InferRequestedOutput(o)
            for o in (("mean", "log_var") if cell["graph"] == "encoder" else ("images",))]
    model = f"{cell['model']}.{cell['graph']}"

    async def call() -> object:
        return await client.infer(model, [inp], outputs=outs, client_timeout=60)

    return call


def v1_call(channel: Any, cell: dict[str, Any]) -> Callable[[], Awaitable[object]]:
    """A v1 Encode call with the request serialised once."""
    from latentdial.v1 import latentdial_pb2 as pb

    if cell["graph"] != "encoder":
        raise ValueError("the v1 client measures Encode only")
    x = input_array(cell)
    body = pb.EncodeRequest(model=pb.ModelRef(name=cell["model"]), images=pb.ImageBatch(
        tensor=pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=x.shape, raw=x.tobytes()))).SerializeToString()
    stub = channel.unary_unary("/latentdial.v1.LatentDial/Encode")

    async def call() -> object:
        return await stub(body, timeout=60)

    return call


async def run_plan(protocol: str, address: str, plan: list[dict[str, Any]], duration: float,
                   warmup: float, dump: Path | None = None) -> None:
    """Run every cell; print one JSON line (the cell plus its summary) per cell.

    ``dump``: the first answer of each graph is saved there as ``<graph>-b<batch>.npz``, for the
    harness to check that the server computed what the others did.
    """
    opts = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
    if protocol == "oip":
        import tritonclient.grpc.aio as grpcclient

        conn: Any = grpcclient.InferenceServerClient(address, channel_args=opts)
        make, outputs = oip_call, oip_outputs
    else:
        import grpc

        conn = grpc.aio.insecure_channel(address, options=opts)
        make, outputs = v1_call, v1_outputs
    dumped: set[str] = set()
    try:
        for cell in plan:
            call = make(conn, cell)
            first = await call()  # fails loudly here if the server does not answer this cell at all
            if dump is not None and cell["graph"] not in dumped:
                dumped.add(cell["graph"])
                np.savez(dump / f"{cell['graph']}-b{cell['batch']}.npz", **outputs(first, cell))
            kinds: dict[str, int] = {}
            n, errors, lat = await drive(call, cell["callers"], duration, warmup, kinds)
            print(json.dumps(cell | summary(n, errors, lat, duration, cell["batch"]) | {"error_kinds": kinds}),
                  flush=True)
    finally:
        await conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=["oip", "v1"], required=True)
    p.add_argument("--address", required=True, help="host:port of the gRPC server")
    p.add_argument("--plan", type=Path, required=True, help="JSON list of cells")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each cell")
    p.add_argument("--dump", type=Path, help="save the first answer of each graph here (.npz)")
    a = p.parse_args()
    asyncio.run(run_plan(a.protocol, a.address, json.loads(a.plan.read_text()), a.duration, a.warmup, a.dump))
    return 0


if __name__ == "__main__":
    sys.exit(main())
