"""Issue #13 in the core: a dead stream ends (point 13), texts stay in the shop's
countries (point 14). Time is the core's virtual clock: timer firings are inputs."""

from __future__ import annotations

import dataclasses
import json

from boba_proto import agent, ordering, tools
from boba_proto.call import (
    AgentConnected,
    CallSession,
    CallState,
    EndCall,
    EndReason,
    TimerFired,
    handle_media_batch,
)
from tests.golden.make_sessions import build_config
from tests.protocol.test_call import MULAW, media, start


def conversing(**config: object) -> CallSession:
    session = CallSession(dataclasses.replace(build_config(MULAW), **config))  # type: ignore[arg-type]
    session.handle(start())
    session.handle(AgentConnected())
    session.handle(agent.SettingsApplied())
    return session


def ticks(session: CallSession, count: int) -> list[object]:
    actions: list[object] = []
    for _ in range(count):
        actions += session.handle(TimerFired(name="tick"))
        if session.state is CallState.CLOSED:
            break
    return actions


def test_a_stream_with_no_twilio_frame_for_15_s_is_ended() -> None:
    session = conversing()
    assert EndCall(reason=EndReason.PHONE_SILENT) not in ticks(session, 15)
    assert session.state is CallState.CONVERSING  # 15 ticks: at most 15 s of silence
    assert ticks(session, 1) == [EndCall(reason=EndReason.PHONE_SILENT)]
    assert session.state is CallState.CLOSED
    assert not EndReason.PHONE_SILENT.apologise  # nobody is there to hear one


def test_every_twilio_frame_keeps_the_stream_alive() -> None:
    session = conversing()
    for n in range(40):  # 40 s of calm conversation, media now and then
        ticks(session, 10)
        session.handle(media(b"\xff" * 160, chunk=n + 1))
    assert session.state is CallState.CONVERSING


def test_media_handled_in_a_batch_keeps_the_stream_alive_too() -> None:
    """The batched caller-audio path (`handle_media_batch`) is a frame from the phone as
    much as `handle(media)` is: it once ended live calls as PHONE_SILENT after 15 s."""
    session = conversing()
    for n in range(40):
        ticks(session, 10)
        handle_media_batch([(session, media(b"\xff" * 160, chunk=n + 1))])
    assert session.state is CallState.CONVERSING


def test_a_softphone_may_stay_quiet() -> None:
    session = conversing(phone_silence_seconds=None)
    ticks(session, 100)
    assert session.state is CallState.CONVERSING


def test_a_shorter_silence_limit_is_a_setting_of_the_core() -> None:
    session = conversing(phone_silence_seconds=2.0)
    assert ticks(session, 3)[-1] == EndCall(reason=EndReason.PHONE_SILENT)


def test_save_phone_number_refuses_a_country_the_shop_does_not_text() -> None:
    state = tools.initial_state("+14155550100", sms_regions=("US",))
    arguments = json.dumps({"phone": "+44 20 7946 0958"})
    state, outcome = tools.dispatch(build_config(MULAW).menu, state, "save_phone_number",
                                    arguments, request_id="f1")
    assert isinstance(outcome, tools.ToolReply)
    assert outcome.result == {"ok": False, "error": (
        "Sorry, we can only text phone numbers in the US. Is there a number there we can "
        "text when your order is ready?")}
    assert state.cart.phone is None
    ok = json.dumps({"phone": "(415) 555-2671"})
    state, outcome = tools.dispatch(build_config(MULAW).menu, state, "save_phone_number", ok,
                                    request_id="f2")
    assert isinstance(outcome, tools.ToolReply) and outcome.result["ok"] is True


def test_checkout_with_a_phone_abroad_is_refused_too() -> None:
    menu = build_config(MULAW).menu
    state = tools.initial_state(None, sms_regions=("US", "CA"))
    state, _ = tools.dispatch(menu, state, "add_to_cart",
                              json.dumps({"flavor": "taro milk tea"}), request_id="f1")
    state, outcome = tools.dispatch(menu, state, "checkout_order",
                                    json.dumps({"phone": "+33 1 42 68 53 00"}), request_id="f2")
    assert isinstance(outcome, tools.ToolReply)
    assert "the US or Canada" in str(outcome.result["error"])


def test_the_call_carries_the_countries_from_its_config() -> None:
    session = conversing(sms_countries=("GB",))
    assert session.tool_state.sms_regions == ("GB",)
    assert ordering.sms_region_problem("+442079460958", ("GB",)) is None
    assert ordering.sms_region_problem("+14155552671", ()) is None  # empty: anywhere
