"""Properties of both wire decoders: whatever a peer sends, the result is a value or the
peer's `RemoteProtocolError`, never another exception (hypothesis)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from boba_proto import agent, twilio
from boba_proto.errors import RemoteProtocolError

DATA = Path(__file__).parent / "data"

TWILIO_EVENTS = ["connected", "start", "media", "dtmf", "mark", "stop", "clear", "other"]
AGENT_TYPES = [
    "Welcome",
    "SettingsApplied",
    "ConversationText",
    "UserStartedSpeaking",
    "AgentThinking",
    "FunctionCallRequest",
    "FunctionCallCancelled",
    "FunctionCallResponse",
    "AgentStartedSpeaking",
    "LatencyReport",
    "AgentAudioDone",
    "PromptUpdated",
    "SpeakUpdated",
    "InjectionRefused",
    "History",
    "Error",
    "Warning",
    "Settings",
    "Unheard",
]
# Field names the real messages use, so random objects often hit the typed paths.
FIELD_NAMES = [
    "streamSid", "sequenceNumber", "start", "media", "payload", "track", "chunk",
    "timestamp", "mark", "name", "dtmf", "digit", "stop", "callSid", "mediaFormat",
    "sampleRate", "customParameters", "tracks", "request_id", "role", "content",
    "functions", "id", "arguments", "client_side", "function_name", "function_call_id",
    "input", "total_latency", "description", "code", "message", "function_calls",
]  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def tagged_objects(tag_key: str, tags: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with a plausible tag and plausible (but random) fields."""
    return st.builds(
        lambda tag, body: {**body, tag_key: tag},
        st.sampled_from(tags),
        st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6),
    )


def mutated_fixtures(path: Path) -> st.SearchStrategy[Any]:
    """A real message with one value somewhere replaced by arbitrary JSON."""
    messages = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def replace_somewhere(msg: Any, choices: list[int], new: Any) -> Any:
        if not choices or not isinstance(msg, dict | list) or not msg:
            return new
        keys = list(msg) if isinstance(msg, dict) else list(range(len(msg)))
        key = keys[choices[0] % len(keys)]
        copy = dict(msg) if isinstance(msg, dict) else list(msg)
        copy[key] = replace_somewhere(msg[key], choices[1:], new)
        return copy

    return st.builds(
        replace_somewhere,
        st.sampled_from(messages),
        st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=4),
        json_values,
    )


Decoder = Callable[[str | bytes], object]
DECODERS: list[tuple[str, Decoder]] = [
    ("twilio.decode", twilio.decode),
    ("twilio.decode_outbound", twilio.decode_outbound),
    ("agent.decode", agent.decode),
    ("agent.decode_client", agent.decode_client),
]


def value_or_remote_error(frame: str | bytes) -> None:
    for name, decode in DECODERS:
        try:
            result = decode(frame)
        except RemoteProtocolError as exc:
            assert exc.message, name
        else:
            assert isinstance(result, msgspec.Struct), (name, result)


@given(st.binary(max_size=300))
def test_arbitrary_bytes(frame: bytes) -> None:
    value_or_remote_error(frame)


@given(st.text(max_size=200))
def test_arbitrary_text(frame: str) -> None:
    value_or_remote_error(frame)


@given(st.text(max_size=30), st.characters(categories=["Cs"]), st.text(max_size=30))
def test_text_with_lone_surrogates(head: str, surrogate: str, tail: str) -> None:
    """A `str` frame cannot come off a real socket like this, but must still not crash."""
    value_or_remote_error(head + surrogate + tail)


@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    frame = json.dumps(value)
    value_or_remote_error(frame)
    value_or_remote_error(frame.encode())


@given(tagged_objects("event", TWILIO_EVENTS) | tagged_objects("type", AGENT_TYPES))
def test_tagged_objects_with_random_bodies(value: dict[str, Any]) -> None:
    value_or_remote_error(json.dumps(value))


