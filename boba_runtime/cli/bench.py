"""`boba bench`: the load benchmark (CONTRACT §11).

Starts a real `boba serve` subprocess on 127.0.0.1 (fresh temporary data directory and
SQLite store, SMS to the log, Twilio signatures checked with a generated auth token) and
drives N simultaneous calls against it from this process, which plays both ends:

* **Twilio**: a signed `POST /voice`, the signed Media Streams handshake with the TwiML's
  parameters, `connected`/`start`, caller audio every 20 ms on an absolute schedule, and a
  player that "plays" what the server sends at 8000 bytes/s and echoes each `mark` when the
  audio before it has played.
* **the Deepgram agent** (`BOBA_AGENT_URL` points at a WebSocket server in this process):
  `Welcome`, `SettingsApplied`, a greeting after a fixed "own delay" (the agent's thinking
  and speech synthesis), then speech in turns, paced in real time, in chunks of varying
  size: `realistic` = 2–4 s of speech after 1.5–4 s of listening; `worst` = speech without
  pause.

Both ends run on one clock (`time.monotonic`), so the latency the server adds is measured
by arrival order, with no marker in the audio: the server forwards bytes in order, and
each byte count maps to one moment the bench sent it.

* caller → agent: a 40 ms agent message is complete once the caller's second 20 ms frame
  has been sent (the 40 ms batching is the contract's, not overhead), so its latency is
  arrival minus the send time of the last frame it covers.
* agent → caller: a media message's latency is arrival minus the send time of the agent
  chunk that held its last byte (the server can send a byte only once it has it).
* frames lost: 20 ms of audio sent but never delivered, counted in bytes, each way.
* greeting: Twilio `start` to the first greeting audio at "Twilio", minus the agent's own
  delay (from receiving `Settings` to sending the greeting's first audio).
* server CPU (fraction of a core) and RSS from `/proc/PID/stat` of the server process and
  its children, over the measured window, per call; the driver's own CPU and how late it
  sent frames are reported too, since an overloaded driver inflates latencies.

Calls are dialled one at a time (the only way to pair an agent connection with its
call, since `Settings` carries nothing call-specific) and start talking at once, like
callers arriving; the measured window of `--seconds` opens when the last one has been
greeted.
Everything listens and connects on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import math
import os
import random
import resource
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import numpy as np
import trio
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from boba_proto import twilio as tw
from boba_runtime.cli.bench_baseline import BANNER as BASELINE_BANNER
from boba_runtime.cli.bench_driver import (
    LeanWebSocket,
    WsClosed,
    WsHandshakeError,
    connect,
    serve,
)

LOOPBACK = "127.0.0.1"
FRAME_SECONDS = 0.02
CALLER_FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
P99_LIMIT_MS = 20.0
AGENT_OWN_DELAY = 0.15  # the fake agent's "thinking + TTS" before the greeting's audio
GREETING_SECONDS = 1.0
SPEECH_BUFFER_SECONDS = 10.0
DIAL_TIMEOUT = 10.0
DRAIN_TIMEOUT = 3.0
SERVER_START_TIMEOUT = 30.0
MAX_CALLS = 2000
MAX_SECONDS = 3600.0
SWEEP_BUDGET_SECONDS = 20 * 60
ACCOUNT_SID = "AC" + "0" * 32


class UsageError(Exception):
    """Bad command-line arguments: the user's fault, exit 2."""


class BenchError(Exception):
    """The benchmark could not run (server did not start, calls could not be placed)."""


class Traffic(enum.Enum):
    REALISTIC = "realistic"
    WORST = "worst"
    DUPLEX = "duplex"  # both sides talk the whole window; agent chunks of 20-100 ms


class Options(msgspec.Struct, frozen=True, kw_only=True):
    calls: int = 20
    seconds: float = 10.0
    audio: str = "linear16"
    traffic: Traffic = Traffic.REALISTIC
    sweep: bool = False
    baseline: bool = False
    json_path: str | None = None
    calls_given: bool = False
    workers: int = 1
    pin_cpus: tuple[int, int] | None = None  # --pin: the server's CPU, the driver's


# --- command line -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(message)


