"""`boba replay FILE... [--update]` (CONTRACT §1): output lines and exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from boba_runtime.cli.replay import main
from tests.helpers.processes import boba_command, checkout_env

GOLDEN = Path(__file__).parent.parent / "golden"


def copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.jsonl"
    shutil.copyfile(GOLDEN / f"{name}.jsonl", target)
    return target


def tamper_result(path: Path) -> int:
    """Change one recorded function result; returns the 1-based line number changed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if '"type":"function_called"' in line)
    record = json.loads(lines[index])
    record["out"]["result"] = record["out"]["result"].replace('"ok":true', '"ok":false')
    lines[index] = json.dumps(record, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return index + 1


def test_all_golden_files_replay_ok(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(GOLDEN.glob("*.jsonl"))
    assert main([str(f) for f in files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{f}: ok" for f in files]


def test_a_difference_exits_1_and_names_the_first_differing_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = copy(tmp_path, "plain_order")
    bad = copy(tmp_path, "two_drinks")
    lineno = tamper_result(bad)
    assert main([str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{good}: ok"
    assert out[1].startswith(f"{bad}: line {lineno}: function_called field 'result': expected ")
    assert '\\"ok\\":false' in out[1] and '\\"ok\\":true' in out[1]


def test_an_unreadable_file_exits_2_and_wins_over_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    differs = copy(tmp_path, "plain_order")
    tamper_result(differs)
    broken = copy(tmp_path, "agent_error")
    lines = broken.read_text(encoding="utf-8").splitlines()
    lines[5] = lines[5][:-7]  # a truncated line
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    missing = tmp_path / "nope.jsonl"
    assert main([str(differs), str(broken), str(missing)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"{broken}: line 6: not a JSON object of a recording")
    assert out[2].startswith(f"{missing}: cannot read")


def test_update_rewrites_the_outputs_and_then_the_file_replays_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = copy(tmp_path, "checkout_twice")
    original = (GOLDEN / "checkout_twice.jsonl").read_text(encoding="utf-8")
    tamper_result(path)
    assert main([str(path), "--update"]) == 0
    assert capsys.readouterr().out == f"{path}: updated\n"
    assert path.read_text(encoding="utf-8") == original
    assert main(["--update", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"
    assert main([str(path)]) == 0


def test_update_never_touches_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"format": "boba-session/1"}\n', encoding="utf-8")
    assert main([str(path), "--update"]) == 2
    assert path.read_text(encoding="utf-8") == '{"format": "boba-session/1"}\n'


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: boba replay" in capsys.readouterr().err


def test_the_console_script_runs_replay(tmp_path: Path) -> None:
    done = subprocess.run(
        boba_command("replay", str(GOLDEN / "agent_error.jsonl")), env=checkout_env(),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == f"{GOLDEN / 'agent_error.jsonl'}: ok\n"
