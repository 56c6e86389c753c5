"""latentdial beside Triton (PyTriton) and KServe: same machine, same run, same ONNX graphs.

Serves the shipped default model's encoder and decoder (``models/default``) with:

- ``latentdial``: ``latentdial serve`` as a child process on a free port (its own batcher, the
  graph file and session options it serves with);
- ``triton``: Triton Inference Server through PyTriton (``.venv-pytriton``, ``make
  pytriton-venv``), the same ONNX files in ONNX Runtime inside the Python model, Triton's
  dynamic batcher in front (benchmarks/peers/triton_server.py);
- ``kserve``: KServe's ``ModelServer`` (``.venv-kserve``, ``make kserve-venv``), the same files
  in ONNX Runtime inside ``predict`` (benchmarks/peers/kserve_server.py).

The peers open their ONNX Runtime sessions with the options latentdial serves with. One server
runs at a time; the load comes from a separate client process, the same for every server:
tritonclient's asyncio gRPC client (``.venv-tritonclient``) speaking the Open Inference
Protocol v2 (``ModelInfer``); latentdial is also measured through its own v1 ``Encode``
(encoder cells only). Each cell is closed loop at 1, 8 and 64 callers, with single images and
batches of 64. Each server's first answer per graph is checked against ONNX Runtime in this
process on the same input, file and options, so every column did the same work. With
``--rounds N`` the servers run N times in rotating order and each cell reports its median round.

The load average before and after, and the CPU other processes used, are recorded
(latentdial.machine_load); a busy machine is reported loudly and its figures must not be
published. Writes ``bench_peers.md`` and ``bench_peers.json`` under ``--out``.

    python benchmarks/bench_peers.py                      # about 4 minutes
    python benchmarks/bench_peers.py --long               # 15 s cells, 3 rounds (about 35 minutes)
    python benchmarks/bench_peers.py --servers latentdial --duration 0.5 --callers 1 --batches 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))

import report  # noqa: E402
from processes import PeerProcess, PeerStartError  # noqa: E402

SERVERS = ("latentdial", "triton", "kserve")
#: largest |answer - ONNX Runtime here| a server may return (float32 over the wire, same file)
ANSWER_TOLERANCE = 1e-4
#: interpreter of each peer's virtual environment, and the script it runs
PEER_VENVS = {"triton": (".venv-pytriton", "triton_server.py"), "kserve": (".venv-kserve", "kserve_server.py")}
CLIENT_VENV = ".venv-tritonclient"
MAKE_TARGET = {".venv-pytriton": "pytriton-venv", ".venv-kserve": "kserve-venv",
               ".venv-tritonclient": "tritonclient-venv"}


def default_model(repository: Path) -> Path:
    """The directory of the default model's newest version (``<repository>/default`` names the model)."""
    name = (repository / "default").read_text().strip()
    versions = [p for p in (repository / name).iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise FileNotFoundError(f"{repository / name} has no version directory")
    return max(versions, key=lambda p: int(p.name))


def served_graphs(model_dir: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """(graph -> ONNX file name, graph -> session options) latentdial serves on the CPU for this model here.

    Both are latentdial's choice for this host (latentdial/graph_choice.py), with its serving
    threads and spinning; the peers open the same files with the same options.
    """
    from latentdial.graph_choice import SERVER_SPINNING, SERVER_THREADS, SESSION_SETS, choose
    from latentdial.manifest import Manifest

    manifest = Manifest.load(model_dir)
    picks = {g: choose(model_dir, manifest, g) for g in ("encoder", "decoder")}
    specs = {g: SESSION_SETS[session] | {"set": session, "intra_op_threads": SERVER_THREADS,
                                         "allow_spinning": SERVER_SPINNING}
             for g, (_, session, _) in picks.items()}
    return {g: p[0] for g, p in picks.items()}, specs


def plan(model: str, graphs: list[str], batches: list[int], callers: list[int], image_hwc: list[int],
         latent_dim: int) -> list[dict[str, Any]]:
    """Every cell of one server and protocol, in measuring order."""
    return [{"model": model, "graph": g, "batch": b, "callers": c, "image_hwc": image_hwc, "latent_dim": latent_dim}
            for g in graphs for b in batches for c in callers]


def venv_python(venv: str) -> Path:
    """The interpreter of a virtual environment under the repository root; FileNotFoundError with the make target."""
    python = ROOT / venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{venv} missing (make {MAKE_TARGET.get(venv, venv)})")
    return python


def run_client(protocol: str, address: str, cells: list[dict[str, Any]], duration: float, warmup: float,
               work: Path, reference: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The load client over every cell; one row per cell (figures, or status when it failed).

    reference: {"model_dir", "files", "sessions"} to check the server's first answers against
    (:func:`check_answers`); None skips the check."""
    python = Path(sys.executable) if protocol == "v1" else venv_python(CLIENT_VENV)
    tag_ = f"{protocol}-{address.replace(':', '_')}"
    plan_file, dump = work / f"plan-{tag_}.json", work / f"answers-{tag_}"
    plan_file.write_text(json.dumps(cells))
    dump.mkdir(exist_ok=True)
    proc = subprocess.run([str(python), str(PEERS / "load_client.py"), "--protocol", protocol, "--address", address,
                           "--plan", str(plan_file), "--duration", str(duration), "--warmup", str(warmup),
                           "--dump", str(dump)], capture_output=True, text=True, cwd=ROOT)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        rows += [c | {"status": f"client failed: {reason}"} for c in cells[len(rows):]]
    return rows if reference is None else check_answers(rows, dump, reference)


def check_answers(rows: list[dict[str, Any]], dump: Path, reference: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row gets ``max_abs_diff``: its server's first answer for the graph against ONNX Runtime
    here on the same input, file and options; a difference above ANSWER_TOLERANCE marks the row
    failed (the server did not do the work the others did)."""
    import numpy as np
    from load_client import input_array
    from onnx_graph import OnnxGraph

    diffs: dict[str, float] = {}
    for r in rows:
        path = dump / f"{r['graph']}-b{r['batch']}.npz"
        if r["graph"] in diffs or not path.exists():
            continue
        ref = OnnxGraph(reference["model_dir"] / reference["files"][r["graph"]], r["graph"],
                        reference["sessions"][r["graph"]]).infer(input_array(r))
        with np.load(path) as got:
            diffs[r["graph"]] = max(float(np.max(np.abs(got[k] - ref[k]))) for k in ref)
    out = []
    for r in rows:
        d = diffs.get(r["graph"])
        r = r | {"max_abs_diff": d}
        if d is not None and d > ANSWER_TOLERANCE and "status" not in r:
            r["status"] = f"wrong answers: max abs diff {d:.2e} from ONNX Runtime on the same file"
        out.append(r)
    return out


def tag(rows: list[dict[str, Any]], server: str, protocol: str) -> list[dict[str, Any]]:
    return [r | {"server": server, "protocol": protocol} for r in rows]


def latentdial_flags(cells: list[dict[str, Any]]) -> list[str]:
    """``latentdial serve`` flags for the plan: a queue that holds every caller's request at once.

    Triton and KServe queue without a limit; latentdial refuses (RESOURCE_EXHAUSTED) what its
    queue (1,024 items by default) cannot hold, e.g. 64 callers x 64 images. Raising the limit to
    the plan's most outstanding items makes all three queue everything, so a cell compares speed
    and not admission policies.
    """
    most = max(c["batch"] * c["callers"] for c in cells)
    return ["--max-request-items", str(max(1024, max(c["batch"] for c in cells))),
            "--max-queue-size", str(max(1024, most))]


def measure_latentdial(model_dir: Path, cells: list[dict[str, Any]], args: argparse.Namespace,
                       work: Path) -> list[dict[str, Any]]:
    """``latentdial serve`` on a repository holding only this model version; OIP, then v1 Encode."""
    from latentdial.serving.embedded import ServerProcess, ServerStartError

    repo = work / "repository"
    if not repo.exists():
        shutil.copytree(model_dir, repo / model_dir.parent.name / model_dir.name)
    v1_cells = [c for c in cells if c["graph"] == "encoder"]
    try:
        server = ServerProcess(repository=repo, args=latentdial_flags(cells), log_path=work / "latentdial.log",
                               cwd=work, startup_timeout_s=120).start()
    except ServerStartError as e:
        return (tag([c | {"status": f"server failed: {e}"} for c in cells], "latentdial", "oip-grpc")
                + tag([c | {"status": f"server failed: {e}"} for c in v1_cells], "latentdial", "v1-grpc"))
    try:
        rows = tag(run_client_or_skip("oip", server.address, cells, args, work), "latentdial", "oip-grpc")
        rows += tag(run_client("v1", server.address, v1_cells, args.duration, args.warmup, work, args.reference),
                    "latentdial", "v1-grpc")
    finally:
        server.stop()
    return rows


def run_client_or_skip(protocol: str, address: str, cells: list[dict[str, Any]], args: argparse.Namespace,
                       work: Path) -> list[dict[str, Any]]:
    """run_client, or every cell marked not run when the client's venv is missing."""
    try:
        return run_client(protocol, address, cells, args.duration, args.warmup, work, args.reference)
    except FileNotFoundError as e:
        return [c | {"status": f"not run: {e}"} for c in cells]


def measure_peer(peer: str, model_dir: Path, model: str, files: dict[str, str], sessions: dict[str, dict[str, Any]],
                 cells: list[dict[str, Any]], args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """One peer server in its venv over the OIP cells; every cell gets a status if it cannot run."""
    from latentdial.serving.embedded import free_port

    venv, script = PEER_VENVS[peer]
    grpc_port, http_port = free_port(), free_port()
    peer_args = ["--model-dir", str(model_dir.resolve()), "--model", model, "--grpc-port", str(grpc_port),
                 "--http-port", str(http_port), "--session", json.dumps(sessions),
                 *[x for g, f in files.items() for x in ("--file", f"{g}={f}")]]
    try:
        python = venv_python(venv)
        with PeerProcess(python, PEERS / script, peer_args, work / f"{peer}.log"):
            rows = run_client_or_skip("oip", f"127.0.0.1:{grpc_port}", cells, args, work)
    except (FileNotFoundError, PeerStartError) as e:
        first = str(e).splitlines()[0]
        rows = [c | {"status": f"not run: {first}"} for c in cells]
    return tag(rows, peer, "oip-grpc")


def median_rows(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per (server, protocol, graph, batch, callers): the round with the median images/s."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rows in rounds:
        for r in rows:
            groups.setdefault((r["server"], r["protocol"], r["graph"], r["batch"], r["callers"]), []).append(r)
    out = []
    for rs in groups.values():
        ok = sorted((r for r in rs if report.measured(r)), key=lambda r: r["items_per_s"])
        pick = ok[len(ok) // 2] if ok else rs[-1]
        out.append(pick | {"rounds_items_per_s": [r.get("items_per_s") for r in rs]})
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repository", type=Path, default=ROOT / "models")
    p.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    p.add_argument("--graphs", nargs="+", choices=["encoder", "decoder"], default=["encoder", "decoder"])
    p.add_argument("--callers", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each cell")
    p.add_argument("--rounds", type=int, default=1, help="runs of every server, in rotating order")
    p.add_argument("--long", action="store_true", help="15 s cells, 3 rounds (for the published table)")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_peers")
    args = p.parse_args(argv)
    if args.long:
        args.duration, args.rounds = max(args.duration, 15.0), max(args.rounds, 3)
    return args


def measure(args: argparse.Namespace, model_dir: Path, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every round of every server; (median rows, what ran)."""
    from latentdial.manifest import Manifest

    m = Manifest.load(model_dir)
    c, h, w = m.image_shape
    cells = plan(m.name, args.graphs, args.batches, args.callers, [h, w, c], m.latent_dim)
    # latentdial's graph choice is measured in this run (the harness, then its server, read it from
    # here), never taken from a cache filled when the machine was busy
    os.environ["LATENTDIAL_GRAPH_CHOICE_CACHE"] = str(work / "graph-choice")
    files, sessions = served_graphs(model_dir)
    args.reference = {"model_dir": model_dir, "files": files, "sessions": sessions}
    rounds = []
    for i in range(args.rounds):
        order = args.servers[i % len(args.servers):] + args.servers[:i % len(args.servers)]
        rows: list[dict[str, Any]] = []
        for server in order:
            print(f"round {i + 1}/{args.rounds}: {server}", file=sys.stderr, flush=True)
            if server == "latentdial":
                rows += measure_latentdial(model_dir, cells, args, work)
            else:
                rows += measure_peer(server, model_dir, m.name, files, sessions, cells, args, work)
        rounds.append(rows)
    meta = {"model": f"{m.name}/{m.version} ({model_dir})", "graphs": files, "session options": sessions,
            "graph choice": "the manifest's record for this host, else measured at the start of this run",
            "answers": f"each server's first answer per graph against ONNX Runtime here on the same input, "
                       f"file and options: more than {ANSWER_TOLERANCE:g} apart marks its cells failed "
                       f"(max_abs_diff in the JSON)",
            "cells": f"{args.duration:g} s measured after {args.warmup:g} s warm-up, median of {args.rounds} round(s)",
            "client": "one process per server: tritonclient.grpc.aio (OIP ModelInfer, FP32); "
                      "grpc.aio with a pre-serialised request (latentdial v1 Encode, FLOAT32)",
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                       f"{len(os.sched_getaffinity(0))} usable CPUs, clients and servers share them",
            "img/s": "images encoded or decoded per second (req/s x batch)",
            "latentdial flags": " ".join(latentdial_flags(cells))}
    return median_rows(rounds), meta


def main(argv: list[str] | None = None) -> int:
    from latentdial.machine_load import LoadWatch

    args = parse_args(argv)
    model_dir = default_model(args.repository)
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    watch = LoadWatch("bench_peers").start()
    try:
        rows, meta = measure(args, model_dir, work)
    finally:
        load = watch.stop()
    fmt = lambda t: " ".join(f"{x:.2f}" for x in t)  # noqa: E731
    meta["server logs"] = str(work)
    text = report.markdown(rows, meta, load.line(), fmt(load.load_before), fmt(load.load_after))
    md, js = report.write(args.out, rows, meta, load.as_dict(), text)
    print(text)
    print(f"wrote {md} and {js}")
    failed = [r for r in rows if not report.measured(r)]
    if failed:
        print(f"{len(failed)} of {len(rows)} cells not measured; see the status column and {work}", file=sys.stderr)
    return 1 if len(failed) == len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