def parse_args(argv: list[str]) -> Options:
    parser = _Parser(
        prog="boba bench",
        description="Load benchmark: N simultaneous calls against a real `boba serve` on "
        "127.0.0.1 (CONTRACT §11).",
    )
    parser.add_argument("--calls", type=int, help="simultaneous calls (default 20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--audio", choices=["mulaw", "linear16"], default="linear16")
    parser.add_argument(
        "--traffic", choices=[t.value for t in Traffic], default=Traffic.REALISTIC.value
    )
    parser.add_argument(
        "--sweep", action="store_true",
        help="find the largest N with p99 <= 20 ms both ways and nothing lost",
    )
    parser.add_argument(
        "--baseline", action="store_true",
        help="also run the same traffic through a bare relay on the same libraries "
        "(no core, no DSP, no store) and report our cost as a ratio to it",
    )
    parser.add_argument(
        "--workers", type=int, default=1,
        help="boba serve --workers N (default 1); CPU and RSS cover every worker",
    )
    parser.add_argument(
        "--pin", action="store_true",
        help="pin the server to CPU 0 and this driver to CPU 1 (sched_setaffinity, as "
        "taskset does), so neither takes the other's core",
    )
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="write the figures")
    args = parser.parse_args(argv)
    pin_cpus: tuple[int, int] | None = None
    if args.pin:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            raise UsageError("--pin needs 2 CPUs this process may run on")
        pin_cpus = (allowed[0], allowed[1])
    calls = 20 if args.calls is None else args.calls
    if not 1 <= calls <= MAX_CALLS:
        raise UsageError(f"--calls must be between 1 and {MAX_CALLS}, got {calls}")
    if not (0 < args.seconds <= MAX_SECONDS) or math.isnan(args.seconds):
        raise UsageError(f"--seconds must be > 0 and <= {MAX_SECONDS:g}, got {args.seconds}")
    return Options(
        calls=calls,
        seconds=args.seconds,
        audio=args.audio,
        traffic=Traffic(args.traffic),
        sweep=args.sweep,
        baseline=args.baseline,
        json_path=args.json_path,
        calls_given=args.calls is not None,
        workers=_workers(args.workers),
        pin_cpus=pin_cpus,
    )


def _workers(workers: int) -> int:
    if not 1 <= workers <= 64:
        raise UsageError(f"--workers must be between 1 and 64, got {workers}")
    return workers


# --- the server under test --------------------------------------------------------------------


def _clean_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without anything that would configure the shop."""
    prefixes = ("BOBA_", "TWILIO_", "DEEPGRAM_", "PROMETHEUS_")
    return {k: v for k, v in environ.items() if not k.startswith(prefixes)}


@dataclass
class ProcSample:
    cpu_seconds: float
    rss_bytes: int
    processes: int


def _children(pid: int) -> list[int]:
    """Child processes, from each thread's `children` list (no scan of all of /proc)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        with contextlib.suppress(OSError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


def sample_process_tree(pid: int) -> ProcSample:
    """CPU seconds (user + system, all threads) and RSS of `pid` and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = 0.0
    rss = 0
    count = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime is field 14, stime 15, rss 24
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        rss += int(fields[21]) * page
        count += 1
        pending += _children(current)
    return ProcSample(cpu_seconds=cpu, rss_bytes=rss, processes=count)


def machine_cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from the first line of /proc/stat."""
    values = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    auth_token: str
    log_path: Path


@contextlib.asynccontextmanager
async def run_server(
    *, agent_url: str, audio: str, max_calls: int, workdir: Path, baseline: bool = False,
    workers: int = 1, server_cpu: int | None = None,
) -> AsyncIterator[Server]:
    """`boba serve` (or, with `baseline`, the bare relay of `bench_baseline`) on 127.0.0.1,
    port chosen by the OS, in `workdir`; stopped at the end."""
    auth_token = secrets.token_hex(16)
    env = _clean_environ(os.environ)
    env.update(
        BOBA_HOST=LOOPBACK,
        BOBA_PORT="0",
        BOBA_DATA_DIR=str(workdir / "data"),
        BOBA_DATABASE=f"sqlite:///{workdir / 'boba.sqlite3'}",
        BOBA_AGENT_URL=agent_url,
        BOBA_AUDIO=audio,
        BOBA_SMS="log",
        BOBA_MAX_CALLS=str(max_calls),
        BOBA_WORKERS=str(workers),
        BOBA_VALIDATE_TWILIO="true",
        TWILIO_AUTH_TOKEN=auth_token,
        PYTHONUNBUFFERED="1",
    )
    out_path = workdir / "serve.out"
    log_path = workdir / "serve.log"
    with out_path.open("wb") as out, log_path.open("wb") as err:
        command = (
            ["-m", "boba_runtime.cli.bench_baseline", "--agent-url", agent_url] if baseline
            else ["-m", "boba_runtime.cli", "serve"]
        )
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=workdir, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
        )
    if server_cpu is not None:  # before it starts threads or workers: they inherit it
        os.sched_setaffinity(process.pid, {server_cpu})
    try:
        banner = BASELINE_BANNER if baseline else "BobaRista is open on"
        base_url = await _wait_banner(process, out_path, log_path, banner)
        await _wait_healthy(base_url, process, log_path)
        yield Server(process=process, base_url=base_url, auth_token=auth_token, log_path=log_path)
    finally:
        await _stop_server(process)


async def _wait_banner(process: subprocess.Popen[bytes], out_path: Path, log_path: Path,
                       banner: str) -> str:
    with trio.move_on_after(SERVER_START_TIMEOUT):
        while True:
            for line in out_path.read_text(errors="replace").splitlines():
                if line.startswith(banner + " "):
                    return line[len(banner):].split()[0]
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise BenchError(
                    f"boba serve exited with {process.returncode}: " + " | ".join(tail)
                )
            await trio.sleep(0.05)
    raise BenchError(f"boba serve did not start within {SERVER_START_TIMEOUT:g} s")


