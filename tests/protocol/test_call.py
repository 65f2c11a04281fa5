"""CallSession: frames and events in, actions out (CONTRACT §5), with no I/O and no clock."""

from __future__ import annotations

import itertools
import json
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from boba_proto import agent, audio, call, model, twilio
from boba_proto.call import (
    AgentAudio,
    AgentConnected,
    AgentLost,
    CallerHungUp,
    CallSession,
    CallState,
    EndCall,
    EndReason,
    SendAgentAudio,
    SendToAgent,
    SendToTwilio,
    TimerFired,
    TwilioFrameKind,
    TwilioMalformed,
)
from boba_proto.errors import LocalProtocolError
from tests.golden.make_sessions import build_config

SID = "MZ0001"
LINEAR16 = agent.AudioProfile.LINEAR16
MULAW = agent.AudioProfile.MULAW

# --------------------------------------------------------------------------- helpers


def start(caller: str = "+14155550123", sid: str = SID) -> twilio.Start:
    return twilio.Start(
        stream_sid=sid,
        sequence_number="1",
        start=twilio.StartInfo(
            stream_sid=sid,
            call_sid="CA" + sid,
            media_format=twilio.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
            custom_parameters={"caller": caller},
        ),
    )


def media(payload: bytes, chunk: int = 1, sid: str = SID) -> twilio.Media:
    return twilio.Media(
        stream_sid=sid,
        sequence_number=str(chunk + 1),
        media=twilio.MediaInfo(chunk=str(chunk), timestamp=str(20 * chunk), payload=payload),
    )


def mark(name: str) -> twilio.Mark:
    return twilio.Mark(stream_sid=SID, sequence_number="99", mark=twilio.MarkInfo(name=name))


def dtmf(digit: str) -> twilio.Dtmf:
    return twilio.Dtmf(stream_sid=SID, sequence_number="50", dtmf=twilio.DtmfInfo(digit=digit))


def fc(fid: str, name: str, args: dict[str, Any] | None = None, *, client_side: bool = True
       ) -> agent.FunctionCall:
    return agent.FunctionCall(
        id=fid, name=name, arguments=json.dumps(args or {}), client_side=client_side
    )


def request(*calls: agent.FunctionCall) -> agent.FunctionCallRequest:
    return agent.FunctionCallRequest(functions=list(calls))


def conversing(profile: agent.AudioProfile = MULAW, **kwargs: Any) -> CallSession:
    """A session past start, Settings and SettingsApplied."""
    session = CallSession(build_config(profile, **kwargs))
    session.handle(start())
    session.handle(AgentConnected())
    session.handle(agent.SettingsApplied())
    assert session.state is CallState.CONVERSING
    return session


def agent_frames(actions: list[call.Action]) -> list[agent.AgentClientMessage]:
    return [agent.decode_client(a.text) for a in actions if isinstance(a, SendToAgent)]


def twilio_frames(actions: list[call.Action]) -> list[twilio.TwilioOutbound]:
    return [twilio.decode_outbound(a.text) for a in actions if isinstance(a, SendToTwilio)]


def responses(actions: list[call.Action]) -> list[agent.FunctionCallResponse]:
    return [m for m in agent_frames(actions) if isinstance(m, agent.FunctionCallResponse)]


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


# --------------------------------------------------------------------------- start-up


def test_start_arms_the_timers_and_waits_for_the_agent() -> None:
    session = CallSession(build_config(MULAW, max_call_seconds=90))
    actions = session.handle(start())
    assert actions == [
        call.StartTimer(name="tick", seconds=1.0),
        call.StartTimer(name="call_limit", seconds=90.0),
    ]
    assert session.state is CallState.CONNECTING_AGENT
    assert session.caller == "+14155550123"
    assert session.stream_sid == SID


def test_settings_go_out_once_both_start_and_agent_are_there() -> None:
    config = build_config(LINEAR16)
    session = CallSession(config)
    session.handle(start())
    actions = session.handle(AgentConnected())
    (settings,) = agent_frames(actions)
    assert settings == config.agent_settings
    assert settings.audio.input.encoding == "linear16"
    assert settings.audio.input.sample_rate == 48000
    assert call.StartTimer(name="settings", seconds=10.0) in actions
    assert session.state is CallState.CONFIGURING


