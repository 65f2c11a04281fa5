"""Recorded calls (CONTRACT §10): the `boba-session/1` JSON-lines format, and replaying one.

A file is a header line and then one line per input to the core or output from it, each
with `t`, its offset in seconds from the start of the call:

    {"format": "boba-session/1", "started_at": "2026-11-25T09:30:00Z", "profile": "linear16",
     "settings": {"agent_settings": {...Settings...}, "menu": {...}, "max_call_seconds": 600,
                  "caller": "", "call_sid": "", "digest_audio": true}}
    {"t": 0.0, "in": {"type": "twilio", "frame": {"event": "start", ...}}}
    {"t": 0.0, "out": {"type": "start_timer", "name": "tick", "seconds": 1.0}}
    {"t": 0.21, "in": {"type": "agent", "frame": {"type": "SettingsApplied"}}}
    {"t": 0.5, "in": {"type": "agent_audio", "data": "<base64>"}}
    {"t": 0.5, "out": {"type": "send_to_twilio", "kind": "media", "bytes": 800, "sha256": "..."}}

Inputs are stored in full (Twilio and agent frames as the peer's JSON, agent audio as
base64, timer firings, effect results), because replay feeds them to the core. Outputs are
what the core returned for the input just above them, in order, as `call.Action`s in JSON;
with `digest_audio` the audio ones keep only their length and SHA-256 (`bytes`, `sha256`),
which keeps files small and still pins every byte. The header holds everything needed to
rebuild the `CallConfig` (the agent `Settings`, the parsed menu), so a file replays with
nothing else.

Everything here is pure: lines in, values out. `Recorder` makes the lines for the runtime;
`replay_lines` runs a recorded call through a fresh `CallSession` and reports the first
difference (for `boba replay` and the golden tests).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from boba_proto import agent, model, twilio
from boba_proto.call import (
    PHONE_SILENCE_SECONDS,
    Action,
    CallConfig,
    CallEvent,
    CallSession,
    RuntimeEvent,
    SendAgentAudio,
    SendToTwilio,
    TwilioFrameKind,
)
from boba_proto.errors import ProtocolError, RemoteProtocolError
from boba_proto.menu import Menu

__all__ = [
    "FORMAT",
    "REDACTED",
    "Header",
    "InputLine",
    "OutputLine",
    "Recorder",
    "ReplayReport",
    "SessionSettings",
    "comparable_output",
    "decode_line",
    "encode_header",
    "encode_input",
    "encode_output",
    "output_record",
    "redact_secrets",
    "replay_lines",
]

FORMAT: Final = "boba-session/1"


class SessionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The header's `settings`: a `CallConfig` as data, plus how outputs were stored."""

    agent_settings: agent.AgentSettings
    menu: Menu
    max_call_seconds: float
    caller: str = ""
    call_sid: str = ""
    phone_silence_seconds: float | None = PHONE_SILENCE_SECONDS
    sms_countries: tuple[str, ...] = ()
    digest_audio: bool = True
    welcome_timeout_seconds: float = 0.0  # absent from older files: they did not wait
    transfer_enabled: bool = False


class Header(msgspec.Struct, frozen=True, kw_only=True):
    format: str
    started_at: str
    profile: agent.AudioProfile
    settings: SessionSettings

    def call_config(self) -> CallConfig:
        s = self.settings
        return CallConfig(
            profile=self.profile,
            agent_settings=s.agent_settings,
            menu=s.menu,
            max_call_seconds=s.max_call_seconds,
            caller=s.caller,
            call_sid=s.call_sid,
            welcome_timeout_seconds=s.welcome_timeout_seconds,
            phone_silence_seconds=s.phone_silence_seconds,
            sms_countries=s.sms_countries,
            transfer_enabled=s.transfer_enabled,
        )


class InputLine(msgspec.Struct, frozen=True, kw_only=True):
    lineno: int
    t: float
    event: CallEvent


