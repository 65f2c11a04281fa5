"""A client that behaves like Twilio towards our server (the Twilio note, §7 "fake Twilio").

* `post_webhook` signs a form POST with `X-Twilio-Signature` over the *public* URL, exactly
  as Twilio does (`RequestValidator.compute_signature`), and sends it to the real server.
* `parse_twiml` pulls the `<Say>`, `<Connect action>`, `<Stream url>` and `<Parameter>`s out
  of an answer.
* `TwilioStream` opens the Media Streams WebSocket with a signed handshake (signature over
  the stream URL as it appears in the TwiML, no params), sends `connected`, `start` (with
  the TwiML's parameters), `media` every 20 ms with Twilio's counters (shared
  `sequenceNumber`, `chunk` += 1, `timestamp` += 20 from a non-zero start), and plays what
  the server sends like Twilio does: media is queued and "played" at 8000 bytes/s, each
  `mark` is echoed when the audio before it has played (at once if nothing is queued), and
  `clear` drops the queue and echoes every pending mark immediately. Outbound messages with
  unknown keys are recorded as errors (Twilio's 31951).

Every message is written and read here as literal JSON in Twilio's own shapes (the Twilio
note §1.2–1.4 and the real session in /work/shared/data), never with the product's
`boba_proto.twilio` structs: a field-name mistake made on both sides must show.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
import trio_websocket
from twilio.request_validator import RequestValidator

FRAME_BYTES = 160
FRAME_SECONDS = 0.02
SILENCE = b"\xff" * FRAME_BYTES


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, params))


async def post_webhook(
    client: httpx.AsyncClient,
    *,
    server_url: str,
    public_url: str,
    path: str,
    params: dict[str, str],
    auth_token: str | None,
    signature: str | None = None,
) -> httpx.Response:
    """POST `params` to `server_url + path`, signed as Twilio would for `public_url + path`."""
    headers = {}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    elif auth_token is not None:
        headers["X-Twilio-Signature"] = sign(auth_token, public_url.rstrip("/") + path, params)
    return await client.post(server_url.rstrip("/") + path, data=params, headers=headers)


@dataclass
class TwiML:
    says: list[str]
    connect_action: str | None
    stream_url: str | None
    parameters: dict[str, str]
    hangup: bool


def parse_twiml(text: str) -> TwiML:
    root = ET.fromstring(text)
    assert root.tag == "Response", text
    says = [el.text or "" for el in root.iter("Say")]
    connect = root.find("Connect")
    stream = connect.find("Stream") if connect is not None else None
    params = {}
    if stream is not None:
        params = {p.get("name", ""): p.get("value", "") for p in stream.iter("Parameter")}
    return TwiML(
        says=says,
        connect_action=connect.get("action") if connect is not None else None,
        stream_url=stream.get("url") if stream is not None else None,
        parameters=params,
        hangup=root.find("Hangup") is not None,
    )


ACCOUNT_SID = "AC" + "0" * 32

# Every TwilioStream a test opens: tests/conftest.py fails the test if the server sent
# one of them something Twilio would refuse (31950/31951), whether or not the test looked.
CREATED_STREAMS: list[TwilioStream] = []

# What a server may send on a bidirectional stream (the Twilio note §1.4): exactly these
# keys, nothing more (no track, no sequenceNumber).
OUTBOUND_SHAPES: dict[str, dict[str, set[str] | None]] = {
    "media": {"event": None, "streamSid": None, "media": {"payload"}},
    "mark": {"event": None, "streamSid": None, "mark": {"name"}},
    "clear": {"event": None, "streamSid": None},
}


def parse_outbound(text: str) -> dict[str, Any] | str:
    """The message as a dict (media payload decoded to bytes), or why Twilio refuses it."""
    try:
        msg = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(msg, dict):
        return f"not a JSON object: {text[:80]!r}"
    shape = OUTBOUND_SHAPES.get(msg.get("event"))  # type: ignore[arg-type]
    if shape is None:
        return f"unknown event {msg.get('event')!r}"
    if set(msg) != set(shape):
        return f"{msg['event']} keys {sorted(msg)} are not {sorted(shape)}"
    for key, inner in shape.items():
        if inner is None:
            if not isinstance(msg[key], str):
                return f"{key} is not a string: {msg[key]!r}"
        elif not isinstance(msg[key], dict) or set(msg[key]) != inner:
            found = sorted(msg[key]) if isinstance(msg[key], dict) else msg[key]
            return f"{msg['event']}.{key} is {found!r}, not an object with keys {sorted(inner)}"
        elif not all(isinstance(value, str) for value in msg[key].values()):
            return f"{msg['event']}.{key} has a non-string value"
    if msg["event"] == "media":
        try:
            msg["media"]["payload"] = base64.b64decode(msg["media"]["payload"], validate=True)
        except ValueError as exc:
            return f"media.payload is not base64: {exc}"
    return msg


@dataclass
class PlayedAudio:
    """What the server sent, as Twilio's player saw it."""

    media_messages: int = 0
    media_bytes: int = 0
    payload_sizes: list[int] = field(default_factory=list)
    marks_sent: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)  # trio time of each clear
    media_bytes_since_clear: int = 0  # what arrived after the last clear (a new reply)
    first_media_time: float | None = None
    errors: list[str] = field(default_factory=list)