def test_a_pre_opened_agent_gets_settings_with_start() -> None:
    session = CallSession(build_config(MULAW))
    assert session.handle(AgentConnected()) == []
    actions = session.handle(start())
    assert [type(m) for m in agent_frames(actions)] == [agent.AgentSettings]


def test_caller_audio_is_held_back_until_settings_applied() -> None:
    session = CallSession(build_config(MULAW))
    session.handle(start())
    session.handle(AgentConnected())
    assert session.handle(media(b"\x01" * 160, 1)) == []
    assert session.handle(media(b"\x02" * 160, 2)) == []
    session.handle(agent.SettingsApplied())
    assert session.handle(media(b"\x03" * 160, 3)) == []
    assert session.handle(media(b"\x04" * 160, 4)) == [
        SendAgentAudio(data=b"\x03" * 160 + b"\x04" * 160)
    ]


def test_an_agent_that_never_applies_settings_fails_the_call() -> None:
    session = CallSession(build_config(MULAW))
    session.handle(start())
    session.handle(AgentConnected())
    assert session.handle(TimerFired(name="settings")) == [
        EndCall(reason=EndReason.AGENT_FAILED)
    ]


# --------------------------------------------------------------------------- caller audio


def test_mulaw_caller_audio_goes_through_untouched_in_40_ms_messages() -> None:
    session = conversing(MULAW)
    payloads = [bytes([i]) * 160 for i in range(6)]
    sent = [a for i, p in enumerate(payloads) for a in session.handle(media(p, i + 1))]
    assert sent == [
        SendAgentAudio(data=payloads[0] + payloads[1]),
        SendAgentAudio(data=payloads[2] + payloads[3]),
        SendAgentAudio(data=payloads[4] + payloads[5]),
    ]


