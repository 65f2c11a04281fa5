"""Twilio Media Streams wire types (bidirectional `<Connect><Stream>`), decoded with msgspec.

Inbound events are frozen Structs in one tagged union on `"event"`; wire names are camelCase
and Twilio's stringly counters (`sequenceNumber`, `chunk`, `timestamp`) stay strings, with
integer views as properties. `media.payload` is typed `bytes`, so msgspec does the base64.

Parsing is deliberately lenient about formats (the real 2020 capture has a UUID
`streamSid`, not `MZ…`) and strict about shape: a known event with a missing or mistyped
field, bad base64 or malformed JSON raises `RemoteProtocolError` naming the field. An
event name we do not know decodes to `UnknownTwilioEvent` so the call can count and skip it.

Outbound messages (`media`, `mark`, `clear`) have their own flat classes and `encode()`
writes exactly the documented objects, with no extra keys (Twilio error 31951).
"""

from __future__ import annotations

from typing import Final, get_args

import msgspec

from boba_proto._wire import as_bytes, explain
from boba_proto.errors import RemoteProtocolError

__all__ = [
    "Connected",
    "Dtmf",
    "DtmfInfo",
    "Mark",
    "MarkInfo",
    "Media",
    "MediaFormat",
    "MediaInfo",
    "SendClear",
    "SendMark",
    "SendMedia",
    "Start",
    "StartInfo",
    "Stop",
    "StopInfo",
    "TwilioEvent",
    "TwilioOutbound",
    "UnknownTwilioEvent",
    "decode",
    "decode_outbound",
    "encode",
    "encode_event",
]

# ---------------------------------------------------------------------------------------
# Inbound: Twilio -> us
# ---------------------------------------------------------------------------------------


class _Wire(msgspec.Struct, rename="camel", frozen=True):
    """Nested objects of Twilio messages: camelCase on the wire, immutable here."""


class MediaFormat(_Wire, kw_only=True, frozen=True):
    """`start.mediaFormat`; today always `audio/x-mulaw`, 8000 Hz, 1 channel."""

    encoding: str
    sample_rate: int
    channels: int


class StartInfo(_Wire, kw_only=True, frozen=True):
    """`start.start`: who owns the stream and what audio to expect."""

    stream_sid: str
    call_sid: str
    account_sid: str = ""
    tracks: list[str] = msgspec.field(default_factory=lambda: ["inbound"])
    media_format: MediaFormat
    custom_parameters: dict[str, str] = msgspec.field(default_factory=dict)


def _require_integer(value: str, wire_name: str) -> None:
    """Counters arrive as decimal strings; anything else is Twilio's (or a fake's) error."""
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"`{wire_name}` must be a decimal integer string, got {value!r}")


class MediaInfo(_Wire, kw_only=True, frozen=True):
    """`media.media`: one chunk of caller audio (raw μ-law, no header, 160 bytes = 20 ms)."""

    track: str = "inbound"
    chunk: str
    timestamp: str
    payload: bytes

    def __post_init__(self) -> None:
        _require_integer(self.chunk, "chunk")
        _require_integer(self.timestamp, "timestamp")

    @property
    def chunk_number(self) -> int:
        """Per-stream media counter (1 for the first media message); gaps mean lost audio."""
        return int(self.chunk)

    @property
    def timestamp_ms(self) -> int:
        """Presentation time in ms since the stream started (does not start at 0)."""
        return int(self.timestamp)


class DtmfInfo(_Wire, kw_only=True, frozen=True):
    """`dtmf.dtmf`: one key the caller pressed."""

    track: str = "inbound_track"
    digit: str


class MarkInfo(_Wire, kw_only=True, frozen=True):
    """`mark.mark`: the echo of a mark we sent, once the audio before it played (or was cleared)."""

    name: str


class StopInfo(_Wire, kw_only=True, frozen=True):
    """`stop.stop`: no reason, only the owners; optional, so a sparse stop still ends the call."""

    account_sid: str = ""
    call_sid: str = ""


class _Inbound(msgspec.Struct, tag_field="event", rename="camel", frozen=True):
    """Base of every message Twilio sends; the class's `tag` is the `event` value."""


class Connected(_Inbound, tag="connected", kw_only=True, frozen=True):
    """First message on the socket; it has no `streamSid` and no `sequenceNumber`."""

    protocol: str = ""
    version: str = ""


class Start(_Inbound, tag="start", kw_only=True, frozen=True):
    """Sent once after `connected`; we can send nothing before its `streamSid` is known."""

    stream_sid: str
    sequence_number: str
    start: StartInfo


class Media(_Inbound, tag="media", kw_only=True, frozen=True):
    """Caller audio, about every 20 ms for the whole call (silence included)."""

    stream_sid: str
    sequence_number: str
    media: MediaInfo


class Dtmf(_Inbound, tag="dtmf", kw_only=True, frozen=True):
    """A key press (bidirectional streams only)."""

    stream_sid: str
    sequence_number: str
    dtmf: DtmfInfo


class Mark(_Inbound, tag="mark", kw_only=True, frozen=True):
    """A mark echo: the audio queued before that mark has finished playing or was cleared."""

    stream_sid: str
    sequence_number: str
    mark: MarkInfo


class Stop(_Inbound, tag="stop", kw_only=True, frozen=True):
    """The stream stopped or the call ended; the socket closes next."""

    stream_sid: str
    sequence_number: str = ""
    stop: StopInfo = msgspec.field(default_factory=StopInfo)


