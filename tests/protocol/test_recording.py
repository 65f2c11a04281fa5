"""The boba-session/1 recording format (CONTRACT §10): lines round-trip, errors name the line."""

from __future__ import annotations

import hashlib
import json

import pytest

from boba_proto import agent, call, model, recording, twilio
from boba_proto.errors import RemoteProtocolError
from boba_proto.recording import Header, InputLine, OutputLine, decode_line
from tests.golden.make_sessions import Sim, build_config, plain_order
from tests.protocol.test_call import SID, fc, media, request, start

ORDER = model.Order(
    order_number="4782", status=model.OrderStatus.RECEIVED, phone="+14155550123",
    items=(model.Drink(flavor="taro milk tea", toppings=("boba",), sweetness="50%",
                       ice="regular ice", price_cents=625),),
    total_cents=625, created_at="2026-11-25T10:00:00Z",
)

INPUTS: list[call.CallEvent] = [
    twilio.Connected(protocol="Call", version="1.0.0"),
    start(),
    media(bytes(range(160))),
    twilio.Dtmf(stream_sid=SID, sequence_number="4", dtmf=twilio.DtmfInfo(digit="#")),
    twilio.Mark(stream_sid=SID, sequence_number="5", mark=twilio.MarkInfo(name="utt-1")),
    twilio.Stop(stream_sid=SID, sequence_number="6"),
    twilio.decode('{"event": "transcription", "streamSid": "MZ1",\n "text": "multi-line"}'),
    agent.Welcome(request_id="r-1"),
    agent.SettingsApplied(),
    agent.ConversationText(role="user", content="hi"),
    request(fc("a1", "add_to_cart", {"flavor": "taro"})),
    agent.FunctionCallCancelled(functions=[agent.CancelledFunction(id="a1", name="x")]),
    agent.AgentStartedSpeaking(total_latency=1.25, tts_latency=0.5, ttt_latency=0.75),
    agent.AgentError(code="E", description="bad"),
    agent.decode('{"type": "BrandNew", "stuff": [1, 2]}'),
    call.AgentConnected(),
    call.AgentLost(reason="closed 1006"),
    call.AgentAudio(data=b"\x00\x01\xff" * 100),
    call.TimerFired(name="tick"),
    call.TwilioMalformed(reason="Twilio sent malformed JSON"),
    call.CallerHungUp(),
    model.OrderCommitted(request_id="c1", order=ORDER),
    model.OrdersFound(request_id="o1", orders=(ORDER,)),
    model.EffectFailed(request_id="c2", reason="store unavailable"),
]


@pytest.mark.parametrize("event", INPUTS, ids=lambda e: type(e).__name__)
def test_every_input_round_trips_through_one_line(event: call.CallEvent) -> None:
    line = recording.encode_input(1.5, event)
    assert "\n" not in line
    decoded = decode_line(line, 7)
    assert isinstance(decoded, InputLine)
    assert decoded.t == 1.5 and decoded.lineno == 7
    if isinstance(event, twilio.UnknownTwilioEvent | agent.UnknownAgentMessage):
        assert type(decoded.event) is type(event)
        assert json.loads(decoded.event.raw) == json.loads(event.raw)
    else:
        assert decoded.event == event


def test_the_header_rebuilds_the_call_config() -> None:
    config = build_config(agent.AudioProfile.LINEAR16, max_call_seconds=120)
    line = recording.encode_header(config, started_at="2026-11-25T10:00:00Z")
    header = decode_line(line, 1)
    assert isinstance(header, Header)
    assert json.loads(line)["format"] == "boba-session/1"
    assert header.started_at == "2026-11-25T10:00:00Z"
    assert header.call_config() == config


def test_audio_outputs_are_stored_as_digests_or_in_full() -> None:
    audio_out = call.SendAgentAudio(data=b"\x01\x02" * 960)
    media_out = call.SendToTwilio(
        text=twilio.encode(twilio.SendMedia(stream_sid=SID, payload=b"\x7f" * 320)),
        kind=call.TwilioFrameKind.MEDIA,
    )
    digested = [decode_line(recording.encode_output(0.5, a), 3) for a in (audio_out, media_out)]
    full = [decode_line(recording.encode_output(0.5, a, digest_audio=False), 3)
            for a in (audio_out, media_out)]
    assert isinstance(digested[0], OutputLine) and isinstance(full[0], OutputLine)
    assert digested[0].record == {
        "type": "send_agent_audio", "bytes": 1920,
        "sha256": hashlib.sha256(b"\x01\x02" * 960).hexdigest(),
    }
    assert "data" in full[0].record
    for d, f in zip(digested, full, strict=True):
        assert isinstance(d, OutputLine) and isinstance(f, OutputLine)
        assert recording.comparable_output(f.record) == d.record


