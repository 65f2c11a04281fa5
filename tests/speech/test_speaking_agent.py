"""The local agent with speech, at the protocol level (issue 19): it speaks in the format
`Settings` declared, stops speaking when the caller barges in (`UserStartedSpeaking` at
once), hears an order, says so when it did not understand, and without the engines the
server says once that the agent works by text."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import trio

from boba_proto import agent
from boba_proto.menu import build_prompt, function_specs
from tests.protocol.dialogue_harness import builtin_menu

speech = pytest.importorskip("boba_runtime.agent.speech")
pytest.importorskip("pocketsphinx")
pytest.importorskip("espeakng_loader")
pytestmark = [pytest.mark.speech]


class MemorySocket:
    """The bridge's end of the agent connection, in memory."""

    def __init__(self) -> None:
        self.to_agent_send, self.to_agent = trio.open_memory_channel[str | bytes](1000)
        self.from_agent_send, self.from_agent = trio.open_memory_channel[str | bytes](10000)

    async def receive(self) -> str | bytes:
        return await self.to_agent.receive()

    async def send(self, data: str | bytes) -> None:
        await self.from_agent_send.send(data)


def settings(profile: agent.AudioProfile) -> str:
    menu = builtin_menu()
    return agent.encode(agent.build_settings(
        profile=profile, listen_model="nova-3", think_provider="google",
        think_model="gemini-3.5-flash", speak_model="aura-2-odysseus-en",
        prompt=build_prompt(menu), functions=function_specs(menu),
        greeting="Hello! What would you like to order today?",
    ))


async def next_message(socket: MemorySocket, kind: type, audio: list[bytes]) -> object:
    with trio.fail_after(30):
        while True:
            frame = await socket.from_agent.receive()
            if isinstance(frame, bytes):
                audio.append(frame)
                continue
            message = agent.decode(frame)
            if isinstance(message, kind):
                return message


@pytest.fixture(scope="module")
def engines() -> object:
    return speech.SpeechEngines(builtin_menu())


async def test_it_speaks_in_the_declared_format_and_stops_when_the_caller_barges_in(
    engines: object,
) -> None:
    from boba_runtime.agent.speech.agent import serve_speaking_agent
    from boba_runtime.agent.speech.caller import CALLER_VOICES, phone_audio

    socket = MemorySocket()
    caller = phone_audio(speech.synthesizer(), "can I get a black milk tea with boba please",
                         CALLER_VOICES[0])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_speaking_agent, socket, builtin_menu(), engines)
        audio: list[bytes] = []
        await next_message(socket, agent.Welcome, audio)
        await socket.to_agent_send.send(settings(agent.AudioProfile.MULAW))
        await next_message(socket, agent.AgentStartedSpeaking, audio)
        # The greeting is ~3 s of speech, sent at most 0.5 s ahead of real time: after
        # 0.5 s the caller starts talking over it.
        await trio.sleep(0.5)
        for at in range(0, len(caller), 320):  # 40 ms messages, as the bridge sends them
            await socket.to_agent_send.send(caller[at : at + 320])
            await trio.sleep(0.04)
        started = await next_message(socket, agent.UserStartedSpeaking, audio)
        assert started == agent.UserStartedSpeaking()
        greeting_audio = sum(len(chunk) for chunk in audio)
        assert all(len(chunk) == 800 for chunk in audio[:-1])  # 100 ms of μ-law at 8 kHz
        assert greeting_audio < 8000 * 2.5  # cut short: not the whole greeting
        for _ in range(40):  # 1.6 s of silence ends the utterance
            await socket.to_agent_send.send(b"\xff" * 320)
            await trio.sleep(0.04)
        heard = await next_message(socket, agent.ConversationText, audio)
        assert heard == agent.ConversationText(
            role="user", content="can i get a black milk tea with boba please")
        request = await next_message(socket, agent.FunctionCallRequest, audio)
        assert isinstance(request, agent.FunctionCallRequest)
        assert request.functions[0].name == "add_to_cart"
        nursery.cancel_scope.cancel()


async def test_noise_is_answered_with_did_not_catch_that_in_linear16(engines: object) -> None:
    from boba_runtime.agent.speech.agent import NOT_UNDERSTOOD, serve_speaking_agent

    socket = MemorySocket()
    rng = np.random.default_rng(7)
    hiss = np.round(rng.normal(0, 6000, 48000 * 1)).astype("<i2").tobytes()  # 1 s at 48 kHz
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_speaking_agent, socket, builtin_menu(), engines)
        audio: list[bytes] = []
        await socket.to_agent_send.send(settings(agent.AudioProfile.LINEAR16))
        await next_message(socket, agent.AgentAudioDone, audio)  # the greeting, in full
        assert all(len(chunk) == 4800 for chunk in audio[:-1])  # 100 ms of linear16 at 24 kHz
        assert sum(len(chunk) for chunk in audio) > 24000 * 2 * 2  # seconds of speech
        silence = bytes(3840)  # 40 ms at 48 kHz
        for at in range(0, len(hiss), 3840):
            await socket.to_agent_send.send(hiss[at : at + 3840])
        for _ in range(40):
            await socket.to_agent_send.send(silence)
        said = await next_message(socket, agent.ConversationText, audio)
        assert said == agent.ConversationText(role="assistant", content=NOT_UNDERSTOOD)
        nursery.cancel_scope.cancel()


def test_without_the_engines_the_agent_says_once_it_works_by_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def missing(menu: object) -> None:
        raise speech.SpeechUnavailable("PocketSphinx is not installed")

    monkeypatch.setattr(speech, "SpeechEngines", missing)
    with caplog.at_level(logging.INFO, logger="boba_runtime.agent.speech"):
        assert speech.load_speech(builtin_menu()) is None
    assert [r.getMessage() for r in caplog.records] == [
        "local agent: text only, no offline speech (PocketSphinx is not installed)"]