def test_linear16_caller_audio_is_resampled_to_48k_like_the_whole_signal() -> None:
    session = conversing(LINEAR16)
    ulaw = audio.ulaw_encode(tone(0.2, 8000))
    sent = b"".join(
        a.data
        for i in range(0, len(ulaw), 160)
        for a in session.handle(media(ulaw[i : i + 160], i // 160 + 1))
        if isinstance(a, SendAgentAudio)
    )
    whole, _ = audio.caller_to_agent(ulaw, audio.resampler(8000, 48000).initial_state())
    assert len(sent) == 5 * 3840  # ten 20 ms frames -> five 40 ms messages of 1920 samples
    assert sent == whole
    chunks = [a for a in session.handle(media(ulaw[:160], 99)) if isinstance(a, SendAgentAudio)]
    assert chunks == []  # half a message is held until the next frame


# --------------------------------------------------------------------------- agent audio


def test_agent_audio_becomes_twilio_media_of_at_most_100_ms_in_whole_frames() -> None:
    session = conversing(LINEAR16)
    pcm = tone(0.75, 24000).astype("<i2").tobytes()
    out: list[call.Action] = []
    for at in range(0, len(pcm), 4801):  # odd sizes: a sample split across two frames
        out += session.handle(AgentAudio(data=pcm[at : at + 4801]))
    out += session.handle(agent.AgentAudioDone())
    frames = twilio_frames(out)
    media_frames = [f for f in frames if isinstance(f, twilio.SendMedia)]
    assert all(0 < len(f.payload) <= 800 and len(f.payload) % 160 == 0 for f in media_frames)
    played = b"".join(f.payload for f in media_frames)
    whole, _ = audio.agent_to_caller(pcm, audio.resampler(24000, 8000).initial_state())
    assert len(whole) >= 6000  # 750 ms at 8 kHz
    assert played == whole + b"\xff" * (-len(whole) % 160)  # the last frame padded
    assert frames[-1] == twilio.SendMark(stream_sid=SID, name="utt-1")
    assert all(f.stream_sid == SID for f in media_frames)
    assert [a.kind for a in out if isinstance(a, SendToTwilio)][-1] is TwilioFrameKind.MARK
    assert session.pending_marks == ("utt-1",)


def test_mulaw_agent_audio_is_passed_through_and_the_last_frame_padded() -> None:
    session = conversing(MULAW)
    speech = bytes(range(1, 251))  # 250 bytes: one whole frame and 90 left over
    first = twilio_frames(session.handle(AgentAudio(data=speech)))
    assert first == [twilio.SendMedia(stream_sid=SID, payload=speech[:160])]
    done = twilio_frames(session.handle(agent.AgentAudioDone()))
    assert done == [
        twilio.SendMedia(stream_sid=SID, payload=speech[160:] + b"\xff" * 70),
        twilio.SendMark(stream_sid=SID, name="utt-1"),
    ]


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=12))
def test_what_twilio_plays_does_not_depend_on_how_the_agent_chunked_it(cuts: list[int]) -> None:
    pcm = tone(0.4, 24000).astype("<i2").tobytes()

    def played(pieces: list[bytes]) -> bytes:
        session = conversing(LINEAR16)
        actions = [a for p in pieces for a in session.handle(AgentAudio(data=p))]
        actions += session.handle(agent.AgentAudioDone())
        return b"".join(
            f.payload for f in twilio_frames(actions) if isinstance(f, twilio.SendMedia)
        )

    bounds = sorted({c % len(pcm) for c in cuts} | {0, len(pcm)})
    pieces = [pcm[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    assert played(pieces) == played([pcm])


def test_marks_echoed_in_order_count_as_played() -> None:
    session = conversing(MULAW)
    for _ in range(3):
        session.handle(AgentAudio(data=b"\x10" * 320))
        session.handle(agent.AgentAudioDone())
    assert session.pending_marks == ("utt-1", "utt-2", "utt-3")
    assert session.handle(mark("utt-2")) == []  # Twilio plays in order: utt-1 played too
    assert session.played_marks == ("utt-1", "utt-2")
    assert session.pending_marks == ("utt-3",)
    assert session.handle(mark("nobody-sent-this")) == []


def test_an_utterance_without_audio_sends_no_mark() -> None:
    session = conversing(MULAW)
    assert session.handle(agent.AgentAudioDone()) == []


# --------------------------------------------------------------------------- barge-in


def test_barge_in_clears_twilio_drops_held_audio_and_counts_marks_as_cleared() -> None:
    session = conversing(LINEAR16)
    session.handle(AgentAudio(data=tone(0.3, 24000).astype("<i2").tobytes()))
    session.handle(agent.AgentAudioDone())
    session.handle(AgentAudio(data=tone(0.1, 24000)[:1001].astype("<i2").tobytes()))
    actions = session.handle(agent.UserStartedSpeaking())
    assert actions == [
        SendToTwilio(text=twilio.encode(twilio.SendClear(stream_sid=SID)),
                     kind=TwilioFrameKind.CLEAR)
    ]
    assert session.cleared_marks == ("utt-1",)
    assert session.pending_marks == ()
    assert session.handle(mark("utt-1")) == []  # the echo a clear causes
    assert session.played_marks == ()
    # the held partial frame is gone: an AgentAudioDone now has nothing to pad or mark
    assert session.handle(agent.AgentAudioDone()) == []


def test_after_barge_in_the_next_reply_starts_from_a_fresh_resampler() -> None:
    reply = tone(0.2, 24000).astype("<i2").tobytes()
    interrupted = conversing(LINEAR16)
    interrupted.handle(AgentAudio(data=tone(0.15, 24000)[:3333].astype("<i2").tobytes()))
    interrupted.handle(agent.UserStartedSpeaking())
    fresh = conversing(LINEAR16)
    assert interrupted.handle(AgentAudio(data=reply)) == fresh.handle(AgentAudio(data=reply))


# --------------------------------------------------------------------------- functions


def test_each_client_side_function_is_answered_once_with_its_id_and_name() -> None:
    session = conversing()
    actions = session.handle(request(
        fc("a1", "add_to_cart", {"flavor": "taro milk tea", "toppings": ["boba"]}),
        fc("s1", "server_thing", client_side=False),
        fc("a2", "confirm_pending_to_cart"),
        fc("a3", "no_such_function"),
    ))
    answered = responses(actions)
    assert [(r.id, r.name) for r in answered] == [
        ("a1", "add_to_cart"), ("a2", "confirm_pending_to_cart"), ("a3", "no_such_function")
    ]
    contents = [json.loads(r.content) for r in answered]
    assert contents[0]["ok"] is True and contents[1]["cart_count"] == 1
    assert contents[2]["ok"] is False and contents[2]["error"]
    called = [a for a in actions if isinstance(a, call.FunctionCalled)]
    assert [c.id for c in called] == ["a1", "a2", "a3"]
    assert called[0].result == answered[0].content
    # the same ids again (a retransmission) get nothing
    assert session.handle(request(fc("a1", "add_to_cart"), fc("a2", "get_cart"))) == []
    assert session.state is CallState.CONVERSING


def test_checkout_is_answered_only_when_the_commit_comes_back() -> None:
    session = conversing()
    session.handle(request(fc("a1", "add_to_cart", {"flavor": "taro"}),
                           fc("p1", "save_phone_number", {"phone": "415 555 0123"})))
    actions = session.handle(request(fc("c1", "checkout_order")))
    (effect,) = [a.effect for a in actions if isinstance(a, call.RequestEffect)]
    assert isinstance(effect, model.CommitOrder)
    assert effect.request_id == "c1"
    assert effect.draft.phone == "+14155550123" and effect.draft.total_cents == 550
    assert responses(actions) == []
    order = committed(effect)
    answer = session.handle(model.OrderCommitted(request_id="c1", order=order))
    (response,) = responses(answer)
    assert response.id == "c1" and response.name == "checkout_order"
    assert json.loads(response.content)["order_number"] == "4782"


def committed(effect: model.CommitOrder) -> model.Order:
    return model.Order(
        order_number="4782", status=model.OrderStatus.RECEIVED, phone=effect.draft.phone,
        items=effect.draft.items, total_cents=effect.draft.total_cents,
        created_at="2026-11-25T10:00:00Z",
    )


def test_a_cancelled_checkout_gets_no_answer_but_the_order_is_remembered() -> None:
    session = conversing()
    session.handle(request(fc("a1", "add_to_cart", {"flavor": "taro"})))
    actions = session.handle(request(fc("c1", "checkout_order", {"phone": "4155550123"})))
    (effect,) = [a.effect for a in actions if isinstance(a, call.RequestEffect)]
    assert isinstance(effect, model.CommitOrder)
    session.handle(agent.FunctionCallCancelled(
        functions=[agent.CancelledFunction(id="c1", name="checkout_order")]
    ))
    assert session.handle(model.OrderCommitted(request_id="c1", order=committed(effect))) == []
    assert session.tool_state.placed_order is not None
    again = responses(session.handle(request(fc("c2", "checkout_order"))))
    assert json.loads(again[0].content)["order_number"] == "4782"  # the same order, no effect


def test_a_failed_effect_is_answered_with_ok_false() -> None:
    session = conversing()
    actions = session.handle(request(fc("o1", "order_status")))
    (effect,) = [a.effect for a in actions if isinstance(a, call.RequestEffect)]
    assert isinstance(effect, model.LookupOrders) and effect.phones == ("+14155550123",)
    answer = session.handle(model.EffectFailed(request_id="o1", reason="store down"))
    assert json.loads(responses(answer)[0].content)["ok"] is False


def test_an_effect_result_nobody_asked_for_is_our_bug() -> None:
    session = conversing()
    with pytest.raises(LocalProtocolError, match="never asked for"):
        session.handle(model.EffectFailed(request_id="zzz", reason="?"))


# --------------------------------------------------------------------------- DTMF


def test_dtmf_digits_go_to_the_agent_after_a_pause() -> None:
    session = conversing()
    for digit in "415":
        assert session.handle(dtmf(digit)) == [call.StartTimer(name="dtmf", seconds=2.0)]
    (inject,) = agent_frames(session.handle(TimerFired(name="dtmf")))
    assert inject == agent.InjectUserMessage(content="The caller typed 4 1 5")
    assert session.handle(TimerFired(name="dtmf")) == []  # nothing left


def test_hash_sends_the_digits_at_once() -> None:
    session = conversing()
    session.handle(dtmf("1"))
    session.handle(dtmf("2"))
    actions = session.handle(dtmf("#"))
    assert actions[0] == call.CancelTimer(name="dtmf")
    assert agent_frames(actions) == [agent.InjectUserMessage(content="The caller typed 1 2")]


# --------------------------------------------------------------------------- timers


def test_keepalive_after_five_seconds_without_caller_audio() -> None:
    session = conversing()
    sent = [session.handle(TimerFired(name="tick")) for _ in range(5)]
    assert all(call.StartTimer(name="tick", seconds=1.0) in s for s in sent)
    assert [agent_frames(s) for s in sent] == [[], [], [], [], [agent.KeepAlive()]]


def test_no_keepalive_while_caller_audio_flows() -> None:
    session = conversing()
    for i in range(10):
        session.handle(media(b"\xff" * 160, 2 * i + 1))
        session.handle(media(b"\xff" * 160, 2 * i + 2))
        assert agent_frames(session.handle(TimerFired(name="tick"))) == []


def test_an_unknown_timer_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError, match="never starts"):
        conversing().handle(TimerFired(name="mystery"))


# --------------------------------------------------------------------------- ending


def test_end_call_hangs_up_when_the_goodbye_mark_comes_back() -> None:
    session = conversing()
    actions = session.handle(request(fc("e1", "end_call")))
    assert json.loads(responses(actions)[0].content) == {"ok": True, "ending": True}
    assert call.StartTimer(name="goodbye", seconds=5.0) in actions
    assert session.state is CallState.ENDING
    session.handle(AgentAudio(data=b"\x20" * 480))
    goodbye = twilio_frames(session.handle(agent.AgentAudioDone()))
    assert goodbye[-1] == twilio.SendMark(stream_sid=SID, name="utt-1")
    assert session.handle(mark("utt-1")) == [EndCall(reason=EndReason.COMPLETED)]
    assert session.state is CallState.CLOSED


def test_end_call_hangs_up_after_5_s_without_a_goodbye() -> None:
    session = conversing()
    session.handle(request(fc("e1", "end_call")))
    assert session.handle(TimerFired(name="goodbye")) == [EndCall(reason=EndReason.COMPLETED)]


def test_the_time_limit_asks_the_agent_for_a_goodbye_then_ends() -> None:
    session = conversing(max_call_seconds=30)
    actions = session.handle(TimerFired(name="call_limit"))
    (inject,) = agent_frames(actions)
    assert isinstance(inject, agent.InjectAgentMessage) and "time limit" in inject.message
    session.handle(AgentAudio(data=b"\x20" * 160))
    session.handle(agent.AgentAudioDone())
    assert session.handle(mark("utt-1")) == [EndCall(reason=EndReason.TIME_LIMIT)]


def test_a_reply_under_way_at_the_time_limit_is_not_taken_for_the_goodbye() -> None:
    session = conversing(max_call_seconds=30)
    session.handle(AgentAudio(data=b"\x20" * 320))  # the agent is mid-sentence
    session.handle(TimerFired(name="call_limit"))
    session.handle(agent.AgentAudioDone())
    assert session.handle(mark("utt-1")) == []  # that was the old sentence
    session.handle(AgentAudio(data=b"\x21" * 320))  # the injected goodbye
    session.handle(agent.AgentAudioDone())
    assert session.handle(mark("utt-2")) == [EndCall(reason=EndReason.TIME_LIMIT)]


def test_end_call_takes_the_reply_under_way_as_the_goodbye() -> None:
    session = conversing()
    session.handle(AgentAudio(data=b"\x20" * 320))  # "Thanks, goodbye!" already streaming
    session.handle(request(fc("e1", "end_call")))
    session.handle(agent.AgentAudioDone())
    assert session.handle(mark("utt-1")) == [EndCall(reason=EndReason.COMPLETED)]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (twilio.Stop(stream_sid=SID), EndReason.COMPLETED),
        (CallerHungUp(), EndReason.COMPLETED),
        (AgentLost(reason="socket closed"), EndReason.AGENT_FAILED),
    ],
)
def test_the_call_ends_when_a_side_goes_away(event: call.CallEvent, reason: EndReason) -> None:
    session = conversing()
    assert session.handle(event) == [EndCall(reason=reason)]
    assert session.end_reason is reason
    assert reason.apologise is (reason is EndReason.AGENT_FAILED)


