"""Service benchmark: the service against its ceiling, batching on vs off, one worker vs two.

Everything is measured side by side in one run, so the ratios hold even when the
absolute figures drift:

- ``echo``: a grpc.aio server that answers each call with a reply of the real
  reply's size without parsing anything (transport alone);
- ``onnxruntime``: each graph alone in this process at batch 1, 8, 16, 32 and 64
  (compute alone), before and after the service cells; its best images/s counts;
- ``on`` / ``off``: ``latentdial serve`` with (adaptive) dynamic batching on / off;
- ``on-w2``: ``latentdial serve --workers 2`` (with ``--workers 1 2``).

The **ceiling** of a cell is the serial combination of transport and compute, the
most one process on this machine can reach: ``1 / (1 / echo req/s + items per
request / best ONNX Runtime images/s)``, with the echo measured at the same
concurrency and payload. The service is reported as a fraction of it.

Servers and load clients run in separate processes. Each client is closed
loop: C coroutines, each sends a request, waits for the answer, sends the next.
Clients send pre-serialised requests through generic stubs, so client cost is
identical against every server. The load average before and after, and the CPU
other processes used, are recorded; a busy machine is reported loudly and its
figures must not be published.

Outputs (``--out``, default ``reports/bench_service``): ``bench_service.json`` (every
cell, the ceilings, the targets, the load) and ``bench_service.md`` (the tables of
docs/api.md and the README, ready to paste, with the load-average line).

Usage::

    python benchmarks/bench_service.py                        # both models, about 12 minutes on 2 cores
    python benchmarks/bench_service.py --models toy --duration 1 --repeat 1 --concurrency 1 64
    python benchmarks/bench_service.py --workers 1 2          # also latentdial serve --workers 2
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
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latentdial.serving.embedded import free_port

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
BATCHES = (1, 8, 16, 32, 64)  # batch sizes of the ONNX Runtime alone measurement
INPUTS = {"encoder": "images", "decoder": "latents"}
GRAPH_OF = {"Encode": "encoder", "Decode": "decoder"}


def _drain(stream) -> None:
    for _ in stream:  # keep reading, so that a chatty server never blocks on a full pipe
        pass


def start_server(mode: str, repo: Path, port: int) -> subprocess.Popen:
    """Start one server of ``mode`` (echo, on, off, on-w2) on ``port``; returns once it is ready."""
    workers = 2 if mode == "on-w2" else 1
    if mode == "echo":
        cmd = [sys.executable, __file__, "_echo", str(port)]
    else:
        cmd = [sys.executable, "-m", "latentdial.cli", "serve", "--repository", str(repo), "--host", "127.0.0.1",
               "--port", str(port), "--metrics-port", "0", "--http", "off", "--batching", "off" if mode == "off" else "on",
               "--max-request-items", "1024", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    want = f"ready: {workers} workers" if workers > 1 else "ready"
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if (want in line) if workers > 1 else line.startswith(want):
            break
    else:
        raise RuntimeError(f"server {mode} did not start:\n{''.join(seen[-20:])}")
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
    return proc


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc/<pid>/task/*/children)."""
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                pids += _tree(int(child))
    except OSError:
        pass
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its descendants, all threads (Linux /proc)."""
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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


def graph_input(manifest, graph: str, items: int) -> np.ndarray:
    shape = manifest.image_shape if graph == "encoder" else (manifest.latent_dim,)
    return np.random.default_rng(0).random((items, *shape), dtype=np.float32)


def ort_cell(rt, x: np.ndarray, name: str, seconds: float) -> float:
    """Images/s of one runtime alone on the batch ``x`` over ``seconds`` (no gRPC, no conversion)."""
    rt.run({name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        rt.run({name: x})
        n += len(x)
    return n / (time.perf_counter() - t0)


def ort_rates(runtimes: dict, manifests: dict, seconds: float) -> dict[str, dict[str, dict[int, float]]]:
    """model -> graph -> batch -> images/s of ONNX Runtime alone (compute alone)."""
    return {m: {g: {b: ort_cell(rt, graph_input(manifests[m], g, b), INPUTS[g], seconds) for b in BATCHES}
                for g, rt in graphs.items()}
            for m, graphs in runtimes.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["toy", "conv"], choices=["toy", "conv"],
                   help="toy: linear 64x64 graph (transport-bound); conv: disentanglement_lib conv net (compute-bound)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64],
                   help="callers of the single-item Encode cells")
    p.add_argument("--decode-concurrency", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--workers", type=int, nargs="+", default=[1], choices=[1, 2],
                   help="1 2: also measure latentdial serve --workers 2 (mode on-w2)")
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per cell")
    p.add_argument("--repeat", type=int, default=3, help="rounds per cell; the median round is reported")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--client-procs", type=int, default=1, help="load processes per cell")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_service",
                   help="writes bench_service.json and bench_service.md here")
    args = p.parse_args()

    from latentdial.machine_load import LoadWatch

    watch = LoadWatch("bench_service").start()
    from fixtures.toy_model import build_conv_model, build_toy_model

    from latentdial.manifest import Manifest
    from latentdial.serving.runtimes import load_runtime

    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    dirs = {}
    if "toy" in args.models:
        dirs["toy"] = build_toy_model(tmp, "toy", "1", image_shape=(1, 64, 64), latent_dim=10, with_card=False).path
    if "conv" in args.models:
        dirs["conv"] = build_conv_model(tmp, "conv", "1")
    scenarios = [Scenario(m, "Encode", 1, c) for m in dirs for c in args.concurrency]
    scenarios += [Scenario(m, "Decode", 1, c) for m in dirs for c in args.decode_concurrency]
    scenarios += [Scenario(m, "Encode", 64, c) for m in dirs for c in (1, 8)]

    manifests = {m: Manifest.load(d) for m, d in dirs.items()}
    runtimes = {m: {g: load_runtime(d, manifests[m], g) for g in INPUTS} for m, d in dirs.items()}
    print("ONNX Runtime alone ...", file=sys.stderr, flush=True)
    ort_before = ort_rates(runtimes, manifests, args.duration / 2)
    bodies = {}
    for i, sc in enumerate(scenarios):
        body, reply = payload(dirs[sc.model], sc.rpc, sc.items)
        path = tmp / f"req{i}.bin"
        path.write_bytes(body)
        bodies[i] = (path, reply)

    results: list[Result] = []
    modes = ["echo", "on", "off"] + (["on-w2"] if 2 in args.workers else [])
    servers = {}
    try:
        for mode in modes:  # all up at once; an idle server costs nothing
            port = free_port()
            servers[mode] = (start_server(mode, tmp, port), port)
        for i, sc in enumerate(scenarios):
            rounds: dict[str, list[Result]] = {m: [] for m in modes}
            for _ in range(args.repeat):
                if sc.items > 1:  # the runtime alone at the request's batch, in the same round
                    x = graph_input(manifests[sc.model], GRAPH_OF[sc.rpc], sc.items)
                    ips = ort_cell(runtimes[sc.model][GRAPH_OF[sc.rpc]], x, INPUTS[GRAPH_OF[sc.rpc]], args.duration)
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
                print(f"  {mode:>11} {sc.model:>4} {sc.rpc:<6} x{sc.items:<3} c={sc.concurrency:<3} "
                      f"{best.requests_per_s:8.0f} req/s  p50 {best.p50_ms:.2f} ms "
                      f"(rounds: {', '.join(f'{x.requests_per_s:.0f}' for x in done)})",
                      file=sys.stderr, flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    ort_after = ort_rates(runtimes, manifests, args.duration / 2)
    load = watch.stop()  # after every server and client was waited for; warns loudly when busy
    ort = {m: {g: {b: max(ort_before[m][g][b], ort_after[m][g][b]) for b in BATCHES} for g in INPUTS}
           for m in dirs}
    payload_json = analyse(results, ort, load, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_service.json").write_text(json.dumps(payload_json, indent=2) + "\n")
    text = markdown(payload_json)
    (args.out / "bench_service.md").write_text(text)
    print("\n" + text)
    print(f"wrote {args.out / 'bench_service.json'} and {args.out / 'bench_service.md'}")


# ------------------------------------------------------------------- report --
def ceiling_rps(echo_rps: float, items: int, best_ips: float) -> float:
    """Serial combination of transport and compute: 1 / (1 / echo req/s + items / best images/s)."""
    return 1.0 / (1.0 / echo_rps + items / best_ips)


def analyse(results: list[Result], ort: dict, load, args) -> dict:
    """Cells with their ceilings, the targets of the issue, and the load; what bench_service.json holds."""
    idx = {(r.model, r.rpc, r.items, r.concurrency, r.mode): r for r in results}
    best = {m: {g: max(rates.values()) for g, rates in graphs.items()} for m, graphs in ort.items()}
    cells = []
    for r in results:
        row = asdict(r)
        echo = idx.get((r.model, r.rpc, r.items, r.concurrency, "echo"))
        if r.mode not in ("echo", "onnxruntime") and echo and echo.requests_per_s > 0:
            row["ceiling_rps"] = ceiling_rps(echo.requests_per_s, r.items, best[r.model][GRAPH_OF[r.rpc]])
            row["of_ceiling"] = r.requests_per_s / row["ceiling_rps"]
        cells.append(row)
    checks = []

    def check(model: str, what: str, value: float | None, target: str, met: bool | None) -> None:
        checks.append({"model": model, "check": what, "value": value, "target": target, "met": met})

    top = max(args.concurrency)
    for m in ort:
        enc64 = idx.get((m, "Encode", 1, top, "on"))
        if enc64 and (m, "Encode", 1, top, "echo") in idx:
            c = next(x for x in cells if x["model"] == m and x["rpc"] == "Encode" and x["items"] == 1
                     and x["concurrency"] == top and x["mode"] == "on")
            check(m, f"Encode x1, {top} callers: service / ceiling", c["of_ceiling"], ">= 0.80",
                  c["of_ceiling"] >= 0.80)
        on1, echo1 = idx.get((m, "Encode", 1, 1, "on")), idx.get((m, "Encode", 1, 1, "echo"))
        if on1 and echo1:
            call_ms = 1e3 / ort[m]["encoder"][1]
            over = on1.p50_ms - (echo1.p50_ms + call_ms)
            check(m, f"Encode x1, 1 caller: p50 - (echo p50 + one batch-1 call of {call_ms:.2f} ms), ms", over,
                  "<= 1.0", over <= 1.0)
        on64, alone = idx.get((m, "Encode", 64, 1, "on")), idx.get((m, "Encode", 64, 1, "onnxruntime"))
        if on64 and alone:
            v = on64.items_per_s / alone.items_per_s
            check(m, "Encode x64, 1 caller: images/s / ONNX Runtime alone at batch 64 (same round)", v,
                  ">= 0.90", v >= 0.90)
        on, off = idx.get((m, "Encode", 1, top, "on")), idx.get((m, "Encode", 1, top, "off"))
        if on and off:
            v = on.p99_ms / off.p99_ms
            check(m, f"Encode x1, {top} callers: p99 batching on / off", v, "<= 1.00", v <= 1.0)
        ratios = [(rpc, c, idx[(m, rpc, 1, c, "on")].requests_per_s / idx[(m, rpc, 1, c, "off")].requests_per_s)
                  for rpc in ("Encode", "Decode") for c in sorted(set(args.concurrency) | set(args.decode_concurrency))
                  if (m, rpc, 1, c, "on") in idx and (m, rpc, 1, c, "off") in idx]
        for rpc, c, v in ratios:
            check(m, f"{rpc} x1, {c} callers: req/s batching on / off", v, ">= 1.00", v >= 1.0)
        if ratios:
            worst = min(v for _, _, v in ratios)
            check(m, "req/s batching on / off, worst cell", worst, ">= 1.00", worst >= 1.0)
        for c in args.concurrency:
            w2, w1 = idx.get((m, "Encode", 1, c, "on-w2")), idx.get((m, "Encode", 1, c, "on"))
            if w2 and w1:
                check(m, f"Encode x1, {c} callers: req/s --workers 2 / 1", w2.requests_per_s / w1.requests_per_s,
                      "", None)
        check(m, "ONNX Runtime encoder images/s at batch 64 / batch 1", ort[m]["encoder"][64] / ort[m]["encoder"][1],
              "", None)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"
    return {"machine": machine, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "load": load.as_dict(), "onnxruntime_images_per_s": ort, "onnxruntime_best_images_per_s": best,
            "cells": cells, "checks": checks}


def _f(v, fmt: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    return format(v, fmt)


def markdown(data: dict) -> str:
    """The tables of docs/api.md (every cell, the checks) and of the README (the targets), with the load line."""
    load = data["load"]
    out = [f"Machine: {data['machine']}; clients and servers share it.", "",
           f"{'**BUSY: do not publish.** ' if load['busy'] else ''}{load['line']}", "",
           "ONNX Runtime alone, best images/s over batch " + ", ".join(map(str, BATCHES)) + ": " +
           "; ".join(f"{m} encoder {g['encoder']:,.0f}, decoder {g['decoder']:,.0f}"
                     for m, g in data["onnxruntime_best_images_per_s"].items()), "",
           "| model | RPC | items/req | callers | server | req/s | items/s | p50 ms | p95 ms | p99 ms "
           "| server CPU ms/req | ceiling req/s | of ceiling | errors |",
           "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in data["cells"]:
        out.append(f"| {c['model']} | {c['rpc']} | {c['items']} | {c['concurrency']} | {c['mode']} | "
                   f"{c['requests_per_s']:,.0f} | {c['items_per_s']:,.0f} | {_f(c['p50_ms'])} | {_f(c['p95_ms'])} | "
                   f"{_f(c['p99_ms'])} | {_f(c['server_cpu_ms'], '.3f')} | {_f(c.get('ceiling_rps'), ',.0f')} | "
                   f"{_f(c.get('of_ceiling'))} | {c['errors']} |")
    out += ["", "Checks (same run):", "", "| model | check | value | target | met |", "|---|---|---:|---|---|"]
    for k in data["checks"]:
        met = "" if k["met"] is None else ("yes" if k["met"] else "**no**")
        out.append(f"| {k['model']} | {k['check']} | {_f(k['value'])} | {k['target']} | {met} |")
    models = list(data["onnxruntime_best_images_per_s"])
    top = max(data["settings"]["concurrency"])
    readme = [(f"service / ceiling (echo + ONNX Runtime, serially), Encode, 1 image, {top} callers",
               "service / ceiling"),
              ("p50 over echo p50 + one batch-1 ONNX Runtime call, 1 caller, ms", "p50 - (echo p50"),
              ("64 images per Encode: service / ONNX Runtime alone at batch 64", "Encode x64, 1 caller"),
              (f"p99 batching on / off, {top} callers", "p99 batching on / off"),
              ("req/s batching on / off, worst over the callers measured", "worst cell")]
    targets = {"service / ceiling": ">= 0.80", "p50 - (echo p50": "<= 1.0", "Encode x64, 1 caller": ">= 0.90",
               "p99 batching on / off": "<= 1.00", "worst cell": ">= 1.00"}
    out += ["", "README summary:", "", "| check | target | " + " | ".join(models) + " |",
            "|---|---:|" + "---:|" * len(models)]
    for label, key in readme:
        cells = []
        for m in models:
            k = next((x for x in data["checks"] if x["model"] == m and key in x["check"]), None)
            cells.append("—" if k is None else _f(k["value"]) + ("" if k["met"] else " (missed)"))
        out.append(f"| {label} | {targets[key]} | " + " | ".join(cells) + " |")
    out += ["", load["line"], ""]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        client_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_echo":
        asyncio.run(_echo(int(sys.argv[2])))
    else:
        main()
