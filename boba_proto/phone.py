"""`/phone/ws`, the staff softphone's wire protocol (CONTRACT §9), for both of its ends.

It is Twilio's Media Streams message set (`connected`, `start`, `media`, `dtmf`, `mark`,
`stop` from the phone; `media`, `mark`, `clear` to it) plus three events of its own:

* from the phone, `{"event": "text", "text": "…"}`: words typed instead of said (the
  core's `CallerText` input, sent to the agent as `InjectUserMessage`);
* to the phone, `{"event": "transcript", "role": "user"|"assistant", "content": "…"}`
  for every `ConversationText`, and `{"event": "function", "name": …, "arguments": …,
  "result": …}` for every answered function call (`arguments` and `result` are the JSON
  strings exchanged with the agent).

The server reads frames with `decode_from_phone` and writes the extra events with
`observation_frame`; `boba call` (the terminal phone) writes with `encode_text` and
Twilio's own encoder, and reads with `decode_to_phone`. Pure: no I/O, like the rest of
the core.
"""

from __future__ import annotations

from typing import Final

import msgspec

from boba_proto import twilio
from boba_proto._wire import as_bytes, explain
from boba_proto.call import Action, CallerText, CallEvent, FunctionCalled, Transcript
from boba_proto.errors import RemoteProtocolError

__all__ = [
    "MAX_TEXT_CHARS",
    "PhoneFunction",
    "PhoneText",
    "PhoneTranscript",
    "ToPhone",
    "UnknownToPhone",
    "decode_from_phone",
    "decode_to_phone",
    "encode_text",
    "observation_frame",
]

MAX_TEXT_CHARS: Final = 1000
"""Longer typed text is refused (a malformed frame): no caller types a novel."""


class PhoneText(msgspec.Struct, frozen=True, tag_field="event", tag="text"):
    """`{"event": "text", "text": "…"}`: what the caller typed."""

    text: str


class PhoneTranscript(msgspec.Struct, frozen=True, tag_field="event", tag="transcript"):
    """What the caller or the agent said (the agent's `ConversationText`)."""

    role: str
    content: str


class PhoneFunction(msgspec.Struct, frozen=True, tag_field="event", tag="function"):
    """A function call the core answered: its name, arguments and result (JSON strings)."""

    name: str
    arguments: str
    result: str


class UnknownToPhone(msgspec.Struct, frozen=True, kw_only=True):
    """An event a phone does not know (a newer server may add some): skip it."""

    event: str


ToPhone = (
    twilio.SendMedia | twilio.SendMark | twilio.SendClear | PhoneTranscript | PhoneFunction
    | UnknownToPhone
)
"""Every frame the server sends a phone, as `decode_to_phone` returns it."""


class _EventProbe(msgspec.Struct):
    event: str = ""


_PROBE: Final = msgspec.json.Decoder(_EventProbe)
_TEXT: Final = msgspec.json.Decoder(PhoneText)
_OBSERVATIONS: Final = msgspec.json.Decoder(PhoneTranscript | PhoneFunction)
_ENCODER: Final = msgspec.json.Encoder()
_TWILIO_TO_PHONE: Final = frozenset({"media", "mark", "clear"})


def _probe(data: bytes) -> str:
    try:
        return _PROBE.decode(data).event
    except (msgspec.DecodeError, RecursionError):
        return ""


# --- the server's side --------------------------------------------------------------------


def decode_from_phone(frame: str | bytes, *, call_sid: str) -> CallEvent:
    """A phone's frame as an input of the core: Twilio's events, plus `text`.

    The `start` event gets the server's `call_sid` (a softphone call never borrows a
    Twilio call's identity). Raises `RemoteProtocolError` for a malformed frame (the
    runtime skips it and the core counts it, like Twilio's).
    """
    data = as_bytes(frame, "the phone")
    if _probe(data) == "text":
        try:
            typed = _TEXT.decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise RemoteProtocolError(
                f"the phone sent an invalid text event: {explain(exc)}"
            ) from None
        if len(typed.text) > MAX_TEXT_CHARS:
            raise RemoteProtocolError(f"typed text over {MAX_TEXT_CHARS} characters")
        return CallerText(text=typed.text)
    event = twilio.decode(data)
    if isinstance(event, twilio.Start):
        info = msgspec.structs.replace(event.start, call_sid=call_sid)
        event = msgspec.structs.replace(event, start=info)
    return event


def observation_frame(action: Action) -> str | None:
    """The extra event the phone gets for an observation of the core, if any."""
    if isinstance(action, Transcript):
        return _ENCODER.encode(PhoneTranscript(role=action.role, content=action.content)).decode()
    if isinstance(action, FunctionCalled):
        frame = PhoneFunction(name=action.name, arguments=action.arguments, result=action.result)
        return _ENCODER.encode(frame).decode()
    return None


# --- the phone's side (`boba call`) -------------------------------------------------------


def encode_text(text: str) -> str:
    """The `text` event: words the caller typed."""
    return _ENCODER.encode(PhoneText(text=text)).decode()


def decode_to_phone(frame: str | bytes) -> ToPhone:
    """A frame the server sent the phone. Raises `RemoteProtocolError` (the server's
    fault) for malformed JSON or a known event with bad fields; an unknown event name
    is `UnknownToPhone`."""
    data = as_bytes(frame, "the server")
    event = _probe(data)
    if event in _TWILIO_TO_PHONE:
        return twilio.decode_outbound(data)
    if event in {"transcript", "function"}:
        try:
            return _OBSERVATIONS.decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise RemoteProtocolError(
                f"the server sent an invalid {event!r} event: {explain(exc)}"
            ) from None
    if not event:
        raise RemoteProtocolError("the server sent a frame that is not a phone event")
    return UnknownToPhone(event=event)
