"""Golden calls: every recorded session replays exactly, and its readable outputs are pinned.

Each `*.jsonl` here is a whole call in the `boba-session/1` format (built by
`make_sessions.py`, or recorded from a real call with `BOBA_RECORD_DIR`). The test feeds
its inputs to today's core and requires the very outputs recorded in the file (audio by
SHA-256), then snapshots a readable digest of the call with syrupy: transcripts, function
calls and their results, effects, marks, clears and the end, with audio runs folded into
one line each. After a deliberate behaviour change: `boba replay --update
tests/golden/*.jsonl`, then `pytest tests/golden --snapshot-update`, and review both diffs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from boba_proto.recording import replay_lines

HERE = Path(__file__).parent
SESSIONS = sorted(HERE.glob("*.jsonl"))


def _fold_audio(kind: str, run: list[tuple[float, dict[str, Any]]]) -> str:
    total = sum(r["bytes"] for _, r in run)
    digest = hashlib.sha256("".join(r["sha256"] for _, r in run).encode()).hexdigest()[:12]
    if kind == "twilio":
        return (
            f"{run[0][0]:7.2f} -> twilio media x{len(run)} ({total} B, {total / 8:.0f} ms)"
            f" sha {digest}"
        )
    return f"{run[0][0]:7.2f} -> agent audio x{len(run)} ({total} B) sha {digest}"


def _agent_frame(text: str) -> str:
    frame = json.loads(text)
    kind = frame["type"]
    if kind == "Settings":
        audio = frame["audio"]
        functions = [f["name"] for f in frame["agent"]["think"]["functions"]]
        return (
            f"Settings in={audio['input']['encoding']}/{audio['input']['sample_rate']} "
            f"out={audio['output']['encoding']}/{audio['output']['sample_rate']} "
            f"functions={len(functions)} greeting={frame['agent'].get('greeting')!r}"
        )
    if kind == "FunctionCallResponse":
        return f"FunctionCallResponse {frame['id']} {frame['name']}"
    rest = {k: v for k, v in frame.items() if k != "type"}
    return f"{kind} {json.dumps(rest, sort_keys=True)}" if rest else kind


def _line(t: float, record: dict[str, Any]) -> str | None:
    kind = record["type"]
    at = f"{t:7.2f}"
    match kind:
        case "send_to_twilio":
            frame = json.loads(record["text"])
            if frame["event"] == "mark":
                return f"{at} -> twilio mark {frame['mark']['name']}"
            return f"{at} -> twilio {frame['event']}"
        case "send_to_agent":
            return f"{at} -> agent {_agent_frame(record['text'])}"
        case "function_called":
            return (
                f"{at} fn {record['name']}({record['arguments']}) [{record['id']}]"
                f" -> {record['result']}"
            )
        case "transcript":
            return f"{at} {record['role']}: {record['content']}"
        case "start_timer":
            if record["name"] == "tick":
                return None  # re-armed every second; pinned by the replay, noise here
            return f"{at} timer {record['name']} {record['seconds']} s"
        case "cancel_timer":
            return f"{at} cancel timer {record['name']}"
        case "request_effect":
            return f"{at} effect {json.dumps(record['effect'], sort_keys=True)}"
        case "end_call":
            return f"{at} END {record['reason']}"
        case "agent_latency":
            return f"{at} agent latency {record['total_seconds']} s"
        case "agent_error" | "agent_warning":
            return f"{at} {kind} {record['code']}: {record['description']}"
    return f"{at} {json.dumps(record, sort_keys=True)}"


def readable(outputs: list[tuple[float, dict[str, Any]]]) -> list[str]:
    """The call as a person would review it.

    Audio between two other outputs is folded into one line per direction (count, bytes,
    a digest of the run); the 1 s `tick` re-arms are left out. Both are still compared
    exactly by the replay itself.
    """
    lines: list[str] = []
    runs: dict[str, list[tuple[float, dict[str, Any]]]] = {"twilio": [], "agent": []}

    def flush() -> None:
        started = sorted((run[0][0], kind) for kind, run in runs.items() if run)
        for _, kind in started:
            lines.append(_fold_audio(kind, runs[kind]))
            runs[kind] = []

    for t, record in outputs:
        kind = record["type"]
        if kind == "send_agent_audio":
            runs["agent"].append((t, record))
            continue
        if kind == "send_to_twilio" and record.get("kind") == "media":
            runs["twilio"].append((t, record))
            continue
        line = _line(t, record)
        if line is None:
            continue
        flush()
        lines.append(line)
    flush()
    return lines


def test_there_are_at_least_twelve_golden_calls() -> None:
    assert len(SESSIONS) >= 12


@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.stem)
def test_golden_call_replays_exactly(path: Path, snapshot: Any) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    report = replay_lines(lines)
    assert report.difference is None, report.difference
    assert report.lines == lines  # --update would not change a byte
    assert readable(report.outputs) == snapshot


def test_a_tampered_output_is_reported_with_its_line(tmp_path: Path) -> None:
    lines = (HERE / "plain_order.jsonl").read_text(encoding="utf-8").splitlines()
    target = next(
        n for n, line in enumerate(lines) if '"type":"function_called"' in line
    )
    lines[target] = lines[target].replace('\\"ok\\":true', '\\"ok\\":false', 1)
    report = replay_lines(lines)
    assert report.difference is not None
    assert report.difference.startswith(f"line {target + 1}: function_called field 'result'")


def test_a_tampered_audio_digest_is_reported(tmp_path: Path) -> None:
    lines = (HERE / "barge_in.jsonl").read_text(encoding="utf-8").splitlines()
    target = next(n for n, line in enumerate(lines) if '"kind":"media","bytes"' in line)
    record = json.loads(lines[target])
    record["out"]["sha256"] = "0" * 64
    lines[target] = json.dumps(record)
    report = replay_lines(lines)
    assert report.difference is not None
    assert report.difference.startswith(f"line {target + 1}: send_to_twilio field 'sha256'")