def test_losing_the_agent_during_the_goodbye_is_not_a_failure() -> None:
    session = conversing()
    session.handle(request(fc("e1", "end_call")))
    assert session.handle(AgentLost(reason="closed")) == [EndCall(reason=EndReason.COMPLETED)]


def test_an_agent_error_is_reported_and_ends_the_call_with_an_apology() -> None:
    session = conversing()
    actions = session.handle(agent.AgentError(code="INTERNAL_SERVER_ERROR", description="boom"))
    assert actions == [
        call.AgentErrorReported(code="INTERNAL_SERVER_ERROR", description="boom"),
        EndCall(reason=EndReason.AGENT_FAILED),
    ]


def test_fifty_malformed_twilio_messages_end_the_call() -> None:
    session = CallSession(build_config(MULAW))
    assert session.handle(media(b"\xff" * 160)) == []  # media before start counts
    session.handle(start())
    assert session.handle(media(b"\xff" * 160, sid="MZ-other")) == []  # so does a wrong sid
    unknown = twilio.UnknownTwilioEvent(event="transcription", raw=b'{"event":"transcription"}')
    for _ in range(46):
        assert session.handle(TwilioMalformed(reason="bad JSON")) == []
    assert session.handle(unknown) == []
    assert session.malformed_count == 49
    assert session.handle(unknown) == [EndCall(reason=EndReason.TOO_MANY_MALFORMED)]


