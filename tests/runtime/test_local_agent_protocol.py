"""The local agent's protocol end (sans-IO) and the core's `CallerText` input: the two
halves that let typed words reach the dialogue through the very same bridge code."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from boba_proto import agent, recording, twilio
from boba_proto.call import (
    AgentConnected,
    CallerText,
    CallSession,
    CallState,
    SendToAgent,
)
from boba_proto.menu import build_prompt, function_specs
from boba_runtime.agent.server import LocalAgentSession, tone_cue
from tests.golden.make_sessions import build_config
from tests.protocol.dialogue_harness import builtin_menu

MENU = builtin_menu()


def settings(profile: agent.AudioProfile = agent.AudioProfile.LINEAR16,
             greeting: str = "Hi! What would you like?") -> agent.AgentSettings:
    return agent.build_settings(
        profile=profile, listen_model="nova-3", think_provider="google",
        think_model="gemini-3.5-flash", speak_model="aura-2-odysseus-en",
        prompt=build_prompt(MENU), functions=function_specs(MENU), greeting=greeting,
    )


def decoded(frames: list[str | bytes]) -> list[Any]:
    return [f if isinstance(f, bytes) else agent.decode(f) for f in frames]


def types(frames: list[str | bytes]) -> list[str]:
    return ["audio" if isinstance(f, bytes) else type(agent.decode(f)).__name__ for f in frames]


def configured(profile: agent.AudioProfile = agent.AudioProfile.LINEAR16) -> LocalAgentSession:
    session = LocalAgentSession(MENU, request_id="req-1")
    session.on_text(agent.encode(settings(profile)))
    return session


# --- the agent end ---------------------------------------------------------------------------


def test_welcome_then_settings_applied_then_the_greeting_spoken_in_the_declared_format() -> None:
    session = LocalAgentSession(MENU, request_id="req-1")
    assert decoded(session.start()) == [agent.Welcome(request_id="req-1")]
    out = session.on_text(agent.encode(settings()))
    assert types(out)[:3] == ["SettingsApplied", "ConversationText", "AgentStartedSpeaking"]
    assert types(out)[-1] == "AgentAudioDone"
    assert decoded(out)[1] == agent.ConversationText(role="assistant",
                                                     content="Hi! What would you like?")
    cue = b"".join(f for f in out if isinstance(f, bytes))
    assert len(cue) == int(24000 * 0.3) * 2  # linear16 24 kHz, 300 ms
    assert all(len(f) <= 4800 for f in out if isinstance(f, bytes))  # 100 ms frames


@pytest.mark.parametrize(("profile", "width", "rate"), [
    (agent.AudioProfile.LINEAR16, 2, 24000), (agent.AudioProfile.MULAW, 1, 8000),
])
def test_the_cue_is_audible_and_in_the_declared_encoding(
    profile: agent.AudioProfile, width: int, rate: int
) -> None:
    cue = tone_cue(profile.output_encoding, profile.output_rate)
    assert len(cue) == int(rate * 0.3) * width
    if width == 2:
        pcm = np.frombuffer(cue, dtype="<i2")
        assert 3000 < np.abs(pcm).max() < 32767 * 0.5  # a soft chime, not silence
        assert abs(int(pcm[0])) < 200 and abs(int(pcm[-1])) < 200  # faded: no click
    else:
        assert len(set(cue)) > 20  # a tone, not μ-law silence


def test_a_turn_calls_functions_one_at_a_time_and_answers_once_with_a_cue() -> None:
    session = configured()
    out = session.on_text(agent.encode(agent.InjectUserMessage(
        content="can I get a taro milk tea with boba")))
    assert types(out) == ["ConversationText", "FunctionCallRequest"]
    assert decoded(out)[0] == agent.ConversationText(
        role="user", content="can I get a taro milk tea with boba")
    request = decoded(out)[1]
    call = request.functions[0]
    assert (call.name, call.client_side) == ("add_to_cart", True)
    assert json.loads(call.arguments) == {"flavor": "taro milk tea", "toppings": ["boba"]}
    # Words arriving while the function runs wait for the turn to finish.
    held = session.on_text(agent.encode(agent.InjectUserMessage(content="yes")))
    assert types(held) == ["ConversationText"]
    staged = {"ok": True, "staged": True, "pending_item": {
        "flavor": "taro milk tea", "toppings": ["boba"], "addons": [], "sweetness": "50%",
        "ice": "regular ice", "price": 6.25}}
    out = session.on_text(agent.encode(agent.FunctionCallResponse(
        id=call.id, name=call.name, content=json.dumps(staged))))
    kinds = types(out)
    assert kinds[0] == "ConversationText" and kinds[-1] == "FunctionCallRequest"
    assert "AgentAudioDone" in kinds and "audio" in kinds
    assert "6.25" in decoded(out)[0].content
    assert json.loads(decoded(out)[-1].functions[0].arguments) == {}
    assert decoded(out)[-1].functions[0].name == "confirm_pending_to_cart"


def test_responses_for_other_ids_are_ignored() -> None:
    session = configured()
    out = session.on_text(agent.encode(agent.FunctionCallResponse(
        id="nope", name="get_cart", content="{}")))
    assert out == []


@pytest.mark.parametrize("frame", [
    "not json", '{"type": "InjectUserMessage"}', '{"type": "KeepAlive"}',
])
def test_before_settings_or_malformed_is_an_error_and_the_session_closes(frame: str) -> None:
    session = LocalAgentSession(MENU)
    out = decoded(session.on_text(frame))
    assert len(out) == 1 and isinstance(out[0], agent.AgentError)
    assert session.closed
    assert session.on_text(agent.encode(settings())) == []


def test_an_output_format_it_cannot_speak_is_refused_in_settings() -> None:
    raw = json.loads(agent.encode(settings()))
    raw["audio"]["output"]["encoding"] = "opus"
    out = decoded(LocalAgentSession(MENU).on_text(json.dumps(raw)))
    assert isinstance(out[0], agent.AgentError) and out[0].code == "INVALID_SETTINGS"


def test_inject_agent_message_is_spoken_and_prompt_updates_are_acknowledged() -> None:
    session = configured()
    out = session.on_text(agent.encode(agent.InjectAgentMessage(message="Time is up, bye!")))
    assert decoded(out)[0] == agent.ConversationText(role="assistant", content="Time is up, bye!")
    assert types(out)[-1] == "AgentAudioDone"
    assert types(session.on_text(agent.encode(agent.UpdatePrompt(prompt="x")))) == [
        "PromptUpdated"]
    assert session.on_text(agent.encode(agent.KeepAlive())) == []
    assert session.on_audio(b"\x00" * 640) == []


# --- CallerText in the core ------------------------------------------------------------------


def start_event() -> twilio.Start:
    return twilio.Start(
        stream_sid="MZ1", sequence_number="1",
        start=twilio.StartInfo(
            stream_sid="MZ1", call_sid="CA1",
            media_format=twilio.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000,
                                            channels=1),
            custom_parameters={}),
    )


def test_caller_text_waits_for_settings_applied_then_goes_to_the_agent_as_inject() -> None:
    session = CallSession(build_config(agent.AudioProfile.LINEAR16))
    assert session.handle(CallerText(text="hi")) == []  # before start: counted, skipped
    assert session.malformed_count == 1
    session.handle(start_event())
    session.handle(AgentConnected())
    assert session.handle(CallerText(text="a taro milk tea")) == []
    actions = session.handle(agent.SettingsApplied())
    injects = [a for a in actions if isinstance(a, SendToAgent)]
    assert [agent.decode_client(a.text) for a in injects] == [
        agent.InjectUserMessage(content="a taro milk tea")]
    assert session.state is CallState.CONVERSING
    actions = session.handle(CallerText(text="yes"))
    assert actions == [SendToAgent(text=agent.encode(agent.InjectUserMessage(content="yes")))]
    assert session.handle(CallerText(text="   ")) == []


def test_caller_text_round_trips_through_a_recording() -> None:
    config = build_config(agent.AudioProfile.LINEAR16)
    header = recording.encode_header(config, started_at="2026-11-25T10:00:00Z")
    line = recording.encode_input(1.5, CallerText(text="four one five"))
    assert isinstance(recording.decode_line(header, 1), recording.Header)
    decoded_line = recording.decode_line(line, 2)
    assert isinstance(decoded_line, recording.InputLine)
    assert decoded_line.event == CallerText(text="four one five")


def test_settings_without_the_shops_functions_are_refused() -> None:
    raw = json.loads(agent.encode(settings()))
    raw["agent"]["think"]["functions"] = raw["agent"]["think"]["functions"][:3]
    out = decoded(LocalAgentSession(MENU).on_text(json.dumps(raw)))
    assert isinstance(out[0], agent.AgentError) and out[0].code == "INVALID_SETTINGS"
    assert "checkout_order" in out[0].description


def test_a_bug_in_the_dialogue_ends_the_session_with_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = configured()

    def broken(text: str) -> list[object]:
        raise ZeroDivisionError(text)

    monkeypatch.setattr(session.dialogue, "on_user_text", broken)
    out = decoded(session.on_text(agent.encode(agent.InjectUserMessage(content="hi"))))
    assert isinstance(out[-1], agent.AgentError) and out[-1].code == "INTERNAL_SERVER_ERROR"
    assert session.closed
