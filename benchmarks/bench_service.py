"""Service benchmark: throughput and latency per RPC, batching on vs off vs a raw gRPC echo floor.

Everything is measured side by side in one run, so the ratios hold on a noisy
shared machine even when the absolute figures drift:

- ``echo``: a grpc.aio server that answers each call with a reply of the real
  reply's size without parsing anything (the transport floor);
- ``on`` / ``off``: ``latentdial serve`` with dynamic batching on / off;
- ``onnxruntime``: the runtime alone, in this process, at batch 1 and 64.

Servers and load clients run in separate processes. Each client is closed
loop: C coroutines, each sends a request, waits for the answer, sends the next.
Clients send pre-serialised requests through generic stubs, so client cost is
identical against every server.

Usage::

    python benchmarks/bench_service.py                       # both models, ~3 minutes on 2 cores
    python benchmarks/bench_service.py --models toy --duration 2 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # toy model builders live with the test fixtures

SERVICE = "latentdial.v1.LatentDial"


@dataclass
class Scenario:
    model: str
    rpc: str  # Encode | Decode
    items: int  # images or latents per request
    concurrency: int


@dataclass
class Result:
    model: str
    rpc: str
    items: int
    concurrency: int
    mode: str
    requests_per_s: float
    items_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    server_cpu_ms: float  # server process CPU time (all threads) per request


# ------------------------------------------------------------------ payloads --
def payload(model_dir: Path, rpc: str, items: int) -> tuple[bytes, int]:
    """(serialised request, size of the real reply in bytes) for one scenario."""
    from latentdial.manifest import Manifest
    from latentdial.v1 import latentdial_pb2 as pb

    m = Manifest.load(model_dir)
    c, h, w = m.image_shape
    rng = np.random.default_rng(0)
    ref = pb.ModelRef(name=m.name)
    if rpc == "Encode":
        x = (rng.random((items, h, w, c)) * 255).astype(np.uint8)
        req = pb.EncodeRequest(model=ref, images=pb.ImageBatch(
            tensor=pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=x.shape, raw=x.tobytes())))
        z = np.zeros((items, m.latent_dim), np.float32)
        t = pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=z.shape, raw=z.tobytes())
        reply = pb.EncodeResponse(model=pb.ModelRef(name=m.name, version=m.version), mean=t, log_var=t)
    else:
        z = rng.standard_normal((items, m.latent_dim)).astype(np.float32)
        req = pb.DecodeRequest(model=ref, latents=pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=z.shape,
                                                            raw=z.tobytes()), output_format=pb.IMAGE_FORMAT_UINT8)
        img = np.zeros((items, h, w, c), np.uint8)
        reply = pb.DecodeResponse(model=pb.ModelRef(name=m.name, version=m.version), images=pb.ImageBatch(
            tensor=pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=img.shape, raw=img.tobytes())))
    return req.SerializeToString(), reply.ByteSize()


# -------------------------------------------------------------------- client --
async def _load(address: str, method: str, body: bytes, reply_bytes: int, concurrency: int,
                duration_s: float, warmup_s: float) -> dict:
    import grpc

    opts = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
    async with grpc.aio.insecure_channel(address, options=opts) as ch:
        call = ch.unary_unary(f"/{SERVICE}/{method}")
        md = (("x-reply-bytes", str(reply_bytes)),)
        await call(body, metadata=md, timeout=30)
        lat: list[float] = []
        errors = 0
        sent = 0
        t_start = time.perf_counter()
        t_measure = t_start + warmup_s
        t_end = t_measure + duration_s

        async def worker():
            nonlocal errors, sent
            while True:
                t0 = time.perf_counter()
                if t0 >= t_end:
                    return
                try:
                    await call(body, metadata=md, timeout=30)
                except grpc.RpcError:
                    errors += 1
                sent += 1
                t1 = time.perf_counter()
                if t0 >= t_measure:
                    lat.append(t1 - t0)

        await asyncio.gather(*[worker() for _ in range(concurrency)])
    a = np.asarray(lat) * 1e3
    return {"requests": len(lat), "sent": sent, "seconds": duration_s, "errors": errors,
            "p50": float(np.percentile(a, 50)) if len(a) else float("nan"),
            "p95": float(np.percentile(a, 95)) if len(a) else float("nan"),
            "p99": float(np.percentile(a, 99)) if len(a) else float("nan")}


def client_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--address")
    p.add_argument("--method")
    p.add_argument("--body")
    p.add_argument("--reply-bytes", type=int)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--duration", type=float)
    p.add_argument("--warmup", type=float)
    a = p.parse_args(argv)
    body = Path(a.body).read_bytes()
    out = asyncio.run(_load(a.address, a.method, body, a.reply_bytes, a.concurrency, a.duration, a.warmup))
    print(json.dumps(out))


# ---------------------------------------------------------------------- echo --
async def _echo(port: int) -> None:
    import grpc

    replies: dict[int, bytes] = {}

    async def handler(request: bytes, context) -> bytes:
        n = 0
        for k, v in context.invocation_metadata():
            if k == "x-reply-bytes":
                n = int(v)
        if n not in replies:
            replies[n] = bytes(n)
        return replies[n]

    server = grpc.aio.server(options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", 256 << 20),
                                      ("grpc.max_send_message_length", 256 << 20)])
    handlers = {m: grpc.unary_unary_rpc_method_handler(handler) for m in ("Encode", "Decode")}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready: echo", flush=True)
    await server.wait_for_termination()


# ------------------------------------------------------------------- driver --
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(mode: str, repo: Path, port: int) -> subprocess.Popen:
    if mode == "echo":
        cmd = [sys.executable, __file__, "_echo", str(port)]
    else:
        cmd = [sys.executable, "-m", "latentdial.cli", "serve", "--repository", str(repo), "--host", "127.0.0.1",
               "--port", str(port), "--metrics-port", "0", "--batching", mode, "--max-request-items", "1024"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.time() + 120
    for line in proc.stdout:
        if line.startswith("ready"):
            break
        if time.time() > deadline:
            break
    else:
        raise RuntimeError(f"server {mode} did not start")
    return proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(address: str, sc: Scenario, body_path: Path, reply_bytes: int, duration: float, warmup: float,
               procs: int, server_pid: int) -> dict:
    """Closed-loop load from ``procs`` processes sharing the concurrency; merged figures."""
    cpu0 = cpu_seconds(server_pid)
    per = [sc.concurrency // procs + (1 if i < sc.concurrency % procs else 0) for i in range(procs)]
    running = [
        subprocess.Popen([sys.executable, __file__, "_client", "--address", address, "--method", sc.rpc,
                          "--body", str(body_path), "--reply-bytes", str(reply_bytes), "--concurrency", str(c),
                          "--duration", str(duration), "--warmup", str(warmup)],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for c in per if c > 0
    ]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in running]
    cpu_ms = 1e3 * (cpu_seconds(server_pid) - cpu0) / max(1, sum(o["sent"] for o in outs))
    total = sum(o["requests"] for o in outs)
    weights = np.array([o["requests"] for o in outs], float)
    pick = lambda k: float(np.average([o[k] for o in outs], weights=weights)) if total else float("nan")
    return {"requests_per_s": total / duration, "p50": pick("p50"), "p95": pick("p95"), "p99": pick("p99"),
            "errors": sum(o["errors"] for o in outs), "cpu_ms": cpu_ms}


def ort_cell(rt, shape: tuple[int, ...], items: int, seconds: float) -> float:
    """Images/s of one runtime alone at batch ``items`` over ``seconds`` (no gRPC, no conversion)."""
    x = np.random.default_rng(0).random((items, *shape), dtype=np.float32)
    rt.run({"images": x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        rt.run({"images": x})
        n += items
    return n / (time.perf_counter() - t0)


def ort_floor(model_dir: Path, seconds: float) -> dict[int, float]:
    """Encoder images/s of ONNX Runtime alone at batch 1 and 64 (no gRPC)."""
    from latentdial.serving.runtimes import load_runtime

    from latentdial.manifest import Manifest

    m = Manifest.load(model_dir)
    rt = load_runtime(model_dir, m, "encoder")
    out = {}
    for b in (1, 64):
        x = np.random.default_rng(0).random((b, *m.image_shape), dtype=np.float32)
        rt.run({"images": x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            rt.run({"images": x})
            n += b
        out[b] = n / (time.perf_counter() - t0)
    rt.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["toy", "conv"], choices=["toy", "conv"],
                   help="toy: linear 64x64 graph (transport-bound); conv: disentanglement_lib conv net (compute-bound)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per cell")
    p.add_argument("--repeat", type=int, default=2, help="rounds per cell; the median round is reported")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--client-procs", type=int, default=1, help="load processes per cell")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    from fixtures.toy_model import build_conv_model, build_toy_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    dirs = {}
    if "toy" in args.models:
        dirs["toy"] = build_toy_model(tmp, "toy", "1", image_shape=(1, 64, 64), latent_dim=10, with_card=False).path
    if "conv" in args.models:
        dirs["conv"] = build_conv_model(tmp, "conv", "1")
    scenarios = [Scenario(m, rpc, 1, c) for m in dirs for rpc in ("Encode", "Decode") for c in args.concurrency]
    scenarios += [Scenario(m, "Encode", 64, c) for m in dirs for c in (1, 8)]

    floors = {m: ort_floor(d, args.duration) for m, d in dirs.items()}
    from latentdial.serving.runtimes import load_runtime

    from latentdial.manifest import Manifest

    manifests = {m: Manifest.load(d) for m, d in dirs.items()}
    runtimes = {m: load_runtime(d, manifests[m], "encoder") for m, d in dirs.items()}
    image_shapes = {m: manifests[m].image_shape for m in dirs}
    bodies = {}
    for i, sc in enumerate(scenarios):
        body, reply = payload(dirs[sc.model], sc.rpc, sc.items)
        path = tmp / f"req{i}.bin"
        path.write_bytes(body)
        bodies[i] = (path, reply)

    results: list[Result] = []
    modes = ("echo", "on", "off")
    servers = {}
    try:
        for mode in modes:  # all three up at once; an idle server costs nothing
            port = free_port()
            servers[mode] = (start_server(mode, tmp, port), port)
        for i, sc in enumerate(scenarios):
            rounds: dict[str, list[Result]] = {m: [] for m in modes}
            for _ in range(args.repeat):
                if sc.rpc == "Encode" and sc.items > 1:  # the runtime alone, in the same round
                    ips = ort_cell(runtimes[sc.model], image_shapes[sc.model], sc.items, args.duration)
                    rounds.setdefault("onnxruntime", []).append(
                        Result(sc.model, sc.rpc, sc.items, sc.concurrency, "onnxruntime", ips / sc.items, ips,
                               float("nan"), float("nan"), float("nan"), 0, float("nan")))
                for mode in modes:  # interleaved, so that the ratios compare the same minute of machine load
                    proc, port = servers[mode]
                    r = run_client(f"127.0.0.1:{port}", sc, *bodies[i], args.duration, args.warmup,
                                   args.client_procs, proc.pid)
                    rounds[mode].append(Result(sc.model, sc.rpc, sc.items, sc.concurrency, mode, r["requests_per_s"],
                                               r["requests_per_s"] * sc.items, r["p50"], r["p95"], r["p99"],
                                               r["errors"], r["cpu_ms"]))
            for mode, done in rounds.items():
                ranked = sorted(done, key=lambda x: x.requests_per_s)
                best = ranked[len(ranked) // 2]
                results.append(best)
                print(f"  {mode:>4} {sc.model:>4} {sc.rpc:<6} x{sc.items:<3} c={sc.concurrency:<3} "
                      f"{best.requests_per_s:8.0f} req/s  p50 {best.p50_ms:.2f} ms "
                      f"(rounds: {', '.join(f'{x.requests_per_s:.0f}' for x in done)})",
                      file=sys.stderr, flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)

    report(results, floors, args)


def report(results: list[Result], floors: dict[str, dict[int, float]], args) -> None:
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"
    print(f"\nlatentdial service benchmark ({machine}; clients and server share the machine)\n")
    print("| model | RPC | items/req | callers | server | req/s | items/s | p50 ms | p95 ms | p99 ms "
          "| server CPU ms/req | errors |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.model} | {r.rpc} | {r.items} | {r.concurrency} | {r.mode} | {r.requests_per_s:.0f} | "
              f"{r.items_per_s:.0f} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.p99_ms:.2f} | {r.server_cpu_ms:.3f} "
              f"| {r.errors} |")
    idx = {(r.model, r.rpc, r.items, r.concurrency, r.mode): r for r in results}
    print("\nRatios (same run):\n")
    print("| model | check | value | target |")
    print("|---|---|---:|---|")
    ratios = []
    for m in floors:
        for rpc in ("Encode", "Decode"):
            for c in args.concurrency:
                on, off, echo = (idx.get((m, rpc, 1, c, k)) for k in ("on", "off", "echo"))
                if on and off:
                    ratios.append((m, f"{rpc} x1, {c} callers: batching on / off", on.requests_per_s /
                                   off.requests_per_s, ">= 2.0" if (rpc, c) == ("Encode", 64) else ""))
                    ratios.append((m, f"{rpc} x1, {c} callers: server CPU per request, off / on",
                                   off.server_cpu_ms / max(on.server_cpu_ms, 1e-9), ""))
                if on and echo:
                    ratios.append((m, f"{rpc} x1, {c} callers: on / echo floor", on.requests_per_s /
                                   echo.requests_per_s, ">= 0.70" if (rpc, c) == ("Encode", 64) else ""))
        for c in (1, 8):
            on = idx.get((m, "Encode", 64, c, "on"))
            alone = idx.get((m, "Encode", 64, c, "onnxruntime"))
            if on and alone:
                ratios.append((m, f"Encode x64, {c} callers: images/s / onnxruntime batch 64 (same round)",
                               on.items_per_s / alone.items_per_s, ">= 0.70" if c == 1 else ""))
        ratios.append((m, "onnxruntime encoder images/s at batch 64 / batch 1", floors[m][64] / floors[m][1], ""))
    for m, what, v, target in ratios:
        print(f"| {m} | {what} | {v:.2f} | {target} |")
    print("\nONNX Runtime alone (encoder images/s): " +
          ", ".join(f"{m}: batch 1 {f[1]:.0f}, batch 64 {f[64]:.0f}" for m, f in floors.items()))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": [asdict(r) for r in results],
                                         "onnxruntime_images_per_s": floors,
                                         "ratios": [{"model": m, "check": w, "value": v, "target": t}
                                                    for m, w, v, t in ratios]}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        client_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_echo":
        asyncio.run(_echo(int(sys.argv[2])))
    else:
        main()