def test_unknown_agent_messages_and_warnings_do_not_disturb_the_call() -> None:
    session = conversing()
    unknown = agent.decode('{"type": "SomethingNew", "x": 1}')
    assert isinstance(unknown, agent.UnknownAgentMessage)
    assert session.handle(unknown) == []
    assert session.handle(agent.Welcome(request_id="r")) == []
    assert session.handle(agent.AgentWarning(code="W", description="careful")) == [
        call.AgentWarningReported(code="W", description="careful")
    ]
    assert session.state is CallState.CONVERSING


def test_a_closed_session_refuses_input() -> None:
    session = conversing()
    session.handle(twilio.Stop(stream_sid=SID))
    with pytest.raises(LocalProtocolError, match="closed"):
        session.handle(media(b"\xff" * 160))


def test_agent_connected_twice_is_our_bug() -> None:
    session = conversing()
    with pytest.raises(LocalProtocolError):
        session.handle(AgentConnected())


# --------------------------------------------------------------------------- isolation


def script_for(caller: str, sid: str, flavor: str) -> list[call.CallEvent]:
    return [
        start(caller, sid),
        AgentConnected(),
        agent.SettingsApplied(),
        media(b"\x11" * 160, 1, sid),
        request(fc("f1", "add_to_cart", {"flavor": flavor, "toppings": ["boba"]})),
        media(b"\x12" * 160, 2, sid),
        AgentAudio(data=tone(0.1, 24000).astype("<i2").tobytes()),
        request(fc("f2", "confirm_pending_to_cart"), fc("f3", "get_cart")),
        agent.UserStartedSpeaking(),
        dtmf("7"),
        request(fc("f4", "save_phone_number", {"phone": caller})),
        request(fc("f5", "checkout_order")),
    ]


def test_two_interleaved_calls_share_nothing() -> None:
    config = build_config(LINEAR16)
    one = script_for("+14155550101", "MZ-one", "taro milk tea")
    two = script_for("+14155550202", "MZ-two", "black milk tea")
    alone_one = [CallSession(config)]
    alone_two = [CallSession(config)]
    expected_one = [alone_one[0].handle(e) for e in one]
    expected_two = [alone_two[0].handle(e) for e in two]
    a, b = CallSession(config), CallSession(config)
    got_one, got_two = [], []
    for e1, e2 in zip(one, two, strict=True):
        got_one.append(a.handle(e1))
        got_two.append(b.handle(e2))
    assert got_one == expected_one and got_two == expected_two
    effects = [
        x.effect for x in got_one[-1] + got_two[-1] if isinstance(x, call.RequestEffect)
    ]
    assert [(e.draft.phone, e.draft.items[0].flavor) for e in effects  # type: ignore[union-attr]
            ] == [("+14155550101", "taro milk tea"), ("+14155550202", "black milk tea")]
