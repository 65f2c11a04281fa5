"""Agent links opened while `/voice` is answered (DESIGN §5): taken by their call within
the keep time, closed unused after it, and a failed pre-open falls back to a fresh connect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from boba_runtime.call.agent_link import AgentConnection, AgentUnreachable, websocket_connector
from boba_runtime.call.preopen import PreopenedAgents
from tests.fakes.fake_agent import FakeAgentSession, fake_agent_server
from tests.runtime.test_agent_link import SETTINGS

SID = "CA" + "0" * 32


async def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)


async def test_the_call_takes_its_pre_opened_link_and_it_closes_after_the_call() -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.closed.wait()

    async with fake_agent_server(script) as server, trio.open_nursery() as nursery:
        connect = websocket_connector(server.url, api_key=None, max_message_bytes=65536)
        agents = PreopenedAgents(keep_seconds=5.0)
        nursery.start_soon(agents.hold, SID, connect)
        await _wait_for(lambda: len(server.sessions) == 1)  # opened before any stream

        def never() -> object:
            raise AssertionError("the pre-opened link should have been used")

        async with agents.take(SID, never)() as link:  # type: ignore[arg-type]
            assert json.loads(await link.receive())["type"] == "Welcome"
            await link.send(json.dumps(SETTINGS))
            assert json.loads(await link.receive()) == {"type": "SettingsApplied"}
        await server.sessions[0].wait_closed(timeout=3)
        assert (agents.used, agents.expired, agents.failed, len(agents)) == (1, 0, 0, 0)
        assert len(server.sessions) == 1


async def test_an_unclaimed_link_is_closed_after_the_keep_time() -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.closed.wait()

    async with fake_agent_server(script) as server, trio.open_nursery() as nursery:
        connect = websocket_connector(server.url, api_key=None, max_message_bytes=65536)
        agents = PreopenedAgents(keep_seconds=0.3)
        nursery.start_soon(agents.hold, SID, connect)
        await _wait_for(lambda: len(server.sessions) == 1)
        started = trio.current_time()
        await server.sessions[0].wait_closed(timeout=3)
        assert trio.current_time() - started < 2.5
        assert server.sessions[0].settings is None
        assert (agents.used, agents.expired, len(agents)) == (0, 1, 0)
        assert agents.take(SID, connect) is connect  # too late: the call connects itself


async def test_a_failed_pre_open_falls_back_to_a_fresh_connection() -> None:
    give_up = trio.Event()

    @asynccontextmanager
    async def slow_then_refused() -> AsyncIterator[AgentConnection]:
        await give_up.wait()  # Deepgram slow to answer, then refusing
        raise AgentUnreachable("agent refused the connection: HTTP 503")
        yield  # pragma: no cover

    async def script(agent: FakeAgentSession) -> None:
        await agent.closed.wait()

    async with fake_agent_server(script) as server, trio.open_nursery() as nursery:
        fallback = websocket_connector(server.url, api_key=None, max_message_bytes=65536)
        agents = PreopenedAgents(keep_seconds=5.0)
        nursery.start_soon(agents.hold, SID, slow_then_refused)
        await trio.testing.wait_all_tasks_blocked()  # `hold` is connecting (slowly)
        connector = agents.take(SID, fallback)  # the stream came first
        assert connector is not fallback
        give_up.set()
        async with connector() as link:
            assert json.loads(await link.receive())["type"] == "Welcome"
        assert len(server.sessions) == 1
        assert (agents.used, agents.failed) == (0, 1)
