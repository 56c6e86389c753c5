"""Bounded, headless Locust run against a latentdial server on this machine.

    python loadtest/run_headless.py --users 8 --spawn-rate 4 --run-time 20s --p99-ms 500 --out reports/

Unless ``--host`` is given, starts ``latentdial serve`` on 127.0.0.1 and a free port,
waits for the health service to say SERVING, runs Locust headless for ``--run-time``,
writes ``summary.json`` (final per-RPC figures), Locust's ``locust_*.csv`` (with the
full history), ``report.html`` and ``server.log`` into ``--out``, prints a table and always stops the server.

Exit status: 0 when there were requests, no failures and p99 <= ``--p99-ms``; 1 otherwise;
2 when the server did not start. Only loopback targets are accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serverproc import ServerProcess, ServerStartError, require_loopback, wait_serving


def parse_run_time(text: str) -> float:
    """Locust-style duration ("20s", "2m", "1h30m", "45") -> seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"run time like 20s, 2m or 1h30m, got {text!r}")
    h, m, s = (int(g or 0) for g in parts.groups())
    return float(h * 3600 + m * 60 + s)


def read_summary(path: Path) -> dict:
    """The final summary the locustfile writes at quit: {"rows": [...], "errors": {...}}."""
    return json.loads(path.read_text())


def summarise(rows: list[dict]) -> str:
    """A fixed-width table: RPC, requests, failures, p50, p95, p99, max, req/s."""
    keys = ("name", "requests", "failures", "p50_ms", "p95_ms", "p99_ms", "max_ms", "rps")
    heads = ("rpc", "requests", "failures", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s")
    lines = ["  ".join(f"{h:>14}" for h in heads)]
    for r in rows:
        cells = [f"{r[k]:>14.1f}" if isinstance(r[k], float) else f"{r[k]!s:>14}" for k in keys]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def verdict(summary: dict, p99_ms: float) -> list[str]:
    """Reasons the run failed (empty list: it passed)."""
    agg = next((r for r in summary["rows"] if r["name"] == "Aggregated"), None)
    if agg is None or agg["requests"] == 0:
        return ["no requests were completed"]
    problems = []
    if agg["failures"]:
        problems.append(f"{agg['failures']} of {agg['requests']} requests failed")
        problems += [f"  {n} x {msg}" for msg, n in summary["errors"].items()]
    if agg["p99_ms"] > p99_ms:
        problems.append(f"p99 {agg['p99_ms']:.0f} ms exceeds the bound of {p99_ms:g} ms")
    return problems


def run_locust(args: argparse.Namespace, address: str, out: Path, run_time_s: float) -> int:
    """Run Locust headless (bounded by ``--run-time``, hard-killed 60 s after it)."""
    cmd = [
        sys.executable, "-m", "locust",
        "-f", str(HERE / "locustfile.py"),
        "--headless", "--only-summary",
        "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", args.run_time, "--stop-timeout", "5",
        "--host", address,
        "--csv", str(out / "locust"), "--csv-full-history",
        "--html", str(out / "report.html"),
        "--loglevel", "WARNING",
    ]
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["LOADTEST_SUMMARY_JSON"] = str(out / "summary.json")
    try:
        return subprocess.run(cmd, check=False, env=env, timeout=run_time_s + 60).returncode
    except subprocess.TimeoutExpired:
        print("locust did not stop 60 s after --run-time; killed", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=8, help="concurrent simulated clients")
    p.add_argument("--spawn-rate", type=float, default=4, help="users started per second")
    p.add_argument("--run-time", default="20s", help="e.g. 20s, 2m")
    p.add_argument("--p99-ms", type=float, default=500.0, help="fail when the overall p99 exceeds this")
    p.add_argument("--out", type=Path, default=Path("reports"), help="folder for CSV/HTML reports")
    p.add_argument("--host", default=None, help="use a running server (loopback host:port) instead")
    p.add_argument("--repository", default="models", help="model repository for the started server")
    p.add_argument("--startup-timeout-s", type=float, default=90.0)
    p.add_argument(
        "--server-arg", action="append", default=[], metavar="FLAG",
        help="extra flag for the started server, e.g. --server-arg=--max-batch-size=32",
    )
    args = p.parse_args(argv)
    run_time_s = parse_run_time(args.run_time)
    if run_time_s <= 0 or run_time_s > 3600:
        p.error("--run-time must be between 1 s and 1 h")
    args.out.mkdir(parents=True, exist_ok=True)

    server = None
    try:
        if args.host:
            address = require_loopback(args.host)
            wait_serving(address, args.startup_timeout_s)
        else:
            server = ServerProcess(
                repository=args.repository, args=args.server_arg,
                log_path=args.out / "server.log", startup_timeout_s=args.startup_timeout_s,
            ).start()
            address = server.address
            print(f"server pid {server.pid} SERVING on {address} (log: {args.out / 'server.log'})")
    except (ServerStartError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        if not args.host:
            print(f"see {args.out / 'server.log'}", file=sys.stderr)
        return 2

    try:
        print(f"locust: {args.users} users, spawn rate {args.spawn_rate}/s, {args.run_time} against {address}")
        rc = run_locust(args, address, args.out, run_time_s)
    finally:
        if server is not None:
            code = server.stop()
            print(f"server stopped (exit code {code})")

    path = args.out / "summary.json"
    if not path.is_file():
        print(f"error: locust wrote no {path} (exit code {rc})", file=sys.stderr)
        return 1
    summary = read_summary(path)
    print(summarise(summary["rows"]))
    problems = verdict(summary, args.p99_ms)
    if rc != 0 and not problems:
        problems.append(f"locust exited with code {rc}")
    for msg in problems:
        print(f"FAIL: {msg}", file=sys.stderr)
    if not problems:
        print(f"PASS: no failures, p99 within {args.p99_ms:g} ms; reports in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
