"""The peers benchmark's report: markdown tables and the JSON file, from the measured rows.

A row is one measured cell: ``server`` (latentdial, triton, kserve), ``protocol`` (oip-grpc,
v1-grpc), ``graph``, ``batch``, ``callers`` and either the figures of
:func:`closed_loop.summary` or ``status`` saying why the cell was not measured. Standard
library only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

#: Column order and labels: (server, protocol) -> label
COLUMNS: dict[tuple[str, str], str] = {
    ("latentdial", "oip-grpc"): "latentdial OIP gRPC",
    ("latentdial", "v1-grpc"): "latentdial v1 Encode",
    ("triton", "oip-grpc"): "Triton (PyTriton) OIP gRPC",
    ("kserve", "oip-grpc"): "KServe ModelServer OIP gRPC",
}
BASELINE = ("latentdial", "oip-grpc")


def _key(row: dict[str, Any]) -> tuple[str, int, int]:
    return row["graph"], row["batch"], row["callers"]


def _num(x: float | None, digits: int = 0) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def measured(row: dict[str, Any]) -> bool:
    """A row with figures (not skipped, not failed, at least one answered call)."""
    return "status" not in row and row.get("requests", 0) > 0


def detail_table(rows: list[dict[str, Any]]) -> str:
    """One line per cell and server: req/s, img/s, p50, p99, errors, img/s relative to latentdial OIP."""
    lines = ["| graph | batch | callers | server | req/s | img/s | p50 ms | p99 ms | errors | img/s vs latentdial OIP |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    by_cell: dict[tuple[str, int, int], dict[tuple[str, str], dict[str, Any]]] = {}
    for r in rows:
        by_cell.setdefault(_key(r), {})[(r["server"], r["protocol"])] = r
    for cell in sorted(by_cell, key=lambda k: (k[0] != "encoder", k[1], k[2])):
        graph, batch, callers = cell
        base = by_cell[cell].get(BASELINE)
        base_ips = base["items_per_s"] if base and measured(base) else None
        for col, label in COLUMNS.items():
            r = by_cell[cell].get(col)
            if r is None:
                continue
            if not measured(r):
                lines.append(f"| {graph} | {batch} | {callers} | {label} | {r.get('status', 'no answer')} "
                             f"| | | | | |")
                continue
            ratio = r["items_per_s"] / base_ips if base_ips else None
            lines.append(f"| {graph} | {batch} | {callers} | {label} | {_num(r['req_per_s'])} | "
                         f"{_num(r['items_per_s'])} | {_num(r['p50_ms'], 2)} | {_num(r['p99_ms'], 2)} | "
                         f"{r['errors']} | {_num(ratio, 2)}{'x' if ratio is not None else ''} |")
    return "\n".join(lines)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """img/s (p99 ms) per cell, one column per server and protocol."""
    cols = [c for c in COLUMNS if any((r["server"], r["protocol"]) == c for r in rows)]
    head = "| graph | batch | callers | " + " | ".join(COLUMNS[c] for c in cols) + " |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(cols)]
    cells = sorted({_key(r) for r in rows}, key=lambda k: (k[0] != "encoder", k[1], k[2]))
    index = {(_key(r), (r["server"], r["protocol"])): r for r in rows}
    for cell in cells:
        parts = []
        for c in cols:
            r = index.get((cell, c))
            if r is None:
                parts.append("")
            elif not measured(r):
                parts.append("not run")
            else:
                parts.append(f"{_num(r['items_per_s'])} ({_num(r['p99_ms'], 1)})")
        lines.append(f"| {cell[0]} | {cell[1]} | {cell[2]} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any], load_line: str,
             load_before: str, load_after: str) -> str:
    """The whole report: what ran, load before, both tables, load after, the verdict line."""
    notes = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    return (f"# latentdial and its peers, same machine, same run, same ONNX graphs\n\n{notes}\n\n"
            f"load average before: {load_before}\n\n"
            f"## images/s (p99 ms)\n\n{summary_table(rows)}\n\n## every cell\n\n{detail_table(rows)}\n\n"
            f"load average after: {load_after}\n\n{load_line}\n")


def write(out_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any], load: dict[str, Any],
          text: str) -> tuple[Path, Path]:
    """``bench_peers.md`` (the text) and ``bench_peers.json`` (rows, meta, load) under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "bench_peers.md", out_dir / "bench_peers.json"
    md.write_text(text)
    js.write_text(json.dumps({"meta": meta, "load": load, "rows": rows}, indent=1, default=str))
    return md, js
