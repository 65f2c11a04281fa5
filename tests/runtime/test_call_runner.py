"""`run_call` over in-memory phone and agent sides (no sockets): the transport-agnostic API
that `/phone/ws` reuses, store failures, our own bugs, refusals, and the send queue rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from boba_proto import twilio as tw
from boba_proto.call import Action, EndReason, Transcript
from boba_proto.model import Order, OrderDraft, OrderStatus
from boba_runtime.call.agent_link import AgentClosed, AgentConnection, AgentUnreachable
from boba_runtime.call.registry import CallOutcome, CallRegistry
from boba_runtime.call.runner import (
    CallDeps,
    CallReport,
    PhoneClosed,
    SendQueue,
    call_config_from_settings,
    run_call,
)
from boba_runtime.services import load_menu
from boba_runtime.store.order_store import StoreUnavailable
from tests.helpers.server import settings_for_test

SID = "CA" + "1" * 32
STREAM = "MZ" + "1" * 32


class MemoryPhone:
    """A phone side whose frames the test pushes and reads."""

    def __init__(self) -> None:
        self.inbound_send, self.inbound = trio.open_memory_channel[str | bytes](1000)
        self.sent: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.closed = trio.Event()

    async def receive(self) -> str | bytes:
        try:
            return await self.inbound.receive()
        except trio.EndOfChannel:
            raise PhoneClosed from None

    async def send(self, text: str) -> None:
        if self.closed.is_set():
            raise PhoneClosed
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_code = code
        self.closed.set()

    def push(self, frame: str | bytes) -> None:
        self.inbound_send.send_nowait(frame)

    def start(self, **params: str) -> None:
        self.push(tw.encode_event(tw.Connected(protocol="Call", version="1.0.0")))
        self.push(
            tw.encode_event(
                tw.Start(
                    stream_sid=STREAM,
                    sequence_number="1",
                    start=tw.StartInfo(
                        stream_sid=STREAM,
                        call_sid=SID,
                        media_format=tw.MediaFormat(
                            encoding="audio/x-mulaw", sample_rate=8000, channels=1
                        ),
                        custom_parameters={"caller": "+14155550199", **params},
                    ),
                )
            )
        )


class MemoryAgent:
    """An agent side: the test plays Deepgram through `to_bridge` and reads `received`."""

    def __init__(self) -> None:
        self.to_bridge_send, self.to_bridge = trio.open_memory_channel[str | bytes](1000)
        self.received: list[str | bytes] = []
        self.got_json = trio.Event()
        self.connects = 0
        self.closed = False

    async def receive(self) -> str | bytes:
        try:
            return await self.to_bridge.receive()
        except trio.EndOfChannel:
            raise AgentClosed("memory agent hung up") from None

    async def send(self, data: str | bytes) -> None:
        if self.closed:
            raise AgentClosed("memory agent closed")
        self.received.append(data)
        if isinstance(data, str):
            self.got_json.set()

    async def aclose(self) -> None:
        self.closed = True

    def say(self, message: dict[str, Any]) -> None:
        self.to_bridge_send.send_nowait(json.dumps(message))

    def json_messages(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self.received if isinstance(m, str)]

    async def wait_for(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        with trio.fail_after(5):
            while True:
                found = [m for m in self.json_messages() if m["type"] == kind]
                if len(found) >= count:
                    return found
                self.got_json = trio.Event()
                await self.got_json.wait()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AgentConnection]:
        self.connects += 1
        try:
            yield self
        finally:
            await self.aclose()


class Store:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.fail_with = fail_with
        self.committed: list[OrderDraft] = []

    async def commit_order(self, draft: OrderDraft) -> Order:
        await trio.sleep(0.01)
        if self.fail_with is not None:
            raise self.fail_with
        self.committed.append(draft)
        return Order(
            order_number="1234",
            status=OrderStatus.RECEIVED,
            phone=draft.phone,
            items=draft.items,
            total_cents=draft.total_cents,
            created_at="2026-11-25T09:00:00Z",
        )

    async def orders_for_phones(
        self, phones: Any, *, order_number: str | None = None, limit: int = 10
    ) -> list[Order]:
        return []


def make_deps(tmp_path: Path, store: Store, registry: CallRegistry | None = None) -> CallDeps:
    settings = settings_for_test(tmp_path, {"BOBA_AUDIO": "mulaw"})
    return CallDeps(
        config=call_config_from_settings(settings, load_menu(settings)),
        store=store,
        registry=registry or CallRegistry(max_calls=5, secret_key=b"s" * 32),
    )


async def converse(agent: MemoryAgent) -> None:
    await agent.wait_for("Settings")
    agent.say({"type": "SettingsApplied"})


def function_call(agent: MemoryAgent, call_id: str, name: str, **arguments: Any) -> None:
    agent.say(
        {
            "type": "FunctionCallRequest",
            "functions": [
                {
                    "id": call_id,
                    "name": name,
                    "arguments": json.dumps(arguments),
                    "client_side": True,
                }
            ],
        }
    )


async def run(phone: MemoryPhone, deps: CallDeps, agent: MemoryAgent, **kw: Any) -> CallReport:
    return await run_call(phone, deps, agent.connect, **kw)


async def test_a_call_over_memory_sides_with_a_failing_store(tmp_path: Path) -> None:
    phone, agent = MemoryPhone(), MemoryAgent()
    deps = make_deps(tmp_path, Store(fail_with=StoreUnavailable("database is locked")))
    seen: list[Action] = []
    report: list[CallReport] = []

    async with trio.open_nursery() as nursery:

        async def call() -> None:
            report.append(await run(phone, deps, agent, observe=seen.append))

        nursery.start_soon(call)
        phone.start()
        agent.say({"type": "Welcome", "request_id": "r"})
        await converse(agent)
        agent.say({"type": "ConversationText", "role": "assistant", "content": "Hi!"})
        function_call(agent, "f1", "add_to_cart", flavor="taro milk tea")
        function_call(agent, "f2", "save_phone_number", phone="4155551234")
        function_call(agent, "f3", "checkout_order")
        [_, _, checkout] = await agent.wait_for("FunctionCallResponse", 3)
        result = json.loads(checkout["content"])
        assert checkout["id"] == "f3" and result["ok"] is False and result["error"]
        # The call goes on after a store failure: the caller can be asked to try again.
        agent.to_bridge_send.send_nowait(b"\xff" * 800)  # agent audio (μ-law profile)
        with trio.fail_after(5):
            while not phone.sent:
                await trio.sleep(0.01)
        phone.push(tw.encode_event(tw.Stop(stream_sid=STREAM, sequence_number="9")))

    assert report[0].end_reason is EndReason.COMPLETED
    assert deps.registry.outcome(SID) is CallOutcome.NORMAL
    assert phone.close_code == 1000
    assert agent.connects == 1 and agent.closed
    assert any(isinstance(a, Transcript) and a.content == "Hi!" for a in seen)
    assert phone.sent[0] == {
        "event": "media",
        "streamSid": STREAM,
        "media": {"payload": phone.sent[0]["media"]["payload"]},
    }
    assert deps.registry.active_count == 0


async def test_our_own_bug_ends_the_call_with_the_apology(tmp_path: Path) -> None:
    phone, agent = MemoryPhone(), MemoryAgent()
    deps = make_deps(tmp_path, Store(fail_with=RuntimeError("a bug in the store")))
    report: list[CallReport] = []
    async with trio.open_nursery() as nursery:

        async def call() -> None:
            report.append(await run(phone, deps, agent))

        nursery.start_soon(call)
        phone.start()
        agent.say({"type": "Welcome", "request_id": "r"})
        await converse(agent)
        function_call(agent, "f1", "add_to_cart", flavor="taro milk tea")
        function_call(agent, "f3", "checkout_order", phone="4155551234")
    assert report[0].end_reason is EndReason.AGENT_FAILED
    assert deps.registry.outcome(SID) is CallOutcome.FAILED
    assert phone.close_code == 1000
    assert agent.closed


async def test_refused_start_never_opens_the_agent(tmp_path: Path) -> None:
    phone, agent = MemoryPhone(), MemoryAgent()
    deps = make_deps(tmp_path, Store())
    phone.start(token="nope")
    with trio.fail_after(5):
        report = await run(phone, deps, agent, authorize=lambda start: "wrong token")
    assert report.refused == "wrong token"
    assert phone.close_code == 1008
    assert agent.connects == 0
    assert deps.registry.active_count == 0


async def test_no_free_slot_refuses_the_stream(tmp_path: Path) -> None:
    phone, agent = MemoryPhone(), MemoryAgent()
    registry = CallRegistry(max_calls=1, secret_key=b"s" * 32)
    deps = make_deps(tmp_path, Store(), registry)
    phone.start()
    with registry.active("CA-other"), trio.fail_after(5):
        report = await run(phone, deps, agent)
    assert report.refused is not None and phone.close_code == 1013
    assert agent.connects == 0


async def test_agent_unreachable_ends_with_apology(tmp_path: Path) -> None:
    phone = MemoryPhone()
    deps = make_deps(tmp_path, Store())

    @asynccontextmanager
    async def unreachable() -> AsyncIterator[AgentConnection]:
        raise AgentUnreachable("connection refused")
        yield  # pragma: no cover

    phone.start()
    with trio.fail_after(5):
        report = await run_call(phone, deps, unreachable)
    assert report.end_reason is EndReason.AGENT_FAILED
    assert deps.registry.outcome(SID) is CallOutcome.FAILED


async def test_oversized_phone_frame_closes_with_1009(tmp_path: Path) -> None:
    phone, agent = MemoryPhone(), MemoryAgent()
    deps = make_deps(tmp_path, Store())
    phone.start()
    phone.push("x" * (deps.max_message_bytes + 1))
    with trio.fail_after(5):
        report = await run(phone, deps, agent)
    assert phone.close_code == 1009
    assert report.end_reason is EndReason.COMPLETED


def test_send_queue_drops_media_never_control() -> None:
    box: SendQueue[str] = SendQueue(2)
    assert box.put("m1", droppable=True) and box.put("m2", droppable=True)
    assert not box.put("m3", droppable=True)  # full: audio is dropped
    assert box.put("mark", droppable=False)  # control still fits in the slack
    assert box.drop_droppable() == 2
    box.put_first("clear")
    assert len(box) == 2


async def test_send_queue_order_and_close() -> None:
    box: SendQueue[str] = SendQueue(4)
    box.put("a", droppable=True)
    box.put("b", droppable=False)
    assert [await box.get(), await box.get()] == ["a", "b"]
    box.put("c", droppable=True)
    box.close(discard=True)
    with pytest.raises(trio.EndOfChannel):
        await box.get()
    assert not box.put("d", droppable=False)
