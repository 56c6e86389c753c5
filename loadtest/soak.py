"""Soak test: steady closed-loop load for a fixed time, sampling throughput, errors and RSS.

    python loadtest/soak.py --duration-s 600 --out docs/
    python loadtest/soak.py --duration-s 60 --concurrency 2 --rate-rps 20 --out reports/soak

Starts ``latentdial serve`` on 127.0.0.1 (unless ``--host`` names a loopback server;
give ``--server-pid`` then to sample its memory), and runs ``--concurrency`` client
threads that each send the load test's request mix (workload.py) one call at a time
(closed loop), paced so that together they aim at ``--rate-rps``. Every ``--sample-s``
seconds it records completed requests per second, errors, latency percentiles and the
server's resident memory (VmRSS from /proc/<pid>/status).

Writes ``soak.csv`` (one row per sample), ``soak.json`` (summary) and
``images/soak.png`` (throughput, errors and RSS over time) into ``--out``. Exits 1 when
any request failed or none completed. The run stops by itself after ``--duration-s``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serverproc import ServerProcess, require_loopback, rss_kib, wait_serving
from workload import Workload, auth_metadata, pick_task

from latentdial.machine_load import LoadWatch
from latentdial.v1 import latentdial_pb2 as pb
from latentdial.v1 import latentdial_pb2_grpc as pb_grpc

MAX_DURATION_S = 24 * 3600


@dataclass
class Sample:
    """One sampling interval."""

    t_s: float  # seconds since the load started (end of the interval)
    requests: int  # completed in the interval (ok + failed)
    throughput_rps: float
    errors: int  # failed in the interval
    errors_total: int
    p50_ms: float
    p99_ms: float
    rss_mib: float  # server VmRSS at the end of the interval (NaN if unknown)


class Counters:
    """Thread-safe tallies of the current interval."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.errors_total = 0
        self.requests_total = 0
        self.error_codes: dict[str, int] = {}

    def record(self, latency_ms: float, code: str | None) -> None:
        with self.lock:
            self.latencies_ms.append(latency_ms)
            self.requests_total += 1
            if code is not None:
                self.errors += 1
                self.errors_total += 1
                self.error_codes[code] = self.error_codes.get(code, 0) + 1

    def take(self) -> tuple[list[float], int, int]:
        """(latencies, errors) of the interval, and the cumulative errors; resets the interval."""
        with self.lock:
            lat, err = self.latencies_ms, self.errors
            self.latencies_ms, self.errors = [], 0
            return lat, err, self.errors_total


def client_loop(
    address: str, workload: Workload, counters: Counters, stop: threading.Event,
    interval_s: float, seed: int, metadata: tuple, timeout_s: float,
) -> None:
    """One closed-loop client: send, wait for the answer, sleep to keep the pace, repeat."""
    rng = np.random.default_rng(seed)
    builders = workload.builders()
    # Own TCP connection per client thread, like separate client processes.
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        stub = pb_grpc.LatentDialStub(channel)
        next_at = time.monotonic()
        while not stop.is_set():
            rpc = pick_task(rng)
            request = builders[rpc](rng)
            t0 = time.perf_counter()
            code = None
            try:
                getattr(stub, rpc)(request, timeout=timeout_s, metadata=metadata)
            except grpc.RpcError as e:
                code = f"{rpc}: {e.code().name}"
            counters.record((time.perf_counter() - t0) * 1000.0, code)
            next_at += interval_s
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up


def run_soak(args: argparse.Namespace, address: str, server_pid: int | None) -> tuple[list[Sample], Counters]:
    metadata = auth_metadata(args.token)
    with grpc.insecure_channel(address) as ch:
        info = pb_grpc.LatentDialStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=10, metadata=metadata)
    workload = Workload.for_model(info, pool_size=256, seed=0)
    counters, stop = Counters(), threading.Event()
    interval_s = args.concurrency / args.rate_rps if args.rate_rps > 0 else 0.0
    threads = [
        threading.Thread(
            target=client_loop, daemon=True,
            args=(address, workload, counters, stop, interval_s, i, metadata, args.timeout_s),
        )
        for i in range(args.concurrency)
    ]
    samples: list[Sample] = []
    start = time.monotonic()
    for t in threads:
        t.start()
    bar = tqdm(total=int(args.duration_s), unit="s", desc="soak", mininterval=5.0, file=sys.stderr)
    last = start
    try:
        while (now := time.monotonic()) - start < args.duration_s:
            time.sleep(min(args.sample_s, max(0.0, args.duration_s - (now - start))))
            now = time.monotonic()
            lat, err, err_total = counters.take()
            rss = rss_kib(server_pid) if server_pid else None
            s = Sample(
                t_s=round(now - start, 2), requests=len(lat),
                throughput_rps=len(lat) / max(now - last, 1e-9), errors=err, errors_total=err_total,
                p50_ms=float(np.percentile(lat, 50)) if lat else float("nan"),
                p99_ms=float(np.percentile(lat, 99)) if lat else float("nan"),
                rss_mib=rss / 1024.0 if rss is not None else float("nan"),
            )
            samples.append(s)
            bar.update(round(now - start) - bar.n)
            bar.set_postfix(rps=f"{s.throughput_rps:.0f}", errors=err_total, rss_mib=f"{s.rss_mib:.0f}")
            last = now
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=args.timeout_s + 5)
        bar.close()
    # Calls in flight at the end complete during the join: count them in the last sample.
    lat, err, err_total = counters.take()
    if samples and lat:
        samples[-1].requests += len(lat)
        samples[-1].errors += err
        samples[-1].errors_total = err_total
    return samples, counters