async def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        with trio.move_on_after(SERVER_START_TIMEOUT):
            while process.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{base_url}/healthz")).status_code == 200:
                        return
                await trio.sleep(0.1)
    raise BenchError(f"boba serve never became healthy (log: {log_path})")


async def _stop_server(process: subprocess.Popen[bytes]) -> None:
    with trio.CancelScope(shield=True):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(15):
                while process.poll() is None:
                    await trio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait()


# --- shared measurement state -----------------------------------------------------------------


@dataclass
class Trial:
    """What every call of one run writes into; one clock: `time.monotonic()`."""

    calls: int
    seconds: float
    traffic: Traffic
    measuring: bool = False
    stopping: trio.Event = field(default_factory=trio.Event)
    up_latency: list[float] = field(default_factory=list)  # caller -> agent, seconds
    down_latency: list[float] = field(default_factory=list)  # agent -> caller, seconds
    greeting: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # how late the driver sent caller frames
    up_lost_frames: int = 0
    down_lost_frames: int = 0
    calls_up: int = 0
    calls_failed: int = 0
    failures: list[str] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    speech: dict[tuple[int, int], bytes] = field(default_factory=dict)  # 10 s per format

    @property
    def largest_chunk_steps(self) -> int:
        """The agent's largest audio chunk, in 10 ms steps."""
        return 10 if self.traffic is Traffic.DUPLEX else 24

    def speech_audio(self, seconds: float, rate: int, width: int, rng: random.Random) -> bytes:
        """`seconds` of speech stand-in from a random place in one shared 10 s buffer
        (generated once, before the measured window: synthesis must not stall the driver)."""
        buffer = self.speech.get((rate, width))
        if buffer is None:
            buffer = self.speech[(rate, width)] = _speech(SPEECH_BUFFER_SECONDS, rate, width)
        size = round(seconds * rate) * width
        start = rng.randrange(0, len(buffer) // width) * width
        looped = buffer[start:] + buffer
        while len(looped) < size:
            looped += buffer
        return looped[:size]


@dataclass
class AgentLink:
    """One agent connection accepted by the bench's fake agent, handed to its call."""

    ws: LeanWebSocket
    settings_at: float
    input_frame_bytes: int  # 20 ms of caller audio as the agent receives it
    output_rate: int
    output_width: int  # bytes per sample: 2 for linear16, 1 for μ-law
    done: trio.Event = field(default_factory=trio.Event)


class FakeAgent:
    """A minimal Deepgram Voice Agent endpoint: Welcome, Settings -> SettingsApplied."""

    def __init__(self, links: trio.MemorySendChannel[AgentLink]) -> None:
        self.links = links
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/v1/agent/converse"

    async def handle(self, ws: LeanWebSocket) -> None:
        await ws.send(json.dumps({"type": "Welcome", "request_id": "bench"}))
        message: str | bytes = b""
        with trio.move_on_after(DIAL_TIMEOUT):
            try:
                message = await ws.receive()
            except WsClosed:
                # A link pre-opened by /voice on a worker the stream did not reach: the
                # server closes it unused. Only a link that sends Settings is a call's.
                return
        settings_at = time.monotonic()
        data = json.loads(message) if isinstance(message, str) else {}
        if data.get("type") != "Settings":
            await ws.aclose(code=1008)
            return
        audio_in = data["audio"]["input"]
        audio_out = data["audio"]["output"]
        in_width = 2 if audio_in["encoding"] == "linear16" else 1
        out_width = 2 if audio_out["encoding"] == "linear16" else 1
        link = AgentLink(
            ws=ws,
            settings_at=settings_at,
            input_frame_bytes=round(int(audio_in["sample_rate"]) * FRAME_SECONDS) * in_width,
            output_rate=int(audio_out["sample_rate"]),
            output_width=out_width,
        )
        await ws.send(json.dumps({"type": "SettingsApplied"}))
        await self.links.send(link)
        await link.done.wait()


def _speech(seconds: float, rate: int, width: int) -> bytes:
    """Speech stand-in: a gliding tone with noise, in the agent's output format."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    pcm = 6000 * np.sin(2 * math.pi * (150 + 25 * t) * t)
    pcm += np.random.default_rng(7).normal(0, 500, n)
    samples = pcm.astype("<i2")
    if width == 2:
        return samples.tobytes()
    from boba_proto.audio import ulaw_encode

    return ulaw_encode(samples)


# --- one call ---------------------------------------------------------------------------------


class BenchCall:
    """Both ends of one call: Twilio's socket and the agent's, and their accounting."""

    def __init__(self, index: int, trial: Trial, ws: LeanWebSocket,
                 link: AgentLink, stream_sid: str, call_sid: str, start_sent: float) -> None:
        self.index = index
        self.trial = trial
        self.ws = ws
        self.link = link
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.start_sent = start_sent
        self.rng = random.Random(index)
        self.seq = 1  # `start` used 1
        # caller -> agent
        self.frame_sent_at: list[float] = []
        self.agent_bytes_in = 0
        # agent -> caller, in μ-law bytes at 8 kHz
        self.down_expected = 0
        self.down_chunks: deque[tuple[int, float]] = deque()  # (cumulative end, sent at)
        self.down_received = 0
        self.greeting_audio_at: float | None = None
        self.first_media = trio.Event()
        # Twilio's player
        self.play_until = 0.0
        self.marks: deque[tuple[float, str]] = deque()
        self.mark_waiting = trio.Event()
        self.caller_done = trio.Event()
        self.agent_done = trio.Event()

    def _next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.twilio_reader)
            nursery.start_soon(self.agent_reader)
            nursery.start_soon(self.mark_player)
            nursery.start_soon(self.agent_speaker)
            nursery.start_soon(self.caller_audio)
            await self.caller_done.wait()
            await self.agent_done.wait()
            await self._drain()
            self._count_lost()
            nursery.cancel_scope.cancel()
        await self._hang_up()

    # Twilio side ------------------------------------------------------------------------------

    async def caller_audio(self) -> None:
        try:
            with trio.move_on_after(DIAL_TIMEOUT):
                await self.first_media.wait()  # the server has applied Settings: audio flows
            if not self.first_media.is_set():
                self.trial.failures.append(f"call {self.index}: no greeting audio reached Twilio")
                return
            # a phone's 20 ms clock has nothing to do with another's: a random phase, so the
            # rhythm of dialling cannot line the calls' frames up into bursts
            await trio.sleep(self.rng.uniform(0, FRAME_SECONDS))
            payload = bytes(self.rng.randrange(256) for _ in range(CALLER_FRAME_BYTES))
            timestamp = 20
            start = time.monotonic()
            n = 0
            while not (self.trial.stopping.is_set() and n % 2 == 0):
                media = tw.Media(
                    stream_sid=self.stream_sid,
                    sequence_number=self._next_seq(),
                    media=tw.MediaInfo(chunk=str(n + 1), timestamp=str(timestamp),
                                       payload=payload),
                )
                text = tw.encode_event(media)
                now = time.monotonic()
                if self.trial.measuring:
                    self.trial.lag.append(now - (start + n * FRAME_SECONDS))
                self.frame_sent_at.append(now)
                await self.ws.send(text)
                n += 1
                timestamp += 20
                await trio.sleep_until(_trio_time(start + n * FRAME_SECONDS))
        except WsClosed:
            self.trial.failures.append(f"call {self.index}: the server closed the stream")
        finally:
            self.caller_done.set()

    async def twilio_reader(self) -> None:
        with contextlib.suppress(WsClosed):
            while True:
                text = await self.ws.receive()
                now = time.monotonic()
                try:
                    message = tw.decode_outbound(text)
                except Exception as exc:  # the server broke the protocol
                    self.trial.protocol_errors.append(f"to Twilio: {exc}")
                    continue
                match message:
                    case tw.SendMedia(payload=payload):
                        self._on_media(len(payload), now)
                    case tw.SendMark(name=name):
                        self.marks.append((max(now, self.play_until), name))
                        self.mark_waiting.set()
                    case tw.SendClear():
                        self.trial.protocol_errors.append("unexpected clear (no barge-in sent)")

    def _on_media(self, size: int, now: float) -> None:
        self.play_until = max(now, self.play_until) + size / 8000
        self.down_received += size
        if not self.first_media.is_set():
            self.first_media.set()
            if self.greeting_audio_at is not None:
                own_delay = self.greeting_audio_at - self.link.settings_at
                self.trial.greeting.append(now - self.start_sent - own_delay)
        sent_at = None
        while self.down_chunks and self.down_chunks[0][0] < self.down_received:
            self.down_chunks.popleft()
        if self.down_chunks:
            sent_at = self.down_chunks[0][1]
        if sent_at is not None and self.trial.measuring:
            self.trial.down_latency.append(now - sent_at)

    async def mark_player(self) -> None:
        """Echo each mark once the audio queued before it has played, as Twilio does."""
        with contextlib.suppress(WsClosed):
            while True:
                while not self.marks:
                    self.mark_waiting = trio.Event()
                    await self.mark_waiting.wait()
                due, name = self.marks.popleft()
                await trio.sleep_until(_trio_time(due))
                mark = tw.Mark(stream_sid=self.stream_sid, sequence_number=self._next_seq(),
                               mark=tw.MarkInfo(name=name))
                await self.ws.send(tw.encode_event(mark))

    # agent side ------------------------------------------------------------------------------

    async def agent_reader(self) -> None:
        frame_bytes = self.link.input_frame_bytes
        with contextlib.suppress(WsClosed):
            while True:
                message = await self.link.ws.receive()
                if isinstance(message, str):
                    continue  # KeepAlive and the like
                now = time.monotonic()
                self.agent_bytes_in += len(message)
                covered = self.agent_bytes_in // frame_bytes
                if covered and self.trial.measuring and covered <= len(self.frame_sent_at):
                    self.trial.up_latency.append(now - self.frame_sent_at[covered - 1])

    async def _say(self, seconds: float, *, stoppable: bool) -> None:
        """One agent turn paced in real time, in chunks of 20–240 ms in 10 ms steps
        (20–100 ms in `duplex` traffic, where small chunks are the point)."""
        link = self.link
        await link.ws.send(json.dumps({
            "type": "AgentStartedSpeaking", "total_latency": 0.6,
            "tts_latency": 0.2, "ttt_latency": 0.4,
        }))
        await link.ws.send(json.dumps(
            {"type": "ConversationText", "role": "assistant", "content": "Bench speech."}
        ))
        audio = self.trial.speech_audio(seconds, link.output_rate, link.output_width, self.rng)
        step = round(link.output_rate * 0.01) * link.output_width  # 10 ms
        per_8k = 80 / step  # μ-law bytes at 8 kHz per agent byte
        at = 0
        start = time.monotonic()
        while at < len(audio):
            if stoppable and self.trial.stopping.is_set():
                break
            size = step * self.rng.randint(2, self.trial.largest_chunk_steps)
            chunk = audio[at : at + size]
            at += len(chunk)
            now = time.monotonic()
            if self.greeting_audio_at is None:
                self.greeting_audio_at = now
            self.down_expected += round(len(chunk) * per_8k)
            self.down_chunks.append((self.down_expected, now))
            await link.ws.send(chunk)
            await trio.sleep_until(_trio_time(start + at / (link.output_rate * link.output_width)))
        # AgentAudioDone pads the last partial 20 ms frame (available from now on)
        padded = -(-self.down_expected // CALLER_FRAME_BYTES) * CALLER_FRAME_BYTES
        if padded != self.down_expected:
            self.down_expected = padded
            self.down_chunks.append((padded, time.monotonic()))
        await link.ws.send(json.dumps({"type": "AgentAudioDone"}))

    async def agent_speaker(self) -> None:
        try:
            await trio.sleep(AGENT_OWN_DELAY)
            await self._say(GREETING_SECONDS, stoppable=False)
            while not self.trial.stopping.is_set():
                if self.trial.traffic is Traffic.REALISTIC:
                    with trio.move_on_after(self.rng.uniform(1.5, 4.0)):
                        await self.trial.stopping.wait()
                    if self.trial.stopping.is_set():
                        break
                    await self._say(self.rng.uniform(2.0, 4.0), stoppable=True)
                else:  # worst and duplex: speech without pause
                    await self._say(5.0, stoppable=True)
        except WsClosed:
            self.trial.failures.append(f"call {self.index}: the server closed the agent socket")
        finally:
            self.agent_done.set()

    # the end -----------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Wait until everything sent has arrived (or it never will)."""
        with trio.move_on_after(DRAIN_TIMEOUT):
            while (
                self.agent_bytes_in < len(self.frame_sent_at) * self.link.input_frame_bytes
                or self.down_received < self.down_expected
            ):
                await trio.sleep(0.05)

    def _count_lost(self) -> None:
        up_frames = self.agent_bytes_in // self.link.input_frame_bytes
        self.trial.up_lost_frames += max(0, len(self.frame_sent_at) - up_frames)
        missing = max(0, self.down_expected - self.down_received)
        self.trial.down_lost_frames += -(-missing // CALLER_FRAME_BYTES)

    async def _hang_up(self) -> None:
        stop = tw.Stop(stream_sid=self.stream_sid, sequence_number=self._next_seq(),
                       stop=tw.StopInfo(account_sid=ACCOUNT_SID, call_sid=self.call_sid))
        with contextlib.suppress(WsClosed):
            await self.ws.send(tw.encode_event(stop))
        await self.ws.aclose(wait=2.0)  # the server closes the stream after `stop`
        self.link.done.set()


def _trio_time(monotonic_deadline: float) -> float:
    """A `time.monotonic()` deadline on trio's clock (they differ by an offset)."""
    return trio.current_time() + (monotonic_deadline - time.monotonic())


# --- dialling ---------------------------------------------------------------------------------


def _sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def _twiml_stream(text: str) -> tuple[str, dict[str, str]]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(text)
    stream = root.find("Connect/Stream")
    if stream is None:
        raise BenchError(f"/voice answered without a stream: {text[:200]}")
    params = {p.get("name", ""): p.get("value", "") for p in stream.iter("Parameter")}
    return stream.get("url", ""), params


class Dialler:
    """Places calls one at a time, so each agent connection pairs with the right call."""

    def __init__(self, server: Server, http: httpx.AsyncClient,
                 links: trio.MemoryReceiveChannel[AgentLink], trial: Trial) -> None:
        self.server = server
        self.http = http
        self.links = links
        self.trial = trial
        self.lock = trio.Lock()

    async def place(self, index: int, ready: trio.Event) -> None:
        """Dial call `index` (holding the lock until its agent connection arrives) and run it.

        Calls start as they are dialled, as real callers arrive: their 20 ms ticks fall at
        unrelated phases instead of all at once."""
        call_sid = "CA" + f"{index + 1:032x}"
        stream_sid = "MZ" + f"{index + 1:032x}"
        server = self.server
        await self.lock.acquire()
        locked = True
        try:
            params = {
                "AccountSid": ACCOUNT_SID, "CallSid": call_sid, "CallStatus": "ringing",
                "Direction": "inbound", "From": f"+1415555{index % 10000:04d}",
                "To": "+14155550100", "ApiVersion": "2010-04-01",
            }
            url = f"{server.base_url}/voice"
            response = await self.http.post(
                url, data=params,
                headers={"X-Twilio-Signature": _sign(server.auth_token, url, params)},
            )
            if response.status_code != 200:
                raise BenchError(f"/voice answered {response.status_code}")
            stream_url, parameters = _twiml_stream(response.text)
            if "token" not in parameters:
                raise BenchError("/voice answered without a stream (busy?)")
            signature = _sign(server.auth_token, stream_url, {})
            target = urlsplit(server.base_url)
            ws = await connect(
                target.hostname or LOOPBACK, target.port or 80, urlsplit(stream_url).path,
                headers=[("X-Twilio-Signature", signature)],
            )
            try:
                await ws.send(
                    tw.encode_event(tw.Connected(protocol="Call", version="1.0.0"))
                )
                start = tw.Start(
                    stream_sid=stream_sid, sequence_number="1",
                    start=tw.StartInfo(
                        stream_sid=stream_sid, call_sid=call_sid, account_sid=ACCOUNT_SID,
                        tracks=["inbound"],
                        media_format=tw.MediaFormat(
                            encoding="audio/x-mulaw", sample_rate=8000, channels=1
                        ),
                        custom_parameters=parameters,
                    ),
                )
                start_sent = time.monotonic()
                await ws.send(tw.encode_event(start))
                link = None
                with trio.move_on_after(DIAL_TIMEOUT):
                    link = await self.links.receive()
                if link is None:
                    raise BenchError("the server never connected to the agent")
                self.lock.release()
                locked = False
                call = BenchCall(index, self.trial, ws, link, stream_sid, call_sid, start_sent)
                self.trial.calls_up += 1
                ready.set()
                try:
                    await call.run()
                finally:
                    link.done.set()
            finally:
                await ws.aclose(wait=0.5)
        except (BenchError, httpx.HTTPError, OSError, WsHandshakeError, WsClosed) as exc:
            self._failed(index, str(exc) or type(exc).__name__, ready)
        finally:
            if locked:
                self.lock.release()

    def _failed(self, index: int, why: str, ready: trio.Event) -> None:
        self.trial.calls_failed += 1
        self.trial.failures.append(f"call {index}: {why}")
        ready.set()


# --- one run ----------------------------------------------------------------------------------


def _percentiles(samples: list[float]) -> dict[str, float | int | None]:
    if not samples:
        return {"p50": None, "p99": None, "max": None, "samples": 0}
    ms = np.asarray(samples) * 1000.0
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "max": round(float(ms.max()), 3),
        "samples": int(ms.size),
    }


class Progress:
    """One status line on stderr: rewritten in place on a terminal, every 5 s otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r\x1b[K" + text + ("\n" if final else ""))
        elif final or now - self.last >= 5.0:
            sys.stderr.write(text + "\n")
            self.last = now
        sys.stderr.flush()


async def run_trial(options: Options, calls: int, progress: Progress,
                    *, baseline: bool = False) -> dict[str, Any]:
    """Start a fresh server (or the bare relay), place `calls` calls, measure
    `options.seconds`, report."""
    trial = Trial(calls=calls, seconds=options.seconds, traffic=options.traffic)
    link_send, link_receive = trio.open_memory_channel[AgentLink](0)
    agent = FakeAgent(link_send)
    with tempfile.TemporaryDirectory(prefix="boba-bench-") as tmp:
        async with trio.open_nursery() as nursery:
            agent.port = await nursery.start(serve, agent.handle, LOOPBACK)
            async with (
                run_server(agent_url=agent.url, audio=options.audio,
                           max_calls=calls + 10, workdir=Path(tmp),
                           baseline=baseline,
                           workers=1 if baseline else options.workers,
                           server_cpu=options.pin_cpus[0] if options.pin_cpus else None,
                           ) as server,
                httpx.AsyncClient(timeout=DIAL_TIMEOUT,
                                  limits=httpx.Limits(max_connections=8)) as http,
            ):
                result = await _drive(options, trial, server, http, link_receive, progress,
                                      baseline=baseline)
                if result["failures"] or result["calls_failed"]:
                    # why the server side gave up, for whoever reads the report
                    log = server.log_path.read_text(errors="replace").splitlines()
                    result["server_log_tail"] = log[-40:]
            nursery.cancel_scope.cancel()
    return result


async def _drive(options: Options, trial: Trial, server: Server, http: httpx.AsyncClient,
                 links: trio.MemoryReceiveChannel[AgentLink],
                 progress: Progress, *, baseline: bool = False) -> dict[str, Any]:
    dialler = Dialler(server, http, links, trial)
    pid = server.process.pid
    idle = await trio.to_thread.run_sync(sample_process_tree, pid)
    who = "baseline relay, " if baseline else ""
    label = f"{trial.calls} calls, {who}{options.audio}, {options.traffic.value}"
    async with trio.open_nursery() as nursery:
        for index in range(trial.calls):
            ready = trio.Event()
            nursery.start_soon(dialler.place, index, ready)
            await ready.wait()
            progress.show(f"bench: {label}: dialled {index + 1}/{trial.calls}")
            if trial.calls_failed:
                break  # the server is refusing or too slow: this N has failed already
        await trio.sleep(GREETING_SECONDS + AGENT_OWN_DELAY + 0.5)  # the last greeting plays
        before = await trio.to_thread.run_sync(sample_process_tree, pid)
        driver_before = resource.getrusage(resource.RUSAGE_SELF)
        machine_before = machine_cpu_times()
        started = time.monotonic()
        trial.measuring = True
        deadline = started + trial.seconds
        while (now := time.monotonic()) < deadline:
            await trio.sleep(min(1.0, deadline - now))
            sample = await trio.to_thread.run_sync(sample_process_tree, pid)
            elapsed = time.monotonic() - started
            cores = (sample.cpu_seconds - before.cpu_seconds) / max(elapsed, 1e-9)
            up = _percentiles(trial.up_latency[-5000:])
            down = _percentiles(trial.down_latency[-5000:])
            progress.show(
                f"bench: {label}: {elapsed:4.1f}/{trial.seconds:g} s  server {cores:.2f} cores  "
                f"p99 up {up['p99']} ms down {down['p99']} ms"
            )
        trial.measuring = False
        elapsed = time.monotonic() - started
        after = await trio.to_thread.run_sync(sample_process_tree, pid)
        driver_after = resource.getrusage(resource.RUSAGE_SELF)
        machine_after = machine_cpu_times()
        trial.stopping.set()
    busy = (machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1)
    driver_cores = (driver_after.ru_utime + driver_after.ru_stime
                    - driver_before.ru_utime - driver_before.ru_stime) / elapsed
    report = _report(options, trial, idle, before, after, elapsed, driver_cores)
    report["machine_cpu_busy"] = round(busy, 3)
    if baseline:
        report["audio"] = "mulaw"  # the relay passes μ-law through whatever was asked
        report["server"]["kind"] = "baseline relay (Hypercorn + Quart-Trio + trio-websocket)"
    return report


def _report(options: Options, trial: Trial, idle: ProcSample, before: ProcSample,
            after: ProcSample, elapsed: float, driver_cores: float) -> dict[str, Any]:
    cores = (after.cpu_seconds - before.cpu_seconds) / elapsed
    live = max(trial.calls_up, 1)
    up = _percentiles(trial.up_latency)
    down = _percentiles(trial.down_latency)
    lost = trial.up_lost_frames + trial.down_lost_frames
    ok = (
        trial.calls_failed == 0
        and not trial.failures  # a call the server ended early, or one never greeted
        and not trial.protocol_errors
        and lost == 0
        and up["p99"] is not None and float(up["p99"]) <= P99_LIMIT_MS
        and down["p99"] is not None and float(down["p99"]) <= P99_LIMIT_MS
    )
    return {
        "calls": trial.calls,
        "calls_connected": trial.calls_up,
        "calls_failed": trial.calls_failed,
        "seconds": round(elapsed, 3),
        "audio": options.audio,
        "traffic": options.traffic.value,
        "pinned_cpus": list(options.pin_cpus) if options.pin_cpus else None,
        "server": {
            "processes": after.processes,
            "cpu_cores": round(cores, 4),
            "cpu_per_call": round(cores / live, 5),
            "rss_idle_bytes": idle.rss_bytes,
            "rss_loaded_bytes": after.rss_bytes,
            "rss_per_call_bytes": round((after.rss_bytes - idle.rss_bytes) / live),
        },
        "latency_ms": {"caller_to_agent": up, "agent_to_caller": down},
        "frames_lost": {
            "caller_to_agent": trial.up_lost_frames,
            "agent_to_caller": trial.down_lost_frames,
            "total": lost,
        },
        "greeting_ms": _percentiles(trial.greeting),
        "driver": {
            "cpu_cores": round(driver_cores, 4),
            "send_lag_ms": _percentiles(trial.lag),
        },
        "protocol_errors": trial.protocol_errors[:20],
        "failures": trial.failures[:20],
        "ok": ok,
    }


# --- sweep ------------------------------------------------------------------------------------


async def run_sweep(options: Options, progress: Progress) -> dict[str, Any]:
    """Double N until a run fails the target, then bisect; bounded in trials and time."""
    deadline = time.monotonic() + SWEEP_BUDGET_SECONDS
    trials: list[dict[str, Any]] = []
    best: int | None = None
    worst_failed: int | None = None
    n = options.calls if options.calls_given else 10

    async def attempt(calls: int) -> bool:
        result = await run_trial(options, calls, progress)
        trials.append(result)
        _summary(result, progress)
        return bool(result["ok"])

    while time.monotonic() < deadline:
        if await attempt(n):
            best = n
            if n >= MAX_CALLS:
                break
            n = min(MAX_CALLS, n * 2)
        else:
            worst_failed = n
            break
    if best is None and worst_failed is not None and worst_failed > 1:
        low, high = 0, worst_failed
    else:
        low, high = best or 0, worst_failed or 0
    while high and high - low > max(1, low // 10) and time.monotonic() < deadline:
        middle = (low + high) // 2
        if middle <= 0:
            break
        if await attempt(middle):
            low = middle
        else:
            high = middle
    best = low or None
    return {
        "max_calls_ok": best,
        "first_failing_calls": high or None,
        "criterion": f"p99 <= {P99_LIMIT_MS:g} ms both ways, no frame lost, every call connected",
        "trials": trials,
    }


def _summary(result: dict[str, Any], progress: Progress) -> None:
    up = result["latency_ms"]["caller_to_agent"]
    down = result["latency_ms"]["agent_to_caller"]
    server = result["server"]
    progress.show(
        f"bench: {result['calls']} calls ({result['calls_connected']} up), {result['audio']}, "
        f"{result['traffic']}: server {server['cpu_cores']:.2f} cores "
        f"({server['cpu_per_call'] * 100:.2f}% of a core and "
        f"{server['rss_per_call_bytes'] / 1024:.0f} KiB per call); "
        f"latency up p50/p99/max {up['p50']}/{up['p99']}/{up['max']} ms, "
        f"down {down['p50']}/{down['p99']}/{down['max']} ms; "
        f"lost {result['frames_lost']['total']}; greeting p50 {result['greeting_ms']['p50']} ms; "
        f"driver {result['driver']['cpu_cores']:.2f} cores; "
        f"machine {result['machine_cpu_busy'] * 100:.0f}% busy; "
        f"{'ok' if result['ok'] else 'NOT ok'}",
        final=True,
    )


# --- entry point ------------------------------------------------------------------------------


def _raise_fd_limit() -> None:
    """Each call holds four sockets here and two in the server (which inherits this)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _ratio(ours: float | None, floor: float | None) -> float | None:
    if ours is None or not floor:
        return None
    return round(ours / floor, 3)


def baseline_ratios(ours: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    """Our figures divided by the bare relay's, from the same run: what the core, the DSP
    and the bookkeeping cost on top of the libraries both stand on."""
    return {
        "cpu_per_call": _ratio(ours["server"]["cpu_per_call"], floor["server"]["cpu_per_call"]),
        "rss_per_call": _ratio(float(ours["server"]["rss_per_call_bytes"]),
                               float(floor["server"]["rss_per_call_bytes"]) or None),
        "p99_caller_to_agent": _ratio(ours["latency_ms"]["caller_to_agent"]["p99"],
                                      floor["latency_ms"]["caller_to_agent"]["p99"]),
        "p99_agent_to_caller": _ratio(ours["latency_ms"]["agent_to_caller"]["p99"],
                                      floor["latency_ms"]["agent_to_caller"]["p99"]),
    }


async def _main(options: Options) -> dict[str, Any]:
    progress = Progress()
    if options.pin_cpus:  # the server is pinned to the other CPU as it starts (run_server)
        os.sched_setaffinity(0, {options.pin_cpus[1]})
    if options.sweep:
        return {"sweep": await run_sweep(options, progress)}
    result = await run_trial(options, options.calls, progress)
    _summary(result, progress)
    if options.baseline:
        floor = await run_trial(options, options.calls, progress, baseline=True)
        _summary(floor, progress)
        result["baseline"] = floor
        result["ratio_to_baseline"] = ratios = baseline_ratios(result, floor)
        progress.show(
            f"bench: ours / baseline relay: CPU per call x{ratios['cpu_per_call']}, "
            f"p99 up x{ratios['p99_caller_to_agent']}, down x{ratios['p99_agent_to_caller']}",
            final=True,
        )
    return result


def _exit_code_for(exc: BaseException) -> int:
    """130 for Ctrl-C, 1 (with the reason) when the bench could not run; anything else
    is a bug and propagates."""
    group = exc if isinstance(exc, BaseExceptionGroup) else BaseExceptionGroup("", [exc])
    interrupted, _ = group.split(KeyboardInterrupt)
    if interrupted is not None:
        print("boba bench: interrupted; the server was stopped", file=sys.stderr)
        return 130
    failed, rest = group.split(BenchError)
    if failed is not None and rest is None:
        reasons = [str(e) for e in _leaves(failed)]
        print(f"boba bench: {'; '.join(reasons)}", file=sys.stderr)
        return 1
    raise exc


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for inner in group.exceptions:
        found += _leaves(inner) if isinstance(inner, BaseExceptionGroup) else [inner]
    return found


def main(argv: list[str]) -> int:
    try:
        options = parse_args(argv)
    except UsageError as exc:
        print(f"boba bench: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    _raise_fd_limit()
    try:
        report = trio.run(_main, options)
    except BaseException as exc:  # trio nurseries wrap errors in exception groups
        return _exit_code_for(exc)
    report["command"] = "boba bench " + shlex.join(argv)
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(report, indent=2) + "\n")
    if not options.sweep:
        print(json.dumps(report, indent=2))
    else:
        sweep = report["sweep"]
        print(f"largest N meeting the target: {sweep['max_calls_ok']}")
    return 0
