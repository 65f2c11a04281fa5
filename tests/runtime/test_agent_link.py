"""The agent link: auth header, failures as AgentUnreachable/AgentClosed, bounded close,
and the BOBA_THINK_MODEL start check (CONTRACT §2, §5)."""

from __future__ import annotations

import json
from functools import partial

import pytest
import trio
import trio_websocket

from boba_runtime.call.agent_link import (
    DEEPGRAM_AGENT_URL,
    AgentClosed,
    AgentUnreachable,
    ThinkModelUnavailable,
    check_think_model,
    local_agent_url,
    open_agent_link,
    think_models_url,
)
from tests.fakes.fake_agent import FakeAgentSession, fake_agent_server

SETTINGS = {
    "type": "Settings",
    "audio": {
        "input": {"encoding": "mulaw", "sample_rate": 8000},
        "output": {"encoding": "mulaw", "sample_rate": 8000, "container": "none"},
    },
    "agent": {
        "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
        "think": {"provider": {"type": "google", "model": "gemini-3.5-flash"}, "prompt": "Hi."},
        "speak": {"provider": {"type": "deepgram", "model": "aura-2-odysseus-en"}},
    },
}


async def test_key_is_sent_as_token_header_and_frames_flow() -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.send_audio(0.1)
        await agent.closed.wait()

    async with fake_agent_server(script) as server:
        async with open_agent_link(
            server.url, api_key="dg-secret", max_message_bytes=65536
        ) as link:
            assert json.loads(await link.receive()) == {
                "type": "Welcome",
                "request_id": "fake-request-id",
            }
            await link.send(json.dumps(SETTINGS))
            assert json.loads(await link.receive()) == {"type": "SettingsApplied"}
            audio = await link.receive()
            assert isinstance(audio, bytes) and len(audio) == 800
            await link.send(b"\xff" * 320)
        session = server.sessions[0]
        await session.wait_closed(timeout=3)
        assert session.headers["authorization"] == "Token dg-secret"
        assert session.audio_bytes == 320
        assert session.protocol_errors == []


async def test_no_key_no_auth_header() -> None:
    async with fake_agent_server() as server:
        async with open_agent_link(server.url, api_key=None, max_message_bytes=65536) as link:
            await link.receive()
            await link.send(json.dumps(SETTINGS))
            await link.receive()
        assert "authorization" not in server.sessions[0].headers


async def test_refused_connection_is_unreachable() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AgentUnreachable, match="cannot reach the agent"):
        async with open_agent_link(
            f"ws://127.0.0.1:{port}/agent", api_key=None, max_message_bytes=65536
        ):
            pass


async def test_rejected_handshake_names_the_key() -> None:
    async with fake_agent_server() as server:
        server.reject_with = 401
        with pytest.raises(AgentUnreachable, match=r"HTTP 401.*DEEPGRAM_API_KEY"):
            async with open_agent_link(server.url, api_key="wrong", max_message_bytes=65536):
                pass


async def test_connect_timeout() -> None:
    # A TCP server that accepts and never answers the WebSocket handshake.
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        started = trio.current_time()
        with pytest.raises(AgentUnreachable, match=r"did not answer within 0\.3 s"):
            async with open_agent_link(
                f"ws://127.0.0.1:{port}/",
                api_key=None,
                max_message_bytes=65536,
                connect_timeout=0.3,
            ):
                pass
        assert trio.current_time() - started < 1.0
        nursery.cancel_scope.cancel()


async def test_agent_dropping_raises_agent_closed() -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.drop()

    async with (
        fake_agent_server(script) as server,
        open_agent_link(server.url, api_key=None, max_message_bytes=65536) as link,
    ):
        await link.receive()
        await link.send(json.dumps(SETTINGS))
        with pytest.raises(AgentClosed, match="code 1011"):
            while True:
                await link.receive()


async def test_close_is_bounded_even_if_the_agent_never_answers_the_close() -> None:
    # A WebSocket server that accepts and then stops reading: our close cannot complete.
    async def deaf(request: trio_websocket.WebSocketRequest) -> None:
        await request.accept()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(trio_websocket.serve_websocket, deaf, "127.0.0.1", 0, None)
        )
        url = f"ws://127.0.0.1:{server.port}/"
        with trio.CancelScope() as scope:
            async with open_agent_link(
                url, api_key=None, max_message_bytes=65536, close_timeout=0.5
            ):
                started = trio.current_time()
                scope.cancel()  # a hang-up: the call is cancelled while the link is open
        assert trio.current_time() - started < 1.5
        nursery.cancel_scope.cancel()