class OutputLine(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded output in its stored JSON form (full or digested)."""

    lineno: int
    t: float
    record: dict[str, Any]


# --------------------------------------------------------------------------- wire shapes


class _TwilioFrame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="twilio"):
    frame: msgspec.Raw


class _AgentFrame(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="agent"):
    frame: msgspec.Raw


_InputRecord = _TwilioFrame | _AgentFrame | RuntimeEvent | model.EffectResult
"""Peers' frames wrapped; every runtime input and effect result as itself, so a new one
is recorded and replayed without a change here."""


class _Probe(msgspec.Struct, frozen=True, rename={"in_": "in"}):
    """What kind of line this is; the parts are decoded in a second step."""

    format: str | None = None
    t: float | None = None
    in_: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty when absent
    out: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


_ENCODER: Final = msgspec.json.Encoder()
_PROBE: Final = msgspec.json.Decoder(_Probe)
_HEADER: Final = msgspec.json.Decoder(Header)
_INPUT: Final = msgspec.json.Decoder(_InputRecord)
_OUTPUT: Final = msgspec.json.Decoder(dict[str, Any])
_OUTPUT_TYPES: Final = frozenset(
    str(cls.__struct_config__.tag)
    for cls in Action.__subclasses__()
)


# --------------------------------------------------------------------------- encoding


def encode_header(config: CallConfig, *, started_at: str, digest_audio: bool = True) -> str:
    """The first line of a recording (no trailing newline)."""
    header = Header(
        format=FORMAT,
        started_at=started_at,
        profile=config.profile,
        settings=SessionSettings(
            agent_settings=config.agent_settings,
            menu=config.menu,
            max_call_seconds=float(config.max_call_seconds),
            caller=config.caller,
            call_sid=config.call_sid,
            phone_silence_seconds=config.phone_silence_seconds,
            sms_countries=config.sms_countries,
            digest_audio=digest_audio,
            welcome_timeout_seconds=config.welcome_timeout_seconds,
            transfer_enabled=config.transfer_enabled,
        ),
    )
    return _ENCODER.encode(header).decode("utf-8")


def _compact(raw: bytes) -> msgspec.Raw:
    """A peer's frame re-encoded on one line (the original may contain newlines)."""
    return msgspec.Raw(_ENCODER.encode(msgspec.json.decode(raw)))


REDACTED: Final = "[redacted]"
"""What a recording keeps of the stream token: it authorises a call, and replay needs none."""


def redact_secrets(event: CallEvent) -> CallEvent:
    """The event as it may be written down: a `start`'s `token` parameter replaced."""
    if isinstance(event, twilio.Start) and "token" in event.start.custom_parameters:
        params = {**event.start.custom_parameters, "token": REDACTED}
        info = msgspec.structs.replace(event.start, custom_parameters=params)
        return msgspec.structs.replace(event, start=info)
    return event


def _input_record(event: CallEvent) -> object:
    event = redact_secrets(event)
    module = type(event).__module__
    if isinstance(event, twilio.UnknownTwilioEvent):
        return _TwilioFrame(frame=_compact(event.raw))
    if isinstance(event, agent.UnknownAgentMessage):
        return _AgentFrame(frame=_compact(event.raw))
    if module == twilio.__name__:
        return _TwilioFrame(frame=msgspec.Raw(_ENCODER.encode(event)))
    if module == agent.__name__:
        return _AgentFrame(frame=msgspec.Raw(_ENCODER.encode(event)))
    return event


def _line(t: float, key: str, record: object) -> str:
    """One recording line, `{"t": ..., "in"|"out": ...}`, without its newline."""
    return _ENCODER.encode({"t": t, key: record}).decode("utf-8")


def encode_input(t: float, event: CallEvent) -> str:
    """One input line (no trailing newline); everything in full, audio as base64."""
    return _line(round(t, 6), "in", _input_record(event))


def _digest(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def output_record(action: Action, *, digest_audio: bool = True) -> dict[str, Any]:
    """An action as the JSON object stored in an output line."""
    if digest_audio:
        if isinstance(action, SendAgentAudio):
            return {"type": "send_agent_audio", **_digest(action.data)}
        if isinstance(action, SendToTwilio) and action.kind is TwilioFrameKind.MEDIA:
            media = twilio.decode_outbound(action.text)
            assert isinstance(media, twilio.SendMedia)
            return {"type": "send_to_twilio", "kind": "media", **_digest(media.payload)}
    record: dict[str, Any] = _OUTPUT.decode(_ENCODER.encode(action))  # plain JSON values
    return record


def encode_output(t: float, action: Action, *, digest_audio: bool = True) -> str:
    """One output line (no trailing newline)."""
    return _line(round(t, 6), "out", output_record(action, digest_audio=digest_audio))


def comparable_output(record: dict[str, Any]) -> dict[str, Any]:
    """A stored output in digest form, so full and digested recordings compare alike."""
    kind = record.get("type")
    if kind == "send_agent_audio" and "data" in record:
        data = msgspec.convert(record["data"], bytes)
        return {"type": "send_agent_audio", **_digest(data)}
    if kind == "send_to_twilio" and record.get("kind") == "media" and "text" in record:
        media = twilio.decode_outbound(record["text"])
        if isinstance(media, twilio.SendMedia):
            return {"type": "send_to_twilio", "kind": "media", **_digest(media.payload)}
    return record


class Recorder:
    """Turns what the runtime saw and did into recording lines (pure; no file, no clock).

    The runtime writes `header()` first, then for each `handle` call `input(t, event)`
    followed by `outputs(t, actions)`, with `t` measured from the start of the call.
    """

    def __init__(self, config: CallConfig, *, started_at: str, digest_audio: bool = True) -> None:
        self.config = config
        self.started_at = started_at
        self.digest_audio = digest_audio

    def header(self) -> str:
        return encode_header(
            self.config, started_at=self.started_at, digest_audio=self.digest_audio
        )

    def input(self, t: float, event: CallEvent) -> str:
        return encode_input(t, event)

    def outputs(self, t: float, actions: list[Action]) -> list[str]:
        return [encode_output(t, a, digest_audio=self.digest_audio) for a in actions]


# --------------------------------------------------------------------------- decoding


def _fail(lineno: int, message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"line {lineno}: {message}")


def _decode_input(raw: bytes, lineno: int) -> CallEvent:
    try:
        record = _INPUT.decode(raw)
    except msgspec.DecodeError as exc:
        raise _fail(lineno, f"bad input: {exc}") from exc
    event: CallEvent
    try:
        if isinstance(record, _TwilioFrame):
            event = twilio.decode(bytes(record.frame))
        elif isinstance(record, _AgentFrame):
            event = agent.decode(bytes(record.frame))
        else:
            event = record
    except RemoteProtocolError as exc:
        raise _fail(lineno, exc.message) from exc
    return event


def decode_line(line: str | bytes, lineno: int) -> Header | InputLine | OutputLine:
    """Parse one line of a recording; `RemoteProtocolError` names the line if it is bad."""
    data = line.encode("utf-8") if isinstance(line, str) else line
    try:
        probe = _PROBE.decode(data)
    except msgspec.DecodeError as exc:
        raise _fail(lineno, f"not a JSON object of a recording: {exc}") from exc
    if probe.format is not None:
        if probe.format != FORMAT:
            raise _fail(lineno, f"unsupported format {probe.format!r} (expected {FORMAT!r})")
        try:
            return _HEADER.decode(data)
        except msgspec.DecodeError as exc:
            raise _fail(lineno, f"bad header: {exc}") from exc
    if probe.t is None:
        raise _fail(lineno, 'a line needs "t" (or is the header, with "format")')
    has_in, has_out = len(probe.in_) > 0, len(probe.out) > 0
    if has_in == has_out:
        raise _fail(lineno, 'a line needs exactly one of "in" and "out"')
    if has_in:
        return InputLine(lineno=lineno, t=probe.t, event=_decode_input(bytes(probe.in_), lineno))
    try:
        record = _OUTPUT.decode(bytes(probe.out))
    except msgspec.DecodeError as exc:
        raise _fail(lineno, f"bad output: {exc}") from exc
    if record.get("type") not in _OUTPUT_TYPES:
        raise _fail(lineno, f"unknown output type {record.get('type')!r}")
    try:
        comparable_output(record)
    except (msgspec.ValidationError, ProtocolError) as exc:
        raise _fail(lineno, f"bad output: {exc}") from exc
    return OutputLine(lineno=lineno, t=probe.t, record=record)


# --------------------------------------------------------------------------- replay


class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one replay found.

    `difference` is the first mismatch ("line N: expected ... got ...") or None. `lines` is
    the recording with its outputs regenerated by today's core (what `--update` writes);
    `outputs` are today's outputs as (t, stored record) pairs, for readable snapshots.
    """

    difference: str | None
    lines: list[str]
    outputs: list[tuple[float, dict[str, Any]]]


SHOW_LIMIT: Final = 300
"""Longest value printed whole in a difference; longer ones show the part that differs."""


def _show(value: object, limit: int = SHOW_LIMIT) -> str:
    text = _ENCODER.encode(value).decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show_pair(expected: object, got: object) -> str:
    """`expected X got Y`, cut around the first differing character when the values are long."""
    want = _ENCODER.encode(expected).decode("utf-8")
    have = _ENCODER.encode(got).decode("utf-8")
    if max(len(want), len(have)) <= SHOW_LIMIT:
        return f"expected {want} got {have}"
    at = next(
        (i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b),
        min(len(want), len(have)),
    )
    start = max(0, at - 60)

    def window(text: str) -> str:
        part = text[start : start + 200]
        return ("…" if start else "") + part + ("…" if start + 200 < len(text) else "")

    return f"(from character {start}) expected {window(want)} got {window(have)}"


def _explain_difference(expected: dict[str, Any], got: dict[str, Any]) -> str:
    if expected.get("type") == got.get("type"):
        keys = [k for k in {**expected, **got} if expected.get(k) != got.get(k)]
        if len(keys) == 1:
            key = keys[0]
            return (
                f"{expected.get('type')} field {key!r}: "
                f"{_show_pair(expected.get(key), got.get(key))}"
            )
    return _show_pair(expected, got)


def replay_lines(lines: list[str]) -> ReplayReport:
    """Replay a recording (its lines, without newlines) through a fresh core.

    Raises `RemoteProtocolError` (with the line number) when the file is not a readable
    recording; differences in behaviour are reported, not raised.
    """
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise RemoteProtocolError("line 1: empty file (expected a boba-session/1 header)")
    first_no, first = numbered[0]
    header = decode_line(first, first_no)
    if not isinstance(header, Header):
        raise _fail(first_no, "the first line must be the boba-session/1 header")
    entries: list[InputLine | OutputLine] = []
    for n, line in numbered[1:]:
        entry = decode_line(line, n)
        if isinstance(entry, Header):
            raise _fail(n, "a second header")
        entries.append(entry)

    digest = header.settings.digest_audio
    session = CallSession(header.call_config())
    difference: str | None = None
    new_lines = [first]
    outputs: list[tuple[float, dict[str, Any]]] = []
    expected, index = _outputs_from(entries, 0)
    if expected:
        difference = (
            f"line {expected[0].lineno}: expected {_show(expected[0].record)} "
            "before any input got nothing"
        )
    refused = False
    while index < len(entries):
        entry = entries[index]
        assert isinstance(entry, InputLine)
        expected, index = _outputs_from(entries, index + 1)
        next_line = entries[index].lineno if index < len(entries) else None
        new_lines.append(lines[entry.lineno - 1])
        got: list[dict[str, Any]] = []
        if not refused:
            try:
                actions = session.handle(entry.event)
            except ProtocolError as exc:
                refused = True
                if difference is None:
                    difference = f"line {entry.lineno}: the core refused this input: {exc}"
                actions = []
            got = [output_record(a, digest_audio=digest) for a in actions]
        for record in got:
            new_lines.append(_line(entry.t, "out", record))
            outputs.append((entry.t, record))
        if difference is None:
            difference = _compare_group(expected, got, next_line)
    return ReplayReport(difference=difference, lines=new_lines, outputs=outputs)


def _outputs_from(
    entries: list[InputLine | OutputLine], index: int
) -> tuple[list[OutputLine], int]:
    """The output lines from `index` up to the next input line, and where they stop."""
    outputs: list[OutputLine] = []
    while index < len(entries):
        entry = entries[index]
        if not isinstance(entry, OutputLine):
            break
        outputs.append(entry)
        index += 1
    return outputs, index


def _compare_group(
    expected: list[OutputLine], got: list[dict[str, Any]], next_line: int | None
) -> str | None:
    for k in range(max(len(expected), len(got))):
        if k >= len(got):
            return f"line {expected[k].lineno}: expected {_show(expected[k].record)} got nothing"
        if k >= len(expected):
            where = f"line {next_line}" if next_line is not None else "end of file"
            return f"{where}: expected no more output got {_show(got[k])}"
        want = comparable_output(expected[k].record)
        have = comparable_output(got[k])
        if want != have:
            return f"line {expected[k].lineno}: {_explain_difference(want, have)}"
    return None
