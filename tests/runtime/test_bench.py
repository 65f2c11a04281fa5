"""`boba bench` (CONTRACT §11): a short real run against a real `boba serve`, and its usage errors.

The smoke run places 2 calls for 2 s in `worst` traffic (the agent speaks without pause,
so both directions carry audio inside the measured window) and checks that the JSON
report carries every figure the contract names, with nothing lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from boba_runtime.cli import bench
from tests.helpers.processes import boba_command, checkout_env


def _run_bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        boba_command("bench", *args), env=checkout_env(),
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )


def _figure(stats: dict[str, Any]) -> None:
    for key in ("p50", "p99", "max"):
        assert isinstance(stats[key], float), (key, stats)
        assert stats[key] >= 0
    assert stats["p50"] <= stats["p99"] <= stats["max"]
    assert stats["samples"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("audio", ["linear16", "mulaw"])
def test_smoke_run_reports_every_figure_and_loses_nothing(tmp_path: Path, audio: str) -> None:
    out = tmp_path / "bench.json"
    done = _run_bench(
        "--calls", "2", "--seconds", "2", "--audio", audio, "--traffic", "worst",
        "--json", str(out), cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "bench: 2 calls" in done.stderr  # the progress / summary line
    report = json.loads(out.read_text())
    assert json.loads(done.stdout) == report  # the same figures on stdout

    assert report["calls"] == 2 and report["calls_connected"] == 2
    assert report["calls_failed"] == 0 and report["failures"] == []
    assert report["protocol_errors"] == []
    assert report["audio"] == audio and report["traffic"] == "worst"
    server = report["server"]
    assert 0 < server["cpu_cores"] < 4
    assert server["cpu_per_call"] == pytest.approx(server["cpu_cores"] / 2, rel=0.01)
    assert server["rss_idle_bytes"] > 10_000_000  # a Python web server, really measured
    assert isinstance(server["rss_per_call_bytes"], int)
    _figure(report["latency_ms"]["caller_to_agent"])
    _figure(report["latency_ms"]["agent_to_caller"])
    # 2 calls x 2 s of caller audio in 40 ms agent messages: about 100 latency samples
    assert report["latency_ms"]["caller_to_agent"]["samples"] >= 80
    assert report["frames_lost"] == {"caller_to_agent": 0, "agent_to_caller": 0, "total": 0}
    _figure(report["greeting_ms"])
    assert report["greeting_ms"]["samples"] == 2
    assert report["driver"]["cpu_cores"] > 0
    assert isinstance(report["ok"], bool)
    assert 0 < report["machine_cpu_busy"] <= 1


BOUND = json.loads(
    (Path(__file__).resolve().parents[2] / "bench" / "baseline-bound.json").read_text()
)


@pytest.mark.slow
def test_baseline_ratio_has_not_regressed_past_the_committed_bound(tmp_path: Path) -> None:
    """The same duplex traffic through `boba serve` and through the bare relay, one run."""
    out = tmp_path / "bench.json"
    done = _run_bench(
        "--calls", "3", "--seconds", "3", "--audio", "linear16", "--traffic", "duplex",
        "--baseline", "--json", str(out), cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    floor = report["baseline"]
    assert floor["calls_connected"] == 3, (floor["failures"], floor.get("server_log_tail"))
    assert floor["failures"] == [], floor.get("server_log_tail")
    assert floor["frames_lost"]["total"] == 0 and report["frames_lost"]["total"] == 0
    assert floor["traffic"] == report["traffic"] == "duplex"
    ratio = report["ratio_to_baseline"]["cpu_per_call"]
    print(f"CPU per call, ours / bare relay: x{ratio} (bound x{BOUND['cpu_per_call_max_ratio']})")
    assert ratio is not None and 0 < ratio <= BOUND["cpu_per_call_max_ratio"], report
    assert "ours / baseline relay" in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--calls", "0"],
        ["--calls", "x"],
        ["--seconds", "-1"],
        ["--seconds", "nan"],
        ["--audio", "opus"],
        ["--traffic", "bursty"],
        ["--unknown"],
        ["extra"],
    ],
)
def test_usage_errors_exit_2_without_starting_anything(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(argv) == 2
    assert capsys.readouterr().err.startswith("boba bench: ")


def test_options_parse() -> None:
    options = bench.parse_args(
        ["--calls", "7", "--seconds", "3.5", "--audio", "mulaw", "--traffic", "worst",
         "--sweep", "--json", "x.json"]
    )
    assert options == bench.Options(
        calls=7, seconds=3.5, audio="mulaw", traffic=bench.Traffic.WORST, sweep=True,
        json_path="x.json", calls_given=True,
    )
    defaults = bench.parse_args([])
    assert (defaults.calls, defaults.seconds, defaults.audio, defaults.traffic) == (
        20, 10.0, "linear16", bench.Traffic.REALISTIC,
    )
    assert not defaults.calls_given and not defaults.sweep and not defaults.baseline
    duplex = bench.parse_args(["--traffic", "duplex", "--baseline"])
    assert duplex.traffic is bench.Traffic.DUPLEX and duplex.baseline
    assert defaults.pin_cpus is None


def test_pin_takes_two_allowed_cpus_or_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 1, 7})
    assert bench.parse_args(["--pin"]).pin_cpus == (1, 3)  # server, driver
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    with pytest.raises(bench.UsageError, match="--pin needs 2 CPUs"):
        bench.parse_args(["--pin"])


def test_process_tree_sample_counts_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        import os

        sample = bench.sample_process_tree(os.getpid())
        assert sample.processes >= 2
        assert sample.rss_bytes > 0 and sample.cpu_seconds > 0
    finally:
        child.kill()
        child.wait()


# --- the accounting, without sockets ------------------------------------------------------------


class _Socket:
    """Stands in for a LeanWebSocket: hands out queued messages, then reports closed."""

    def __init__(self, messages: list[str | bytes] | None = None) -> None:
        self.messages = list(messages or [])

    async def receive(self) -> str | bytes:
        if not self.messages:
            raise bench.WsClosed(1000)
        return self.messages.pop(0)


def _call(input_frame_bytes: int = 160, agent_messages: list[str | bytes] | None = None) -> Any:
    trial = bench.Trial(calls=1, seconds=1.0, traffic=bench.Traffic.WORST, measuring=True)
    link = bench.AgentLink(
        ws=_Socket(agent_messages),  # type: ignore[arg-type]
        settings_at=0.0, input_frame_bytes=input_frame_bytes, output_rate=8000, output_width=1,
    )
    return bench.BenchCall(0, trial, _Socket(), link, "MZ1", "CA1", 0.0)  # type: ignore[arg-type]


def test_agent_to_caller_latency_is_charged_to_the_chunk_holding_the_last_byte() -> None:
    call = _call()
    call.down_chunks.extend([(800, 1.000), (1600, 1.100)])
    call.down_expected = 1600
    call._on_media(800, 1.005)  # all of chunk 1
    call._on_media(400, 1.120)  # half of chunk 2
    assert call.trial.down_latency == pytest.approx([0.005, 0.020])
    call._count_lost()  # 400 bytes never came: 2.5 frames -> 3 frames lost
    assert call.trial.down_lost_frames == 3
    assert call.trial.greeting == []  # no greeting audio was sent by this agent


def test_greeting_subtracts_the_agents_own_delay() -> None:
    call = _call()
    call.greeting_audio_at = 0.200  # the agent got Settings at 0.0 and spoke at 0.2
    call.down_chunks.append((160, 0.200))
    call.down_expected = 160
    call._on_media(160, 0.230)
    assert call.trial.greeting == pytest.approx([0.030])


async def test_caller_to_agent_counts_frames_by_bytes_and_finds_losses() -> None:
    # linear16 at 48 kHz: 1920 bytes per 20 ms; the server sends 40 ms (3840 bytes) at a time
    call = _call(input_frame_bytes=1920, agent_messages=[b"\0" * 3840, "{}", b"\0" * 3840])
    call.frame_sent_at.extend([0.0, 0.02, 0.04, 0.06, 0.08, 0.10])
    await call.agent_reader()
    assert call.agent_bytes_in == 7680
    assert len(call.trial.up_latency) == 2  # one sample per agent message
    call._count_lost()
    assert call.trial.up_lost_frames == 2  # frames 5 and 6 never reached the agent


def test_a_bench_that_cannot_run_exits_1_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def cannot_start(options: bench.Options, calls: int, progress: bench.Progress) -> None:
        import trio

        async with trio.open_nursery() as nursery:  # as deep inside as the real failure

            async def fail() -> None:
                raise bench.BenchError("boba serve exited with 2: BOBA_X: bad")

            nursery.start_soon(fail)

    monkeypatch.setattr(bench, "run_trial", cannot_start)
    assert bench.main(["--calls", "1"]) == 1
    assert "boba serve exited with 2: BOBA_X: bad" in capsys.readouterr().err