async def test_oversized_agent_message_closes_the_link() -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.ws.send_message(b"\x00" * 5000)
        await agent.closed.wait()

    async with (
        fake_agent_server(script, greeting_seconds=0) as server,
        open_agent_link(server.url, api_key=None, max_message_bytes=4096) as link,
    ):
        await link.receive()
        await link.send(json.dumps(SETTINGS))
        with pytest.raises(AgentClosed, match="1009"):
            while True:
                await link.receive()


def test_local_agent_url() -> None:
    assert local_agent_url("0.0.0.0", 8000) == "ws://127.0.0.1:8000/agent/local"
    assert local_agent_url("127.0.0.1", 9000, tls=True) == "wss://127.0.0.1:9000/agent/local"
    assert local_agent_url("::1", 8000) == "ws://[::1]:8000/agent/local"


def test_think_models_url() -> None:
    assert think_models_url(DEEPGRAM_AGENT_URL) == (
        "https://agent.deepgram.com/v1/agent/settings/think/models"
    )


MODELS = [
    {"id": "gpt-4o-mini", "name": "GPT-4o mini", "provider": "open_ai"},
    {"id": "gemini-3.5-flash", "name": "Gemini 3.5 Flash", "provider": "google"},
    {"id": "gemini-3.5-pro", "name": "Gemini 3.5 Pro", "provider": "google"},
]


def fetch_returning(models: list[dict[str, object]], seen: list[tuple[str, str]]):
    def fetch(url: str, key: str, timeout: float) -> list[dict[str, object]]:
        seen.append((url, key))
        return models

    return fetch


async def test_think_model_offered_passes() -> None:
    seen: list[tuple[str, str]] = []
    result = await check_think_model(
        agent_url=DEEPGRAM_AGENT_URL,
        api_key="k",
        provider="google",
        model="gemini-3.5-flash",
        fetch=fetch_returning(MODELS, seen),
    )
    assert result is None
    assert seen == [("https://agent.deepgram.com/v1/agent/settings/think/models", "k")]


async def test_think_model_not_offered_names_the_setting() -> None:
    with pytest.raises(ThinkModelUnavailable) as info:
        await check_think_model(
            agent_url=DEEPGRAM_AGENT_URL,
            api_key="k",
            provider="google",
            model="gemini-2.5-flash",
            fetch=fetch_returning(MODELS, []),
        )
    message = str(info.value)
    assert message.startswith("BOBA_THINK_MODEL:")
    assert "gemini-2.5-flash" in message and "gemini-3.5-pro" in message
    # The right model id under another provider does not count.
    with pytest.raises(ThinkModelUnavailable):
        await check_think_model(
            agent_url=DEEPGRAM_AGENT_URL,
            api_key="k",
            provider="anthropic",
            model="gpt-4o-mini",
            fetch=fetch_returning(MODELS, []),
        )


async def test_think_check_skipped_without_key_or_for_other_agents() -> None:
    seen: list[tuple[str, str]] = []
    fetch = fetch_returning([], seen)
    assert (
        await check_think_model(
            agent_url=DEEPGRAM_AGENT_URL, api_key=None, provider="google", model="x", fetch=fetch
        )
        is None
    )
    assert (
        await check_think_model(
            agent_url="ws://127.0.0.1:9/agent",
            api_key="k",
            provider="google",
            model="x",
            fetch=fetch,
        )
        is None
    )
    assert (
        await check_think_model(
            agent_url="local", api_key="k", provider="google", model="x", fetch=fetch
        )
        is None
    )
    assert seen == []


async def test_think_check_warns_when_the_list_cannot_be_fetched() -> None:
    def broken(url: str, key: str, timeout: float) -> list[dict[str, object]]:
        raise OSError("network unreachable")

    warning = await check_think_model(
        agent_url=DEEPGRAM_AGENT_URL, api_key="k", provider="google", model="x", fetch=broken
    )
    assert warning is not None and "BOBA_THINK_MODEL" in warning


async def test_think_check_gives_up_after_its_time_limit() -> None:
    import time

    def slow(url: str, key: str, timeout: float) -> list[dict[str, object]]:
        time.sleep(0.5)
        return MODELS

    started = trio.current_time()
    warning = await check_think_model(
        agent_url=DEEPGRAM_AGENT_URL,
        api_key="k",
        provider="google",
        model="x",
        fetch=slow,
        timeout=0.1,
    )
    assert warning is not None and "did not answer within 0.1 s" in warning
    assert trio.current_time() - started < 0.4
