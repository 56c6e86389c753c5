"""Where a request's time goes: py-spy samples ``latentdial serve`` under closed-loop load.

    python benchmarks/profile_service.py --model conv --concurrency 64 --seconds 20 --out reports/profile

Starts one server (batching on, or ``--batching off``) on a benchmark model of
``bench_service.py``, drives it with that script's load client (pre-serialised
requests, ``--concurrency`` callers), and records the server with py-spy
(``pip install py-spy``; sampling, so the server runs at full speed). Writes
``profile.txt`` (collapsed stacks, the input of flame-graph tools and speedscope)
and ``profile.md``: the functions with the most samples, by own time and by
total time, as shares of the samples. By default only the thread that holds the
GIL is sampled: in one Python process that lock is what the event loop, gRPC's
Cython callbacks (they show as the own time of ``Handle._run``) and the runtime
threads' Python parts queue for, so the shares say what the per-request path
spends it on. ``--all-threads`` samples every thread (py-spy then counts some
waits as busy).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_service as bench  # noqa: E402  (a script beside this one)


def summarise(collapsed: str, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, [(function, own samples)], [(function, total samples)]) of py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].rsplit(":", 1)[0] + ")" if " (" in f else f
                  for f in stack.split(";") if f]  # one entry per function, not per line
        frames = frames[1:] if frames and frames[0].startswith(("thread", "process")) else frames
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    return samples, own.most_common(top), total.most_common(top)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["toy", "conv"], default="conv")
    p.add_argument("--rpc", choices=["Encode", "Decode"], default="Encode")
    p.add_argument("--items", type=int, default=1, help="images or latents per request")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--batching", choices=["on", "off"], default="on")
    p.add_argument("--all-threads", action="store_true",
                   help="sample every thread, not only the one holding the GIL (waits then look busy)")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--out", type=Path, default=bench.ROOT / "reports" / "profile")
    args = p.parse_args()
    # beside this interpreter first: `make profile-service` runs the venv's python without activating it
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        p.error("py-spy is not installed: pip install py-spy")

    from fixtures.toy_model import build_conv_model, build_toy_model

    from latentdial.machine_load import LoadWatch

    watch = LoadWatch("profile_service").start()  # a busy machine skews a profile too

    tmp = Path(tempfile.mkdtemp(prefix="profile-service-"))
    if args.model == "toy":
        model_dir = build_toy_model(tmp, "toy", "1", image_shape=(1, 64, 64), latent_dim=10, with_card=False).path
    else:
        model_dir = build_conv_model(tmp, "conv", "1")
    body, reply = bench.payload(model_dir, args.rpc, args.items)
    body_path = tmp / "req.bin"
    body_path.write_bytes(body)
    args.out.mkdir(parents=True, exist_ok=True)
    collapsed = args.out / "profile.txt"
    port = bench.free_port()
    server = bench.start_server(args.batching, tmp, port)
    try:
        record = subprocess.Popen([spy, "record", "--pid", str(server.pid), "--rate", str(args.rate),
                                   "--duration", str(int(args.seconds)), "--format", "raw", "--threads",
                                   "--nonblocking", "--output", str(collapsed)] + ([] if args.all_threads else ["--gil"]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        sc = bench.Scenario(args.model, args.rpc, args.items, args.concurrency)
        result = bench.run_client(f"127.0.0.1:{port}", sc, body_path, reply, args.seconds, 1.0, 1, server.pid)
        _, err = record.communicate(timeout=args.seconds + 60)
        if record.returncode != 0:
            print(err, file=sys.stderr)
            return 1
    finally:
        server.terminate()
        server.wait(30)
    load = watch.stop()
    samples, own, total = summarise(collapsed.read_text(), args.top)
    lines = [f"py-spy, {args.rate} Hz, {args.seconds:g} s: {args.model} {args.rpc} x{args.items}, "
             f"{args.concurrency} callers, batching {args.batching}; {result['requests_per_s']:.0f} req/s, "
             f"p50 {result['p50']:.2f} ms, server CPU {result['cpu_ms']:.3f} ms/request; {samples} samples", "",
             load.line(), "",
             "| own % | function |", "|---:|---|"]
    lines += [f"| {100 * n / max(samples, 1):.1f} | `{f}` |" for f, n in own]
    lines += ["", "| total % | function |", "|---:|---|"]
    lines += [f"| {100 * n / max(samples, 1):.1f} | `{f}` |" for f, n in total]
    (args.out / "profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {collapsed} (collapsed stacks) and {args.out / 'profile.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
