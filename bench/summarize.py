"""Render `boba bench --json` reports as the Markdown table used in docs/bench.md.

    python bench/summarize.py r-*.json sweep-*.json

One row per run (a sweep file contributes one row per trial, marked with its N being the
largest that met the target). Columns: calls, audio, traffic, server CPU per call (% of a
core and µs per call per 20 ms tick), RSS per call, latency p50/p99/max each way, frames
lost, greeting, driver CPU, machine busy, ok.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HEADER = (
    "| calls | audio | traffic | server cores | CPU/call (% core) | µs/call/20 ms | RSS/call KiB "
    "| caller→agent p50/p99/max ms | agent→caller p50/p99/max ms | lost | greeting p50/max ms "
    "| driver cores | machine busy | ok |"
)


def _triple(stats: dict[str, Any]) -> str:
    if stats["p50"] is None:
        return "–"
    return f"{stats['p50']:.1f} / {stats['p99']:.1f} / {stats['max']:.1f}"


def row(report: dict[str, Any], mark: str = "") -> str:
    server = report["server"]
    per_call = server["cpu_per_call"]
    latency = report["latency_ms"]
    greeting = report["greeting_ms"]
    greet = "–" if greeting["p50"] is None else f"{greeting['p50']:.1f} / {greeting['max']:.1f}"
    return (
        f"| {report['calls']}{mark} | {report['audio']} | {report['traffic']} "
        f"| {server['cpu_cores']:.2f} | {per_call * 100:.2f} | {per_call * 20_000:.0f} "
        f"| {server['rss_per_call_bytes'] / 1024:.0f} "
        f"| {_triple(latency['caller_to_agent'])} | {_triple(latency['agent_to_caller'])} "
        f"| {report['frames_lost']['total']} | {greet} "
        f"| {report['driver']['cpu_cores']:.2f} | {report.get('machine_cpu_busy', 0) * 100:.0f}% "
        f"| {'yes' if report['ok'] else 'no'} |"
    )


def main(paths: list[str]) -> int:
    lines = [HEADER, _rule()]
    runs: list[tuple[dict[str, Any], str]] = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        if "sweep" in report:
            best = report["sweep"]["max_calls_ok"]
            runs += [(t, " ★" if t["calls"] == best else "") for t in report["sweep"]["trials"]]
        else:
            runs.append((report, ""))
    runs.sort(key=lambda item: (item[0]["traffic"], item[0]["audio"], item[0]["calls"]))
    lines += [row(report, mark) for report, mark in runs]
    print("\n".join(lines))
    return 0


def _rule() -> str:
    return "|" + "---|" * (HEADER.count("|") - 1)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
