"""The staff softphone (CONTRACT §9): `GET /phone` (a page that acts as a phone) and
`WS /phone/ws`, which runs the very same `run_call` as Twilio's `/twilio`.

`/phone/ws` speaks Twilio's Media Streams message set (`connected`, `start`, `media`,
`dtmf`, `mark`, `stop` from the phone; `media`, `mark`, `clear` to it) plus:

* from the phone: `{"event": "text", "text": "…"}` — words typed instead of said; they
  reach the agent as `InjectUserMessage` (the core's `CallerText` input);
* to the phone: `{"event": "transcript", "role": "user"|"assistant", "content": "…"}` for
  every `ConversationText`, and `{"event": "function", "name": …, "arguments": …,
  "result": …}` for every answered function call (`arguments` and `result` are the JSON
  strings exchanged with the agent). `boba call` prints these.

Staff only: the handshake must carry the staff password (Basic or Bearer) or a valid
session cookie, else 401 before the socket is accepted; a browser's cross-site handshake
(foreign `Origin`) is refused with 403. The call's `callSid` is made by the server
(`PH…`), so a softphone call never borrows a Twilio call's identity; the `caller`
custom parameter, when given, is the number used for "is my order ready".
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
import trio
from quart import Response
from quart_trio import QuartTrio

from boba_proto import twilio as tw
from boba_proto.call import Action, CallerText, CallEvent, FunctionCalled, Transcript
from boba_proto.errors import RemoteProtocolError
from boba_runtime.call_runner import PhoneClosed, build_call_deps, run_call
from boba_web.api import has_staff_credentials, request_is_staff
from boba_web.compat import ClientDisconnectedError, current_websocket
from boba_web.errors import json_error
from boba_web.pages import render_page
from boba_web.twilio_routes import QuartPhone, agent_connector

__all__ = ["PhoneText", "decode_phone_frame", "register_phone_routes"]

log = logging.getLogger(__name__)

OBSERVATION_BUFFER: Final = 256
"""Transcript and function events waiting for the socket; more means the page is stuck."""
MAX_TEXT_CHARS: Final = 1000


class PhoneText(msgspec.Struct, frozen=True, tag_field="event", tag="text"):
    """`{"event": "text", "text": "…"}`: what the caller typed."""

    text: str


class _Transcript(msgspec.Struct, frozen=True, tag_field="event", tag="transcript"):
    role: str
    content: str


class _Function(msgspec.Struct, frozen=True, tag_field="event", tag="function"):
    name: str
    arguments: str
    result: str


class _EventProbe(msgspec.Struct):
    event: str = ""


_PROBE: Final = msgspec.json.Decoder(_EventProbe)
_TEXT: Final = msgspec.json.Decoder(PhoneText)
_ENCODER: Final = msgspec.json.Encoder()


def decode_phone_frame(frame: str | bytes, *, call_sid: str) -> CallEvent:
    """A `/phone/ws` frame as an input of the core: Twilio's events, plus `text`.

    The `start` event gets the server's `call_sid`. Raises `RemoteProtocolError` for a
    malformed frame (counted and skipped by `run_call`, like Twilio's).
    """
    try:
        probe = _PROBE.decode(frame)
    except (msgspec.DecodeError, RecursionError):
        probe = _EventProbe()
    if probe.event == "text":
        try:
            typed = _TEXT.decode(frame)
        except msgspec.ValidationError as exc:
            raise RemoteProtocolError(f"the phone sent an invalid text event: {exc}") from None
        if len(typed.text) > MAX_TEXT_CHARS:
            raise RemoteProtocolError(f"typed text over {MAX_TEXT_CHARS} characters")
        return CallerText(text=typed.text)
    event = tw.decode(frame)
    if isinstance(event, tw.Start):
        info = msgspec.structs.replace(event.start, call_sid=call_sid)
        event = msgspec.structs.replace(event, start=info)
    return event


def observation_frame(action: Action) -> str | None:
    """The extra event the phone gets for an observation of the core, if any."""
    if isinstance(action, Transcript):
        return _ENCODER.encode(_Transcript(role=action.role, content=action.content)).decode()
    if isinstance(action, FunctionCalled):
        frame = _Function(name=action.name, arguments=action.arguments, result=action.result)
        return _ENCODER.encode(frame).decode()
    return None


class SoftPhone:
    """`PhoneSide` for `/phone/ws`: one writer task serves both the call's frames and the
    extra transcript/function events, so the socket never has two senders at once."""

    def __init__(self, inner: QuartPhone) -> None:
        self._inner = inner
        self._send, self._queue = trio.open_memory_channel[str](OBSERVATION_BUFFER)
        self._drained = trio.Event()
        self.dropped = 0

    async def receive(self) -> str | bytes:
        return await self._inner.receive()

    async def send(self, text: str) -> None:
        try:
            await self._send.send(text)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise PhoneClosed from None

    def observe(self, action: Action) -> None:
        frame = observation_frame(action)
        if frame is None:
            return
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            self.dropped += 1  # the page is not reading; the call itself goes on
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def close(self, code: int = 1000, reason: str = "") -> None:
        # Let the writer flush what is queued (the goodbye transcript), then close.
        self._send.close()
        with trio.move_on_after(2.0):
            await self._drained.wait()
        await self._inner.close(code, reason)

    async def run_writer(self) -> None:
        try:
            async for text in self._queue:
                await self._inner.send(text)
        except PhoneClosed:
            pass
        finally:
            self._queue.close()  # later sends fail (PhoneClosed) instead of blocking
            self._drained.set()


def _origin_ok(origin: str | None, host: str | None, public_url: str) -> bool:
    """A handshake from a page of another site (cross-site WebSocket hijacking) is refused."""
    if not origin:
        return True  # not a browser (`boba call`, tests)
    parts = urlsplit(origin)
    allowed = {urlsplit(public_url).netloc}
    if host:
        allowed.add(host)
    return parts.netloc in allowed


def register_phone_routes(app: QuartTrio, services: Any) -> None:
    settings = services.settings
    call_deps = build_call_deps(services)

    @app.get("/phone")
    async def phone_page() -> Response:
        if not request_is_staff(services):
            return await render_page("login.html")
        return await render_page("phone.html")

    @app.websocket("/phone/ws")
    async def phone_socket() -> Response | None:
        ws = current_websocket()
        if not has_staff_credentials(services, ws.headers, ws.cookies):
            return json_error(401, "Staff login required.", WWW_Authenticate="Bearer")
        if not _origin_ok(ws.headers.get("Origin"), ws.headers.get("Host"), settings.public_url):
            return json_error(403, "Open the phone from this site's own page.")
        await ws.accept()
        call_sid = f"PH{uuid.uuid4().hex}"
        phone = SoftPhone(QuartPhone(ws))
        connect = agent_connector(settings, ws.scope, services.menu)

        def decode(frame: str | bytes) -> CallEvent:
            return decode_phone_frame(frame, call_sid=call_sid)

        with contextlib.suppress(ClientDisconnectedError):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(phone.run_writer)
                report = await run_call(
                    phone, call_deps, connect, observe=phone.observe, decode_phone=decode
                )
                log.info(
                    "softphone call %s ended: %s, %d order(s)",
                    call_sid,
                    report.end_reason.value if report.end_reason else "refused",
                    len(report.orders),
                )
        return None
