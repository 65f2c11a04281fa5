"""`boba call`: a phone call from the terminal against a running `boba serve` (CONTRACT §1).

    boba call [--url URL] [--script FILE] [--password PW] [--caller NUMBER]
              [--voice] [--save-audio FILE]

It opens the staff softphone socket `/phone/ws` (the same `run_call` as a Twilio call),
plays Twilio's part (`connected`, `start`, marks echoed as if played, `stop`), and sends
each caller utterance as a `text` event once the agent has finished replying: its
utterance's mark came back and the line has been quiet for a moment (or a turn timeout
passed). It prints

    caller: <what was sent>
    agent: <each assistant transcript>
    fn: <name>(<arguments JSON>) -> <result JSON>
    order: <NNNN>            (last, when the call committed an order)

With `--voice` (needs `pip install .[speech]`) each line is spoken into the call as audio
(eSpeak NG, μ-law 8 kHz, 20 ms frames, silence in between) instead of sent as text, and
`heard: <words>` shows what the agent recognised. `--save-audio FILE` writes the agent's
audio, as the caller heard it, to a WAV file when the call ends.

Exit 0 only when the call ended with a committed order, 1 when it ended without one, 2 on
usage or connection errors (bad flags, unreadable script, server unreachable, password
refused, call refused). The URL defaults to `BOBA_PUBLIC_URL`, else
`http://BOBA_HOST:BOBA_PORT`; the password to `BOBA_STAFF_PASSWORD`, else the file
`boba serve` generated (`BOBA_DATA_DIR/staff-password`). Flags win over the environment,
the environment over `.env`.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO
from urllib.parse import urlsplit

import trio
import trio_websocket

from boba_proto import phone
from boba_proto import twilio as tw
from boba_proto.errors import RemoteProtocolError
from boba_runtime.call.agent_link import sole_exception
from boba_runtime.cli.phone_voice import CallerVoice, SpeechUnavailable, save_wav
from boba_runtime.config.settings import SettingsError, default_public_url, read_dotenv

__all__ = ["main"]

QUIET_AFTER_MARK_S: Final = 0.3
"""After the reply's mark, this much silence means the agent has finished its turn."""
QUIET_AFTER_TEXT_S: Final = 1.5
"""Without a mark (an agent that sends no audio), a longer silence after its words."""
TURN_TIMEOUT_S: Final = 20.0
"""An agent that says nothing for this long gets the next line anyway."""
CONNECT_TIMEOUT_S: Final = 10.0
HANG_UP_TIMEOUT_S: Final = 5.0
"""After `stop`, how long to wait for the server to close the call."""
EXIT_ORDER, EXIT_NO_ORDER, EXIT_USAGE = 0, 1, 2


NextLine = Callable[[], Awaitable[str | None]]
"""Gives the next caller utterance, or None when the caller is done."""


class CallFailed(Exception):
    """A usage or connection problem: printed as one line, exit 2."""


@dataclass
class CallLine:
    """The state of one terminal call, updated by the reader task."""

    out: TextIO
    stream_sid: str
    order_number: str | None = None
    ended: trio.Event = field(default_factory=trio.Event)
    close_code: int | None = None
    close_reason: str = ""
    activity: trio.Event = field(default_factory=trio.Event)
    last_event: float = 0.0
    saw_mark: bool = False
    saw_reply: bool = False
    voice: CallerVoice | None = None  # --voice: lines are spoken, not typed
    agent_audio: bytearray | None = None  # --save-audio: the agent's μ-law, as played

    def print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def heard(self) -> None:
        self.last_event = trio.current_time()
        self.activity.set()
        self.activity = trio.Event()

    def begin_turn(self) -> None:
        self.saw_mark = False
        self.saw_reply = False
        self.last_event = trio.current_time()


# --- settings ---------------------------------------------------------------------------------