TwilioEvent = Connected | Start | Media | Dtmf | Mark | Stop


class UnknownTwilioEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event name this code does not know (Twilio may add some): count it and skip it."""

    event: str
    raw: bytes


# ---------------------------------------------------------------------------------------
# Outbound: us -> Twilio
# ---------------------------------------------------------------------------------------


class SendMedia(msgspec.Struct, frozen=True, kw_only=True):
    """Agent audio for Twilio to play: raw μ-law 8 kHz mono, no header."""

    stream_sid: str
    payload: bytes


class SendMark(msgspec.Struct, frozen=True, kw_only=True):
    """Ask Twilio to echo `name` once the audio sent before it has played."""

    stream_sid: str
    name: str


class SendClear(msgspec.Struct, frozen=True, kw_only=True):
    """Drop all audio Twilio has buffered (barge-in); pending marks echo at once."""

    stream_sid: str


TwilioOutbound = SendMedia | SendMark | SendClear


class _OutBase(msgspec.Struct, tag_field="event", rename="camel", frozen=True):
    """The exact outbound wire objects; kept private so callers use the flat classes above."""


class _OutMediaBody(_Wire, forbid_unknown_fields=True, kw_only=True, frozen=True):
    payload: bytes


class _OutMarkBody(_Wire, forbid_unknown_fields=True, kw_only=True, frozen=True):
    name: str


class _OutMedia(_OutBase, tag="media", forbid_unknown_fields=True, kw_only=True, frozen=True):
    stream_sid: str
    media: _OutMediaBody


class _OutMark(_OutBase, tag="mark", forbid_unknown_fields=True, kw_only=True, frozen=True):
    stream_sid: str
    mark: _OutMarkBody


class _OutClear(_OutBase, tag="clear", forbid_unknown_fields=True, kw_only=True, frozen=True):
    stream_sid: str


# ---------------------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------------------


class _Envelope(msgspec.Struct):
    """Only the tag; every other field is skipped. Used after a failed decode to tell an
    unknown event (skip it) from a known event with a bad body (a protocol error)."""

    event: str


_DECODER: Final[msgspec.json.Decoder[TwilioEvent]] = msgspec.json.Decoder(TwilioEvent)
_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_OUT_DECODER: Final = msgspec.json.Decoder(_OutMedia | _OutMark | _OutClear)
_ENCODER: Final = msgspec.json.Encoder()
_KNOWN_EVENTS: Final = frozenset(str(cls.__struct_config__.tag) for cls in get_args(TwilioEvent))

def decode(frame: str | bytes) -> TwilioEvent | UnknownTwilioEvent:
    """Parse one Media Streams text frame.

    Returns a typed event, or `UnknownTwilioEvent` for an event name we don't know. Raises
    `RemoteProtocolError` (Twilio's fault) for malformed JSON, a non-object, a missing or
    non-string `event`, or a known event with a missing/mistyped field or bad base64; the
    message names the field as a JSON path.
    """
    data = as_bytes(frame, "Twilio")
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        try:
            event = _ENVELOPE.decode(data).event
        except (msgspec.DecodeError, RecursionError):
            raise RemoteProtocolError(f"Twilio sent an invalid message: {explain(exc)}") from exc
        if event in _KNOWN_EVENTS:
            raise RemoteProtocolError(
                f"Twilio sent an invalid {event!r} event: {explain(exc)}"
            ) from exc
        return UnknownTwilioEvent(event=event, raw=data)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"Twilio sent malformed JSON: {exc}") from exc
    except RecursionError as exc:  # msgspec's depth guard, also hit while skipping fields
        raise RemoteProtocolError(f"Twilio sent JSON nested too deeply: {exc}") from exc


def encode(msg: TwilioOutbound) -> str:
    """One outbound text frame, exactly as Twilio documents it (no extra keys)."""
    wire: _OutMedia | _OutMark | _OutClear
    match msg:
        case SendMedia(stream_sid=sid, payload=payload):
            wire = _OutMedia(stream_sid=sid, media=_OutMediaBody(payload=payload))
        case SendMark(stream_sid=sid, name=name):
            wire = _OutMark(stream_sid=sid, mark=_OutMarkBody(name=name))
        case SendClear(stream_sid=sid):
            wire = _OutClear(stream_sid=sid)
    return _ENCODER.encode(wire).decode("utf-8")


def decode_outbound(frame: str | bytes) -> TwilioOutbound:
    """Parse a frame *we* send to Twilio; for fakes of Twilio and recordings.

    Strict, like Twilio's 31951: unknown keys or events raise `RemoteProtocolError`.
    """
    data = as_bytes(frame, "the Twilio client")
    try:
        wire = _OUT_DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise RemoteProtocolError(f"invalid outbound Twilio message: {explain(exc)}") from exc
    match wire:
        case _OutMedia(stream_sid=sid, media=_OutMediaBody(payload=payload)):
            return SendMedia(stream_sid=sid, payload=payload)
        case _OutMark(stream_sid=sid, mark=_OutMarkBody(name=name)):
            return SendMark(stream_sid=sid, name=name)
        case _OutClear(stream_sid=sid):
            return SendClear(stream_sid=sid)
    raise AssertionError(f"unreachable: {wire!r}")  # pragma: no cover


def encode_event(event: TwilioEvent) -> str:
    """An inbound event as Twilio would send it; for fakes of Twilio and recordings."""
    return _ENCODER.encode(event).decode("utf-8")
