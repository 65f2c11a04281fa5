"""Properties of CallSession over arbitrary interleavings of what peers may send.

Whatever order Twilio, the agent, timers and the store deliver things in, the session
never crashes, answers each function id at most once (and never a cancelled one), sends
Twilio only whole-frame media of at most 100 ms, ends at most once, and refuses input only
after it has ended.
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from boba_proto import agent, call, model, twilio
from boba_proto.call import CallSession, CallState
from boba_proto.errors import LocalProtocolError
from tests.golden.make_sessions import build_config
from tests.protocol.test_call import SID, dtmf, fc, mark, media, request, start

FUNCTIONS = [
    ("add_to_cart", {"flavor": "taro", "toppings": ["boba"]}),
    ("add_to_cart", {"flavor": "mango"}),
    ("confirm_pending_to_cart", {}),
    ("save_phone_number", {"phone": "415 555 0123"}),
    ("checkout_order", {}),
    ("order_status", {}),
    ("get_cart", {}),
    ("end_call", {}),
    ("nonsense", {"x": 1}),
]

peer_event = st.one_of(
    st.builds(lambda n, size: media(bytes([n % 256]) * size, n + 1),
              st.integers(0, 500), st.sampled_from([160, 160, 160, 80, 320])),
    st.builds(lambda data: call.AgentAudio(data=data), st.binary(min_size=1, max_size=3000)),
    st.just(agent.AgentAudioDone()),
    st.just(agent.UserStartedSpeaking()),
    st.just(agent.SettingsApplied()),
    st.builds(lambda n: mark(f"utt-{n}"), st.integers(1, 6)),
    st.builds(dtmf, st.sampled_from(list("0123456789#*"))),
    st.builds(lambda name: call.TimerFired(name=name),
              st.sampled_from(["tick", "dtmf", "goodbye", "call_limit", "settings"])),
    st.builds(
        lambda picks, ids, side: request(*[
            fc(f"f{i}", FUNCTIONS[p][0], FUNCTIONS[p][1], client_side=side)
            for p, i in zip(picks, ids, strict=False)
        ]),
        st.lists(st.integers(0, len(FUNCTIONS) - 1), min_size=1, max_size=3),
        st.lists(st.integers(1, 8), min_size=3, max_size=3),
        st.booleans(),
    ),
    st.builds(lambda i: agent.FunctionCallCancelled(
        functions=[agent.CancelledFunction(id=f"f{i}", name="x")]), st.integers(1, 8)),
    st.just(agent.ConversationText(role="user", content="hello")),
    st.just(twilio.UnknownTwilioEvent(event="x", raw=b'{"event":"x"}')),
    st.just(call.TwilioMalformed(reason="bad")),
    st.just(agent.UnknownAgentMessage(type="New", raw=b'{"type":"New"}')),
    st.just(agent.AgentWarning(code="W", description="w")),
    st.just("RESULT"),  # the store answers the oldest request in flight
)
ending_event = st.sampled_from([
    twilio.Stop(stream_sid=SID),
    call.CallerHungUp(),
    call.AgentLost(reason="gone"),
    agent.AgentError(code="E", description="e"),
])


def store_answer(effect: model.EffectRequest, ok: bool) -> model.EffectResult:
    if not ok:
        return model.EffectFailed(request_id=effect.request_id, reason="store down")
    if isinstance(effect, model.CommitOrder):
        order = model.Order(
            order_number="1234", status=model.OrderStatus.RECEIVED, phone=effect.draft.phone,
            items=effect.draft.items, total_cents=effect.draft.total_cents,
            created_at="2026-11-25T10:00:00Z",
        )
        return model.OrderCommitted(request_id=effect.request_id, order=order)
    return model.OrdersFound(request_id=effect.request_id, orders=())


@settings(max_examples=150, deadline=None)
@given(
    profile=st.sampled_from(list(agent.AudioProfile)),
    agent_first=st.booleans(),
    events=st.lists(peer_event, max_size=60),
    store_ok=st.booleans(),
    end=st.one_of(st.none(), ending_event),
)
def test_any_interleaving_keeps_the_invariants(
    profile: agent.AudioProfile,
    agent_first: bool,
    events: list[Any],
    store_ok: bool,
    end: call.CallEvent | None,
) -> None:
    session = CallSession(build_config(profile))
    opening: list[call.CallEvent] = (
        [call.AgentConnected(), start()] if agent_first else [start(), call.AgentConnected()]
    )
    answered: list[str] = []
    cancelled: set[str] = set()
    in_flight: list[model.EffectRequest] = []
    ends = 0
    for event in [*opening, *events, *([end] if end is not None else [])]:
        if event == "RESULT":
            if not in_flight:
                continue
            event = store_answer(in_flight.pop(0), store_ok)
        if session.state is CallState.CLOSED:
            try:
                session.handle(event)
            except LocalProtocolError:
                continue
            raise AssertionError("a closed session accepted input")
        if isinstance(event, agent.FunctionCallCancelled):
            cancelled.update(f.id for f in event.functions if f.id not in answered)
        actions = session.handle(event)
        for action in actions:
            match action:
                case call.SendToAgent(text=text):
                    message = agent.decode_client(text)
                    if isinstance(message, agent.FunctionCallResponse):
                        assert message.id not in answered, "answered twice"
                        assert message.id not in cancelled, "answered a cancelled call"
                        assert "ok" in json.loads(message.content)
                        answered.append(message.id)
                case call.SendToTwilio(text=text):
                    frame = twilio.decode_outbound(text)
                    assert frame.stream_sid == SID
                    if isinstance(frame, twilio.SendMedia):
                        assert 0 < len(frame.payload) <= 800
                        assert len(frame.payload) % 160 == 0
                case call.RequestEffect(effect=effect):
                    in_flight.append(effect)
                case call.EndCall():
                    ends += 1
    assert ends <= 1
    assert (ends == 1) == (session.state is CallState.CLOSED)
    if end is not None:
        assert session.state is CallState.CLOSED
