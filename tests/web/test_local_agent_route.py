"""`WS /agent/local` inside a real `boba serve`: the Deepgram protocol on loopback only,
and the very same bridge (`/twilio`, `run_call`) ordering through it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio
import trio_websocket

from boba_proto import agent
from boba_proto.menu import build_prompt, function_specs
from boba_runtime.agent.server import in_process_connector
from boba_web.app import agent_connector
from boba_web.local_agent_route import from_this_host
from tests.fakes.twilio_client import dial, make_call_sid
from tests.helpers.server import RunningServer, running_server, settings_for_test
from tests.protocol.dialogue_harness import builtin_menu


def agent_url(server: RunningServer) -> str:
    return server.base_url.replace("http://", "ws://") + "/agent/local"


def settings_frame(profile: agent.AudioProfile) -> str:
    menu = builtin_menu()
    return agent.encode(agent.build_settings(
        profile=profile, listen_model="nova-3", think_provider="google",
        think_model="gemini-3.5-flash", speak_model="aura-2-odysseus-en",
        prompt=build_prompt(menu), functions=function_specs(menu), greeting="Hello!",
    ))


async def test_it_speaks_the_voice_agent_protocol_over_a_websocket(
    boba_server: RunningServer,
) -> None:
    async with trio_websocket.open_websocket_url(agent_url(boba_server)) as ws:
        welcome = agent.decode(await ws.get_message())
        assert isinstance(welcome, agent.Welcome) and welcome.request_id
        await ws.send_message(settings_frame(agent.AudioProfile.MULAW))
        assert isinstance(agent.decode(await ws.get_message()), agent.SettingsApplied)
        greeting = agent.decode(await ws.get_message())
        assert greeting == agent.ConversationText(role="assistant", content="Hello!")
        frames = []
        while True:
            frame = await ws.get_message()
            if isinstance(frame, str) and isinstance(agent.decode(frame), agent.AgentAudioDone):
                break
            frames.append(frame)
        audio = b"".join(f for f in frames if isinstance(f, bytes))
        assert len(audio) == 2400  # 300 ms of μ-law at 8 kHz: the declared format
        await ws.send_message(agent.encode(agent.InjectUserMessage(content="black milk tea")))
        assert isinstance(agent.decode(await ws.get_message()), agent.ConversationText)
        request = agent.decode(await ws.get_message())
        assert isinstance(request, agent.FunctionCallRequest)
        assert request.functions[0].client_side
        assert json.loads(request.functions[0].arguments) == {"flavor": "black milk tea"}


async def test_a_proxied_request_is_refused(boba_server: RunningServer) -> None:
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(
            agent_url(boba_server), extra_headers=[(b"X-Forwarded-For", b"203.0.113.9")]
        ):
            pass
    assert refused.value.status_code == 403


def test_only_direct_loopback_peers_are_served() -> None:
    assert from_this_host({"client": ("127.0.0.1", 5000)}, {})
    assert from_this_host({"client": ("::1", 5000)}, {})
    assert not from_this_host({"client": ("192.168.1.20", 5000)}, {})
    assert not from_this_host({"client": ("203.0.113.9", 5000)}, {})
    assert not from_this_host({}, {})
    assert not from_this_host({"client": ("127.0.0.1", 5000)}, {"forwarded": "for=1.2.3.4"})


async def test_a_twilio_call_reaches_the_local_agent_through_the_same_bridge(
    tmp_path: Path,
) -> None:
    """No Deepgram key, no Twilio token, on loopback: the greeting plays to the caller,
    and keyed-in digits (DTMF -> InjectUserMessage) get an answer."""
    async with running_server(tmp_path / "shop") as server, httpx.AsyncClient() as client:
        assert server.settings.agent_url == "local"
        async with dial(client, server_url=server.base_url, public_url=server.base_url,
                        auth_token=None, call_sid=make_call_sid(1),
                        caller="+14155550142") as stream:
            with trio.fail_after(10):
                while not stream.played.marks_echoed:  # the greeting played
                    await trio.sleep(0.05)
            assert stream.played.media_bytes >= 2400
            for digit in "4155550142#":
                await stream.send_dtmf(digit)
            with trio.fail_after(10):
                while len(stream.played.marks_echoed) < 2:  # "I have 4 1 5, ..."
                    await trio.sleep(0.05)
            await stream.send_stop()
            with trio.fail_after(5):
                await stream.closed.wait()
        assert stream.played.errors == []


async def test_in_process_connection_carries_the_same_frames() -> None:
    async with in_process_connector(builtin_menu())() as link:
        assert isinstance(agent.decode(await link.receive()), agent.Welcome)
        await link.send(settings_frame(agent.AudioProfile.LINEAR16))
        assert isinstance(agent.decode(await link.receive()), agent.SettingsApplied)
        await link.send(b"\x00" * 1920)  # caller audio is accepted
        await link.send("{bad json")
        kinds = []
        with trio.fail_after(2):
            while True:
                try:
                    frame = await link.receive()
                except Exception as exc:  # AgentClosed after the Error
                    kinds.append(type(exc).__name__)
                    break
                kinds.append("audio" if isinstance(frame, bytes)
                             else type(agent.decode(frame)).__name__)
        assert kinds[-2:] == ["AgentError", "AgentClosed"]


async def test_serving_tls_the_bridge_reaches_the_local_agent_in_process(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not read here", encoding="utf-8")
    key.write_text("not read here", encoding="utf-8")
    settings = settings_for_test(tmp_path, {"BOBA_TLS_CERT": str(cert),
                                            "BOBA_TLS_KEY": str(key)})
    assert settings.agent_url == "local" and settings.tls_enabled
    connect = agent_connector(settings, {"server": ("127.0.0.1", 8443)}, builtin_menu())
    async with connect() as link:  # no socket: a wss:// to 127.0.0.1 would fail to verify
        assert isinstance(agent.decode(await link.receive()), agent.Welcome)