def _setting(name: str, flags: Mapping[str, str | None], env: Mapping[str, str],
             dotenv: Mapping[str, str]) -> str | None:
    for source in (flags, env, dotenv):
        value = source.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def resolve_url(flag: str | None, env: Mapping[str, str], dotenv: Mapping[str, str]) -> str:
    """The server's base URL: --url, BOBA_PUBLIC_URL, else http://BOBA_HOST:BOBA_PORT."""
    url = _setting("URL", {"URL": flag}, {}, {}) or _setting("BOBA_PUBLIC_URL", {}, env, dotenv)
    if url is None:
        host = _setting("BOBA_HOST", {}, env, dotenv) or "127.0.0.1"
        port_text = _setting("BOBA_PORT", {}, env, dotenv) or "8000"
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise CallFailed(f"BOBA_PORT: expected a port number, got {port_text!r}")
        url = default_public_url(host, int(port_text), tls=False)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise CallFailed(f"expected an http:// or https:// URL with a host, got {url!r}")
    return url.rstrip("/")


def phone_socket_url(base_url: str) -> str:
    """`http(s)://host[:port][/prefix]` -> `ws(s)://host[:port][/prefix]/phone/ws`."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/phone/ws"


def resolve_password(flag: str | None, env: Mapping[str, str],
                     dotenv: Mapping[str, str]) -> str:
    password = flag or _setting("BOBA_STAFF_PASSWORD", {}, env, dotenv)
    if password:
        return password
    data_dir = _setting("BOBA_DATA_DIR", {}, env, dotenv) or "./boba-data"
    path = Path(data_dir) / "staff-password"
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except OSError:
        stored = ""
    if not stored:
        raise CallFailed(
            f"no staff password: set BOBA_STAFF_PASSWORD or --password (looked in {path})"
        )
    return stored


def read_script(path: str) -> list[str]:
    """One caller utterance per line; blank lines and `#` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CallFailed(f"cannot read the script {path!r}: {exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


# --- the call ---------------------------------------------------------------------------------


async def _reader(ws: trio_websocket.WebSocketConnection, line: CallLine) -> None:
    try:
        while True:
            try:
                event = phone.decode_to_phone(await ws.get_message())
            except RemoteProtocolError:
                continue  # the server's fault; one bad frame does not end the call
            match event:
                case phone.PhoneTranscript(role="assistant", content=content):
                    line.print(f"agent: {content}")
                    line.saw_reply = True
                case phone.PhoneTranscript(role="user", content=content) if line.voice:
                    line.print(f"heard: {content}")
                case tw.SendMedia(payload=payload) if line.agent_audio is not None:
                    line.agent_audio += payload
                case phone.PhoneFunction(name=name, arguments=arguments, result=result):
                    line.print(f"fn: {name}({arguments}) -> {result}")
                    if name == "checkout_order":
                        _note_order(line, result)
                case tw.SendMark(name=name):
                    # Played at once: this phone has no speaker to wait for.
                    echo = tw.Mark(stream_sid=line.stream_sid, sequence_number="1",
                                   mark=tw.MarkInfo(name=name))
                    await ws.send_message(tw.encode_event(echo))
                    line.saw_mark = True
            line.heard()
    except trio_websocket.ConnectionClosed as exc:
        if exc.reason is not None:
            line.close_code = exc.reason.code
            line.close_reason = exc.reason.reason or ""
    finally:
        line.ended.set()
        line.activity.set()


def _note_order(line: CallLine, result: str) -> None:
    try:
        data = json.loads(result)
    except ValueError:
        return
    if isinstance(data, dict) and data.get("ok") and isinstance(data.get("order_number"), str):
        line.order_number = data["order_number"]


async def _wait_for_agent(line: CallLine, timeout: float) -> None:
    """Until the agent has finished its reply (see the module docstring)."""
    started = trio.current_time()
    while not line.ended.is_set():
        now = trio.current_time()
        quiet = now - line.last_event
        if line.saw_mark and quiet >= QUIET_AFTER_MARK_S:
            return
        if line.saw_reply and quiet >= QUIET_AFTER_TEXT_S:
            return
        if now - started >= timeout:
            return
        wait = QUIET_AFTER_MARK_S if line.saw_mark else 0.1
        with trio.move_on_after(wait):
            await line.activity.wait()


async def run_phone_call(
    url: str,
    password: str,
    next_line: NextLine,
    *,
    out: TextIO,
    caller: str | None = None,
    turn_timeout: float = TURN_TIMEOUT_S,
    voice: CallerVoice | None = None,
    save_audio: str | None = None,
) -> int:
    """One call; `next_line()` is awaited for each utterance (None ends the call)."""
    target = phone_socket_url(url)
    parts = urlsplit(target)
    ssl_context = ssl.create_default_context() if parts.scheme == "wss" else None
    headers = [(b"Authorization", f"Bearer {password}".encode())]
    stream_sid = "MZ" + uuid.uuid4().hex
    line = CallLine(out=out, stream_sid=stream_sid, voice=voice,
                    agent_audio=bytearray() if save_audio else None)
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    ws = await trio_websocket.connect_websocket_url(
                        nursery, target, ssl_context=ssl_context, extra_headers=headers,
                        message_queue_size=64, max_message_size=1 << 20,
                    )
            except trio.TooSlowError:
                raise CallFailed(f"{target} did not answer within {CONNECT_TIMEOUT_S:g} s") \
                    from None
            except trio_websocket.ConnectionRejected as exc:
                raise CallFailed(_rejected(exc)) from None
            except (trio_websocket.HandshakeError, OSError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise CallFailed(f"cannot connect to {target}: {why}") from None
            nursery.start_soon(_reader, ws, line)
            await _converse(ws, line, next_line, caller, turn_timeout)
            await ws.aclose()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # A rejected handshake surfaces from trio-websocket's reader task, in the group.
        sole = sole_exception(group)
        if isinstance(sole, CallFailed):
            raise sole from None
        if isinstance(sole, trio_websocket.ConnectionRejected):
            raise CallFailed(_rejected(sole)) from None
        if isinstance(sole, trio_websocket.HandshakeError | OSError):
            raise CallFailed(f"cannot connect to {target}: {sole}") from None
        raise
    if save_audio is not None and line.agent_audio is not None:
        try:
            save_wav(save_audio, bytes(line.agent_audio))
        except OSError as exc:
            raise CallFailed(f"cannot write {save_audio!r}: {exc}") from None
    if line.close_code in (1008, 1013):
        raise CallFailed(
            "the server refused the call: "
            + (line.close_reason or ("it is busy" if line.close_code == 1013 else "policy"))
        )
    if line.order_number is not None:
        line.print(f"order: {line.order_number}")
        return EXIT_ORDER
    return EXIT_NO_ORDER


def _rejected(exc: trio_websocket.ConnectionRejected) -> str:
    if exc.status_code == 401:
        return "the server refused the staff password (HTTP 401)"
    if exc.status_code == 404:
        return "this server has no /phone/ws (is it a boba serve?)"
    return f"the server refused the call: HTTP {exc.status_code}"


async def _converse(
    ws: trio_websocket.WebSocketConnection,
    line: CallLine,
    next_line: NextLine,
    caller: str | None,
    turn_timeout: float,
) -> None:
    sid = line.stream_sid
    await ws.send_message(tw.encode_event(tw.Connected(protocol="Call", version="1.0.0")))
    start = tw.Start(
        stream_sid=sid,
        sequence_number="1",
        start=tw.StartInfo(
            stream_sid=sid,
            call_sid="",  # the server names the call
            tracks=["inbound"],
            media_format=tw.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
            custom_parameters={"caller": caller} if caller else {},
        ),
    )
    await ws.send_message(tw.encode_event(start))
    line.begin_turn()
    if line.voice is None:
        await _talk(ws, line, next_line, turn_timeout)
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(line.voice.pump, ws, sid)
        await _talk(ws, line, next_line, turn_timeout)
        nursery.cancel_scope.cancel()


async def _talk(
    ws: trio_websocket.WebSocketConnection,
    line: CallLine,
    next_line: NextLine,
    turn_timeout: float,
) -> None:
    sid = line.stream_sid
    try:
        while not line.ended.is_set():
            await _wait_for_agent(line, turn_timeout)  # the greeting, then each reply
            if line.ended.is_set():
                return
            text = await next_line()
            if text is None or line.ended.is_set():
                break
            line.print(f"caller: {text}")
            if line.voice is not None:
                await line.voice.say(text)  # the reply comes after the pause that ends it
                line.begin_turn()
            else:
                line.begin_turn()
                await ws.send_message(phone.encode_text(text))
        stop = tw.Stop(stream_sid=sid, sequence_number="2",
                       stop=tw.StopInfo(account_sid="", call_sid=""))
        await ws.send_message(tw.encode_event(stop))
        with trio.move_on_after(HANG_UP_TIMEOUT_S):
            await line.ended.wait()
    except trio_websocket.ConnectionClosed:
        pass  # the call ended while we were talking; the reader recorded how


# --- entry point ------------------------------------------------------------------------------


def _caller_voice() -> CallerVoice:
    try:
        return CallerVoice()
    except SpeechUnavailable as exc:
        raise CallFailed(f"--voice: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boba call",
        description="A phone call from the terminal against a running boba serve.",
    )
    parser.add_argument("--url", help="the server (default: BOBA_PUBLIC_URL, else "
                        "http://BOBA_HOST:BOBA_PORT)")
    parser.add_argument("--script", metavar="FILE", help="one caller utterance per line; "
                        "blank and # lines are skipped")
    parser.add_argument("--password", help="the staff password (default: "
                        "BOBA_STAFF_PASSWORD, else BOBA_DATA_DIR/staff-password)")
    parser.add_argument("--caller", metavar="NUMBER", help="the number the call comes from "
                        "(for 'is my order ready')")
    parser.add_argument("--voice", action="store_true", help="speak each line into the call "
                        "as audio (eSpeak NG; needs pip install .[speech])")
    parser.add_argument("--save-audio", metavar="FILE", help="write the agent's audio to "
                        "this WAV file when the call ends")
    parser.add_argument("--turn-timeout", type=float, default=TURN_TIMEOUT_S, metavar="S",
                        help=f"seconds to wait for a reply (default {TURN_TIMEOUT_S:g})")
    return parser


def main(argv: list[str], *, environ: Mapping[str, str] | None = None,
         stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    env = os.environ if environ is None else environ
    try:
        dotenv = read_dotenv(".env")
        url = resolve_url(args.url, env, dotenv)
        password = resolve_password(args.password, env, dotenv)
        script = read_script(args.script) if args.script is not None else None
        if args.turn_timeout <= 0:
            raise CallFailed("--turn-timeout must be positive")
        voice = _caller_voice() if args.voice else None
    except (CallFailed, SettingsError) as exc:
        print(f"boba call: {exc}", file=err)
        return EXIT_USAGE
    source = stdin or sys.stdin

    if script is not None:
        remaining = list(script)

        async def next_line() -> str | None:
            return remaining.pop(0) if remaining else None
    else:
        interactive = source.isatty()

        def read_one() -> str | None:
            while True:
                if interactive:
                    print("you> ", end="", file=err, flush=True)
                text = source.readline()
                if not text:
                    return None
                text = text.strip()
                if text and not text.startswith("#"):
                    return text

        async def next_line() -> str | None:
            return await trio.to_thread.run_sync(read_one, abandon_on_cancel=True)

    try:
        return trio.run(lambda: run_phone_call(
            url, password, next_line, out=out, caller=args.caller,
            turn_timeout=args.turn_timeout, voice=voice, save_audio=args.save_audio,
        ))
    except CallFailed as exc:
        print(f"boba call: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_NO_ORDER