def test_other_outputs_are_stored_in_full() -> None:
    ended = call.EndCall(reason=call.EndReason.TIME_LIMIT)
    end = decode_line(recording.encode_output(2.0, ended), 9)
    assert isinstance(end, OutputLine)
    assert end.record == {"type": "end_call", "reason": "time_limit"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('{"in": {"type": "timer_fired", "name": "tick"}}', 'needs "t"'),
        ('{"t": 1, "in": {"type": "timer_fired", "name": "x"}, "out": {"type": "end_call"}}',
         "exactly one"),
        ('{"t": 1}', "exactly one"),
        ('{"t": 1, "in": {"type": "teleport"}}', "bad input"),
        ('{"t": 1, "in": {"type": "twilio", "frame": {"event": "media"}}}', "invalid 'media'"),
        ('{"t": 1, "out": {"type": "dance"}}', "unknown output type"),
        ('{"t": 1, "out": {"type": "send_agent_audio", "data": "%%%"}}', "bad output"),
        ('{"format": "boba-session/9", "started_at": "x"}', "unsupported format"),
        ('{"format": "boba-session/1", "started_at": "x"}', "bad header"),
    ],
)
def test_a_bad_line_is_reported_with_its_number(line: str, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=f"^line 12: .*{message}"):
        decode_line(line, 12)


def test_the_recorder_writes_what_the_runtime_saw_and_did() -> None:
    config = build_config(agent.AudioProfile.MULAW)
    recorder = recording.Recorder(config, started_at="2026-11-25T10:00:00Z")
    session = call.CallSession(config)
    lines = [recorder.header()]
    for t, event in [(0.0, start()), (0.04, call.AgentConnected()),
                     (0.2, agent.SettingsApplied()), (0.3, media(b"\xff" * 160, 1)),
                     (0.32, media(b"\xff" * 160, 2))]:
        lines.append(recorder.input(t, event))
        lines += recorder.outputs(t, session.handle(event))
    report = recording.replay_lines(lines)
    assert report.difference is None
    assert report.lines == lines
    assert [r["type"] for _, r in report.outputs] == [
        "start_timer", "start_timer", "send_to_agent", "start_timer", "cancel_timer",
        "send_agent_audio",
    ]


def test_a_full_recording_replays_like_a_digested_one() -> None:
    sim = Sim(agent.AudioProfile.LINEAR16, seed=3)
    sim.recorder = recording.Recorder(sim.config, started_at="x", digest_audio=False)
    sim.lines = [sim.recorder.header()]
    lines = sim.run(plain_order)
    assert any('"type":"send_agent_audio","data"' in line for line in lines)
    report = recording.replay_lines(lines)
    assert report.difference is None and report.lines == lines


def test_replay_reports_missing_and_extra_outputs() -> None:
    config = build_config(agent.AudioProfile.MULAW)
    session = call.CallSession(config)
    header = recording.encode_header(config, started_at="x")
    first = recording.encode_input(0.0, start())
    outs = recording.Recorder(config, started_at="x").outputs(0.0, session.handle(start()))
    stop = recording.encode_input(1.0, twilio.Stop(stream_sid=SID))
    missing = recording.replay_lines([header, first, *outs[:1], stop])
    assert missing.difference is not None
    assert missing.difference.startswith("line 4: expected no more output got")
    extra_line = recording.encode_output(0.0, call.CancelTimer(name="tick"))
    extra = recording.replay_lines([header, first, *outs, extra_line, stop])
    assert extra.difference == (
        'line 5: expected {"type":"cancel_timer","name":"tick"} got nothing'
    )


def test_replay_of_input_after_the_end_reports_the_refusal() -> None:
    config = build_config(agent.AudioProfile.MULAW)
    lines = [recording.encode_header(config, started_at="x"),
             recording.encode_input(0.0, twilio.Stop(stream_sid=SID)),
             recording.encode_output(0.0, call.EndCall(reason=call.EndReason.COMPLETED)),
             recording.encode_input(0.1, media(b"\xff" * 160))]
    report = recording.replay_lines(lines)
    assert report.difference is not None
    assert report.difference.startswith("line 4: the core refused this input")


def test_replay_needs_a_header_first() -> None:
    with pytest.raises(RemoteProtocolError, match=r"^line 1: the first line must be"):
        recording.replay_lines([recording.encode_input(0.0, call.CallerHungUp())])
    with pytest.raises(RemoteProtocolError, match=r"^line 1: empty file"):
        recording.replay_lines([])


def test_a_difference_deep_in_a_long_value_is_shown_where_it_is() -> None:
    config = build_config(agent.AudioProfile.MULAW)
    session = call.CallSession(config)
    session.handle(start())
    header = recording.encode_header(config, started_at="x")
    connected = recording.encode_input(0.0, call.AgentConnected())
    outs = recording.Recorder(config, started_at="x").outputs(
        0.0, session.handle(call.AgentConnected())
    )
    tampered = outs[0].replace("What would you like", "What WOULD you like")  # the greeting
    assert tampered != outs[0]
    lines = [header, recording.encode_input(0.0, start()),
             *recording.Recorder(config, started_at="x").outputs(
                 0.0, call.CallSession(config).handle(start())),
             connected, tampered, *outs[1:]]
    report = recording.replay_lines(lines)
    assert report.difference is not None
    assert report.difference.startswith("line 6: send_to_agent field 'text': (from character ")
    assert "WOULD" in report.difference and "would" in report.difference
    assert len(report.difference) < 600