def summary(samples: list[Sample], counters: Counters, args: argparse.Namespace, runtime: str) -> dict:
    """Totals and memory trend; the first quarter of the run counts as warm-up for RSS growth."""
    rss = np.array([s.rss_mib for s in samples], dtype=float)
    rps = np.array([s.throughput_rps for s in samples], dtype=float)
    known = rss[~np.isnan(rss)]
    warm = known[len(known) // 4:] if len(known) >= 4 else known
    return {
        "duration_s": samples[-1].t_s if samples else 0.0,
        "concurrency": args.concurrency,
        "target_rps": args.rate_rps,
        "requests": counters.requests_total,
        "errors": counters.errors_total,
        "error_codes": counters.error_codes,
        "throughput_rps_mean": float(rps.mean()) if len(rps) else 0.0,
        "throughput_rps_min": float(rps.min()) if len(rps) else 0.0,
        "p99_ms_max_interval": float(np.nanmax([s.p99_ms for s in samples])) if samples else None,
        "rss_mib_start": float(known[0]) if len(known) else None,
        "rss_mib_end": float(known[-1]) if len(known) else None,
        "rss_mib_max": float(known.max()) if len(known) else None,
        "rss_mib_growth_after_warmup": float(warm[-1] - warm[0]) if len(warm) else None,
        "runtime": runtime,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "python": platform.python_version(),
    }


def write_outputs(out: Path, samples: list[Sample], result: dict) -> Path:
    """soak.csv, soak.json and images/soak.png in ``out``; returns the PNG path."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "soak.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(Sample.__dataclass_fields__))
        w.writeheader()
        for s in samples:
            w.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(s).items()})
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    return plot(samples, result, out / "images" / "soak.png")


def plot(samples: list[Sample], result: dict, path: Path) -> Path:
    """Throughput, errors and server RSS over time, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t_s / 60.0 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(t, [s.throughput_rps for s in samples], color="tab:blue")
    axes[0].set_ylabel("throughput (req/s)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(t, [s.errors_total for s in samples], color="tab:red", label="cumulative")
    width = 0.8 * (t[1] - t[0]) if len(t) > 1 else 0.05
    axes[1].bar(t, [s.errors for s in samples], width=width, color="tab:orange", label="per interval")
    axes[1].set_ylabel("errors")
    axes[1].set_ylim(bottom=0, top=max(1, max((s.errors_total for s in samples), default=0)) * 1.2)
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].plot(t, [s.rss_mib for s in samples], color="tab:green")
    axes[2].set_ylabel("server RSS (MiB)")
    axes[2].set_xlabel("time (min)")
    rss = [s.rss_mib for s in samples if s.rss_mib == s.rss_mib]
    if rss:
        lo, hi = min(rss), max(rss)
        pad = max(5.0, 0.1 * (hi - lo))
        axes[2].set_ylim(max(0.0, lo - pad), hi + pad)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"latentdial soak: {result['requests']} requests, {result['errors']} errors, "
        f"{result['concurrency']} clients, {result['runtime']}", fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration-s", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=Path("reports/soak"))
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop client threads")
    p.add_argument("--rate-rps", type=float, default=60.0, help="target total rate; 0: as fast as possible")
    p.add_argument("--sample-s", type=float, default=5.0, help="sampling interval")
    p.add_argument("--timeout-s", type=float, default=10.0, help="per-call deadline")
    p.add_argument("--host", default=None, help="a running loopback server instead of starting one")
    p.add_argument("--server-pid", type=int, default=None, help="its pid, for RSS (with --host)")
    p.add_argument("--repository", default="models")
    p.add_argument("--server-log", type=Path, default=Path("reports/soak_server.log"))
    p.add_argument("--token", default=os.environ.get("LATENTDIAL_TOKEN"))
    p.add_argument("--server-arg", action="append", default=[], metavar="FLAG")
    args = p.parse_args(argv)
    if not 0 < args.duration_s <= MAX_DURATION_S:
        p.error(f"--duration-s must be in (0, {MAX_DURATION_S}]")
    if args.concurrency < 1 or args.sample_s <= 0:
        p.error("--concurrency must be >= 1 and --sample-s > 0")

    watch = LoadWatch("soak").start()  # a server given by --host counts as another process
    server = None
    if args.host:
        address = require_loopback(args.host)
        wait_serving(address, 60.0)
        pid = args.server_pid
    else:
        server = ServerProcess(repository=args.repository, args=args.server_arg, log_path=args.server_log).start()
        address, pid = server.address, server.pid
    print(f"soak: {args.duration_s:g} s, {args.concurrency} clients, target {args.rate_rps:g} req/s "
          f"against {address} (server pid {pid})", flush=True)
    try:
        with grpc.insecure_channel(address) as ch:
            info = pb_grpc.LatentDialStub(ch).GetModelInfo(
                pb.GetModelInfoRequest(), timeout=10, metadata=auth_metadata(args.token))
        samples, counters = run_soak(args, address, pid)
    finally:
        if server is not None:
            print(f"server stopped (exit code {server.stop()})", flush=True)
        load = watch.stop()  # warns loudly on stderr when the machine was busy
    result = summary(samples, counters, args, info.runtime)
    result["model"] = f"{info.model.name}/{info.model.version}"
    result["load"] = load.as_dict()
    png = write_outputs(args.out, samples, result)
    print(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'soak.csv'}, {args.out / 'soak.json'}, {png}")
    print(load.line())
    if result["requests"] == 0 or result["errors"]:
        print(f"FAIL: {result['errors']} errors of {result['requests']} requests", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