class TwilioStream:
    """One Media Streams connection, as Twilio would run it."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        *,
        call_sid: str,
        stream_sid: str,
        parameters: dict[str, str],
        first_timestamp: int = 52,
    ) -> None:
        self.ws = ws
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.parameters = parameters
        self.played = PlayedAudio()
        self.closed = trio.Event()
        self.close_code: int | None = None
        self._seq = 0
        self._chunk = 0
        self._timestamp = first_timestamp
        self._queue: deque[tuple[str, int]] = deque()  # ("audio", n bytes) / ("mark", name)
        self._queued_audio_bytes = 0
        self._send_lock = trio.Lock()
        self.on_clear = trio.Event()
        self.on_media = trio.Event()  # set at every media message (re-armed by wait_media)
        CREATED_STREAMS.append(self)

    # --- Twilio -> server ------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send_message(text)

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def send_connected(self) -> None:
        await self._send('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')

    async def send_start(self) -> None:
        await self._send(json.dumps({
            "event": "start",
            "sequenceNumber": self._next_seq(),
            "start": {
                "accountSid": ACCOUNT_SID,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": dict(self.parameters),
            },
            "streamSid": self.stream_sid,
        }))

    async def send_media(self, payload: bytes = SILENCE) -> None:
        self._chunk += 1
        message = json.dumps({
            "event": "media",
            "sequenceNumber": self._next_seq(),
            "media": {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str(self._timestamp),
                "payload": b64(payload),
            },
            "streamSid": self.stream_sid,
        })
        self._timestamp += 20
        await self._send(message)

    async def send_dtmf(self, digit: str) -> None:
        await self._send(json.dumps({
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "sequenceNumber": self._next_seq(),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }))

    async def send_raw(self, text: str | bytes) -> None:
        async with self._send_lock:
            await self.ws.send_message(text)

    async def send_stop(self) -> None:
        await self._send(json.dumps({
            "event": "stop",
            "sequenceNumber": self._next_seq(),
            "streamSid": self.stream_sid,
            "stop": {"accountSid": ACCOUNT_SID, "callSid": self.call_sid},
        }))

    async def stream_audio(self, seconds: float | None = None, payload: bytes = SILENCE) -> None:
        """Caller audio every 20 ms on an absolute schedule (no drift), until cancelled."""
        start = trio.current_time()
        n = 0
        while seconds is None or n * FRAME_SECONDS < seconds:
            if self.closed.is_set():
                return
            try:
                await self.send_media(payload)
            except trio_websocket.ConnectionClosed:
                return
            n += 1
            await trio.sleep_until(start + n * FRAME_SECONDS)

    async def wait_media(self, *, since_clear: int = 1) -> None:
        """Until the server has sent `since_clear` bytes of audio after the last clear (or
        since the stream began); ends early if the stream closes."""
        while self.played.media_bytes_since_clear < since_clear and not self.closed.is_set():
            self.on_media = trio.Event()
            with trio.move_on_after(0.5):  # also re-checks `closed`
                await self.on_media.wait()

    # --- server -> Twilio ---------------------------------------------------------------------

    async def _echo_mark(self, name: str) -> None:
        self.played.marks_echoed.append(name)
        message = json.dumps({
            "event": "mark",
            "sequenceNumber": self._next_seq(),
            "streamSid": self.stream_sid,
            "mark": {"name": name},
        })
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await self._send(message)

    async def _reader(self) -> None:
        try:
            while True:
                text = await self.ws.get_message()
                if isinstance(text, bytes):
                    self.played.errors.append("binary frame (Twilio warning 31950)")
                    continue
                msg = parse_outbound(text)
                if isinstance(msg, str):
                    self.played.errors.append(f"31951: {msg}")
                    continue
                if msg["streamSid"] != self.stream_sid:
                    self.played.errors.append(f"31951: wrong streamSid {msg['streamSid']!r}")
                    continue
                match msg:
                    case {"event": "media", "media": {"payload": payload}}:
                        if self.played.first_media_time is None:
                            self.played.first_media_time = trio.current_time()
                        self.played.media_messages += 1
                        self.played.media_bytes += len(payload)
                        self.played.media_bytes_since_clear += len(payload)
                        self.on_media.set()
                        self.played.payload_sizes.append(len(payload))
                        self._queue.append(("audio", len(payload)))
                        self._queued_audio_bytes += len(payload)
                    case {"event": "mark", "mark": {"name": name}}:
                        self.played.marks_sent.append(name)
                        if self._queued_audio_bytes == 0:
                            await self._echo_mark(name)
                        else:
                            self._queue.append(("mark", name))
                    case {"event": "clear"}:
                        self.played.clears.append(trio.current_time())
                        self.played.media_bytes_since_clear = 0
                        self.on_clear.set()
                        pending = [item for kind, item in self._queue if kind == "mark"]
                        self._queue.clear()
                        self._queued_audio_bytes = 0
                        for name in pending:
                            await self._echo_mark(str(name))
        except trio_websocket.ConnectionClosed as exc:
            self.close_code = exc.reason.code if exc.reason else None
        finally:
            self.closed.set()

    async def _player(self) -> None:
        """Consume queued audio at 8000 bytes/s; echo marks as playback passes them."""
        budget = 0.0
        last = trio.current_time()
        while not self.closed.is_set():
            await trio.sleep(FRAME_SECONDS)
            now = trio.current_time()
            budget += (now - last) * 8000
            last = now
            while self._queue:
                kind, item = self._queue[0]
                if kind == "mark":
                    self._queue.popleft()
                    await self._echo_mark(str(item))
                    continue
                size = int(item)
                if budget < size:
                    if budget > 0:
                        self._queue[0] = ("audio", size - int(budget))
                        self._queued_audio_bytes -= int(budget)
                    budget = 0
                    break
                budget -= size
                self._queued_audio_bytes -= size
                self._queue.popleft()
            if not self._queue:
                budget = 0.0


@dataclass
class CallResult:
    twiml: TwiML
    stream: TwilioStream | None = None
    after: TwiML | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def stream_target(server_url: str, stream_url: str) -> str:
    """The public stream URL from the TwiML, re-pointed at the server under test."""
    server = urlsplit(server_url)
    public = urlsplit(stream_url)
    scheme = "wss" if server.scheme == "https" else "ws"
    return f"{scheme}://{server.netloc}{public.path}"


@asynccontextmanager
async def open_twilio_stream(
    *,
    server_url: str,
    stream_url: str,
    auth_token: str | None,
    call_sid: str,
    parameters: dict[str, str],
    stream_sid: str | None = None,
    signature: str | None = None,
    max_message_size: int = 1 << 20,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[TwilioStream]:
    """Connect like Twilio (handshake signed over the TwiML's stream URL), then run the
    reader and the player until the block ends."""
    headers: list[tuple[bytes, bytes]] = []
    if signature is None and auth_token is not None:
        signature = sign(auth_token, stream_url, {})
    if signature is not None:
        headers.append((b"X-Twilio-Signature", signature.encode()))
    async with trio_websocket.open_websocket_url(
        stream_target(server_url, stream_url),
        ssl_context,
        extra_headers=headers,
        max_message_size=max_message_size,
        message_queue_size=64,
        connect_timeout=5,
        disconnect_timeout=2,
    ) as ws:
        stream = TwilioStream(
            ws,
            call_sid=call_sid,
            stream_sid=stream_sid or "MZ" + call_sid[2:].ljust(32, "0")[:32],
            parameters=parameters,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream._reader)
            nursery.start_soon(stream._player)
            yield stream
            nursery.cancel_scope.cancel()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def make_call_sid(n: int) -> str:
    return "CA" + f"{n:032x}"


def form(call_sid: str, caller: str, to: str = "+14155550100") -> dict[str, str]:
    """The fields Twilio posts to a voice webhook (a realistic subset)."""
    return {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": to,
        "Caller": caller,
        "Direction": "inbound",
        "From": caller,
        "To": to,
    }


def dump(obj: Any) -> str:
    return json.dumps(obj)


@asynccontextmanager
async def dial(
    client: httpx.AsyncClient,
    *,
    server_url: str,
    public_url: str,
    auth_token: str | None,
    call_sid: str,
    caller: str,
    audio: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    stream_server_url: str | None = None,
) -> AsyncIterator[TwilioStream]:
    """A whole incoming call as Twilio places it: signed `/voice`, then the media stream
    (`connected`, `start` with the TwiML's parameters, caller audio every 20 ms).

    The stream goes to `server_url` too, unless `stream_server_url` names another server
    (a load balancer in front of several instances may send it anywhere)."""
    twiml = await answer_call(
        client, server_url=server_url, public_url=public_url, auth_token=auth_token,
        call_sid=call_sid, caller=caller,
    )
    assert twiml.stream_url is not None
    async with open_twilio_stream(
        server_url=stream_server_url or server_url,
        stream_url=twiml.stream_url,
        auth_token=auth_token,
        call_sid=call_sid,
        parameters=twiml.parameters,
        ssl_context=ssl_context,
    ) as stream:
        await stream.send_connected()
        await stream.send_start()
        async with trio.open_nursery() as nursery:
            if audio:
                nursery.start_soon(stream.stream_audio)
            yield stream
            nursery.cancel_scope.cancel()


async def answer_call(
    client: httpx.AsyncClient,
    *,
    server_url: str,
    public_url: str,
    auth_token: str | None,
    call_sid: str,
    caller: str,
) -> TwiML:
    """Twilio's first step of a call: the signed `/voice` webhook, answered with TwiML."""
    response = await post_webhook(
        client,
        server_url=server_url,
        public_url=public_url,
        path="/voice",
        params=form(call_sid, caller),
        auth_token=auth_token,
    )
    assert response.status_code == 200, response.text
    return parse_twiml(response.text)


async def hang_up_after(
    client: httpx.AsyncClient,
    *,
    server_url: str,
    public_url: str,
    auth_token: str | None,
    call_sid: str,
    caller: str,
) -> TwiML:
    """What Twilio does once the stream is over: POST the `<Connect action>` URL."""
    response = await post_webhook(
        client,
        server_url=server_url,
        public_url=public_url,
        path="/voice/after",
        params=form(call_sid, caller),
        auth_token=auth_token,
    )
    assert response.status_code == 200, response.text
    return parse_twiml(response.text)