@settings(max_examples=200)
@given(
    mutated_fixtures(DATA / "twilio-2020-inbound.jsonl")
    | mutated_fixtures(DATA / "twilio-2020-outbound-marks.jsonl")
    | mutated_fixtures(DATA / "agent-server-v1.jsonl")
)
def test_real_messages_with_one_value_broken(value: Any) -> None:
    value_or_remote_error(json.dumps(value))


@settings(max_examples=50)
@given(tagged_objects("event", ["nope", "transcription", ""]))
def test_unknown_twilio_events_are_values(value: dict[str, Any]) -> None:
    frame = json.dumps(value).encode()
    assert twilio.decode(frame) == twilio.UnknownTwilioEvent(event=value["event"], raw=frame)


@settings(max_examples=50)
@given(tagged_objects("type", ["Nope", "FrustrationDetected", ""]))
def test_unknown_agent_types_are_values(value: dict[str, Any]) -> None:
    frame = json.dumps(value).encode()
    assert agent.decode(frame) == agent.UnknownAgentMessage(type=value["type"], raw=frame)


# --- codec round trips ----------------------------------------------------------------

sids = st.text(min_size=1, max_size=40)


@given(sids, st.binary(max_size=2000))
def test_send_media_round_trip(sid: str, payload: bytes) -> None:
    msg = twilio.SendMedia(stream_sid=sid, payload=payload)
    assert twilio.decode_outbound(twilio.encode(msg)) == msg


@given(sids, st.text(max_size=40))
def test_send_mark_round_trip(sid: str, name: str) -> None:
    msg = twilio.SendMark(stream_sid=sid, name=name)
    assert twilio.decode_outbound(twilio.encode(msg)) == msg


@given(
    sids,
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
    st.binary(max_size=400),
)
def test_inbound_media_round_trip(sid: str, chunk: int, timestamp: int, payload: bytes) -> None:
    event = twilio.Media(
        stream_sid=sid,
        sequence_number=str(chunk + 1),
        media=twilio.MediaInfo(chunk=str(chunk), timestamp=str(timestamp), payload=payload),
    )
    decoded = twilio.decode(twilio.encode_event(event))
    assert decoded == event
    assert isinstance(decoded, twilio.Media)
    assert (decoded.media.chunk_number, decoded.media.timestamp_ms) == (chunk, timestamp)


@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=200))
def test_function_call_response_round_trip(call_id: str, name: str, content: str) -> None:
    msg = agent.FunctionCallResponse(id=call_id, name=name, content=content)
    assert agent.decode_client(agent.encode(msg)) == msg


@given(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10), json_values), max_size=4))
def test_function_call_request_arguments_stay_a_string(calls: list[tuple[str, str, Any]]) -> None:
    msg = agent.FunctionCallRequest(
        functions=[
            agent.FunctionCall(id=i, name=n, arguments=json.dumps(args), client_side=True)
            for i, n, args in calls
        ]
    )
    decoded = agent.decode(agent.encode_server(msg))
    assert decoded == msg
    assert isinstance(decoded, agent.FunctionCallRequest)
    assert [json.loads(f.arguments) for f in decoded.functions] == [a for _, _, a in calls]


@settings(max_examples=25)
@given(
    st.integers(min_value=1, max_value=3_000),
    st.sampled_from(["[", '{"a":']),
    st.sampled_from(
        [
            '{"event": "media", "media": %s}',
            '{"event": "wat", "type": "Wat", "extra": %s}',
            '{"type": "FunctionCallRequest", "input": %s}',
            '{"type": "Settings", "agent": {"think": {"functions": [{"parameters": %s}]}}}',
            "%s",
        ]
    ),
)
def test_deep_nesting_is_the_peers_fault(depth: int, opener: str, template: str) -> None:
    """Found by hand: msgspec raises RecursionError (not DecodeError) while skipping a deeply
    nested unknown field; it must surface as the peer's RemoteProtocolError."""
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "0" + closer * depth
    value_or_remote_error(template % nested)
