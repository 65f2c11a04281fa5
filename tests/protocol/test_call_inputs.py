"""The protocol decisions that used to live in the runtime, now inputs of `CallSession`:
waiting for the agent's `Welcome` (and giving up on it), a stuck phone, and the agent
settings a runtime must refuse to start with (issue 12)."""

from __future__ import annotations

import dataclasses

import pytest

from boba_proto import agent, call, menu, twilio
from boba_proto.call import (
    AgentConnected,
    CallSession,
    CallState,
    CancelTimer,
    EndCall,
    EndReason,
    PhoneStuck,
    SendToAgent,
    StartTimer,
    TimerFired,
)
from boba_proto.errors import InvalidAgentSetting, LocalProtocolError
from tests.golden.make_sessions import build_config

SID = "MZ0002"
WELCOME = agent.Welcome(request_id="req-1")


def start() -> twilio.Start:
    return twilio.Start(
        stream_sid=SID,
        sequence_number="1",
        start=twilio.StartInfo(
            stream_sid=SID,
            call_sid="CA" + SID,
            media_format=twilio.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
            custom_parameters={"caller": "+14155550123"},
        ),
    )


def waiting_session(seconds: float = call.WELCOME_TIMEOUT_SECONDS) -> CallSession:
    config = dataclasses.replace(
        build_config(agent.AudioProfile.MULAW), welcome_timeout_seconds=seconds
    )
    session = CallSession(config)
    session.handle(start())
    return session


def settings_sent(actions: list[call.Action]) -> bool:
    return any(
        isinstance(a, SendToAgent) and a.text.startswith('{"type":"Settings"') for a in actions
    )


def test_settings_wait_for_welcome() -> None:
    session = waiting_session()
    actions = session.handle(AgentConnected())
    assert actions == [StartTimer(name=call.TIMER_WELCOME, seconds=call.WELCOME_TIMEOUT_SECONDS)]
    assert session.state is CallState.CONNECTING_AGENT
    actions = session.handle(WELCOME)
    assert actions[0] == CancelTimer(name=call.TIMER_WELCOME)
    assert settings_sent(actions) and session.state is CallState.CONFIGURING
    assert session.handle(WELCOME) == []  # a second Welcome changes nothing


def test_settings_go_anyway_when_no_welcome_comes() -> None:
    session = waiting_session()
    session.handle(AgentConnected())
    other = session.handle(agent.AgentThinking(content="hmm"))  # not a greeting
    assert not settings_sent(other)
    actions = session.handle(TimerFired(name=call.TIMER_WELCOME))
    assert settings_sent(actions) and session.state is CallState.CONFIGURING
    assert session.handle(WELCOME) == []  # late: ignored


def test_welcome_before_start_is_remembered() -> None:
    config = dataclasses.replace(build_config(agent.AudioProfile.MULAW), welcome_timeout_seconds=5)
    session = CallSession(config)
    session.handle(AgentConnected())
    assert not settings_sent(session.handle(WELCOME))  # no start yet: nothing to configure
    assert settings_sent(session.handle(start()))


def test_without_a_welcome_timeout_settings_go_at_once_and_welcome_is_ignored() -> None:
    session = waiting_session(0.0)  # how the golden sessions were recorded
    assert settings_sent(session.handle(AgentConnected()))
    assert session.handle(WELCOME) == []


def test_a_stuck_phone_ends_the_call_with_its_own_reason_and_no_apology() -> None:
    session = waiting_session()
    session.handle(AgentConnected())
    session.handle(WELCOME)
    actions = session.handle(PhoneStuck(reason="the phone side is not reading its socket"))
    assert actions[-1] == EndCall(reason=EndReason.PHONE_STUCK)
    assert session.state is CallState.CLOSED
    assert not EndReason.PHONE_STUCK.apologise and EndReason.AGENT_FAILED.apologise


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"think_provider": "openai"}, "think_provider"),
        ({"listen_model": " "}, "listen_model"),
        ({"think_model": ""}, "think_model"),
        ({"speak_model": ""}, "speak_model"),
        (
            {"functions": [agent.FunctionSpec(name="f", description="", parameters={})]},
            "functions",
        ),
    ],
)
def test_refused_agent_settings_name_their_field(overrides: dict[str, object], field: str) -> None:
    the_menu = build_config(agent.AudioProfile.MULAW).menu
    arguments: dict[str, object] = {
        "profile": agent.AudioProfile.MULAW,
        "listen_model": "nova-3",
        "think_provider": "google",
        "think_model": "gemini-3.5-flash",
        "speak_model": "aura-2-odysseus-en",
        "prompt": menu.build_prompt(the_menu),
        "functions": menu.function_specs(the_menu),
        "greeting": "",
        **overrides,
    }
    with pytest.raises(InvalidAgentSetting) as info:
        agent.build_settings(**arguments)  # type: ignore[arg-type]
    assert info.value.field == field
    assert isinstance(info.value, LocalProtocolError)  # still our own (configuration) fault
