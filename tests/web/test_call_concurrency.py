"""Many calls at once on loopback: every call's state is its own (CONTRACT §5), and one
misbehaving stream (malformed frames, unknown events, an oversized frame) harms only itself."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import trio
import trio_websocket

from boba_proto.model import order_to_json
from tests.fakes.fake_agent import AgentScriptError, FakeAgentSession
from tests.fakes.twilio_client import TwilioStream, make_call_sid
from tests.web.test_call_loopback import Line, shop_line

FLAVORS = ["taro milk tea", "black milk tea"]
TOPPINGS = [["boba"], ["egg pudding"], ["crystal agar boba", "boba"], []]
SWEETNESS = ["0%", "25%", "50%", "75%", "100%"]


def phone_of(k: int) -> str:
    return f"+1415555{1000 + k:04d}"


def drink_of(k: int) -> dict:
    return {
        "flavor": FLAVORS[k % 2],
        "toppings": TOPPINGS[k % 4],
        "sweetness": SWEETNESS[k % 5],
        "ice": "less ice",
    }


async def keyed_order_script(agent: FakeAgentSession) -> None:
    """The caller keys their number in; the drink follows from it, so every call is distinct.

    The agent learns who is calling only through this call's own DTMF → InjectUserMessage
    path, so a crossed wire anywhere shows up as a wrong phone or a wrong drink.
    """
    await agent.wait_injected(1, timeout=15)
    typed = re.sub(r"\D", "", agent.injected_user[0])
    assert len(typed) == 10, agent.injected_user
    k = int(typed[-4:]) - 1000
    staged = await agent.call_function("add_to_cart", drink_of(k))
    assert staged["ok"], staged
    await agent.call_function("confirm_pending_to_cart")
    saved = await agent.call_function("save_phone_number", {"phone": typed})
    assert saved["ok"], saved
    checkout = await agent.call_function("checkout_order", timeout=15)
    assert checkout["ok"], checkout
    status = await agent.call_function("order_status", timeout=15)
    agent.results = {"k": k, "checkout": checkout, "status": status}  # type: ignore[attr-defined]
    await agent.call_function("end_call")
    await agent.say("Goodbye!", seconds=0.2)


async def key_in(stream: TwilioStream, number: str) -> None:
    for digit in number.removeprefix("+1"):
        await stream.send_dtmf(digit)
        await trio.sleep(0.02)
    await stream.send_dtmf("#")


async def place_keyed_call(line: Line, k: int, *, timeout: float = 40) -> TwilioStream:
    sid = make_call_sid(100 + k)
    with trio.fail_after(timeout):
        async with line.dial(sid, phone_of(k)) as stream:
            await stream.wait_media()  # the greeting plays first
            await key_in(stream, phone_of(k))
            await stream.closed.wait()
        after = await line.after(sid, phone_of(k))
    assert after.says == [] and after.hangup
    return stream


async def test_twenty_concurrent_calls_each_get_their_own_order(tmp_path: Path) -> None:
    calls = 20
    async with shop_line(tmp_path, keyed_order_script) as line:
        streams: dict[int, TwilioStream] = {}

        async def one(k: int) -> None:
            streams[k] = await place_keyed_call(line, k, timeout=60)

        async with trio.open_nursery() as nursery:
            for k in range(calls):
                nursery.start_soon(one, k)

        sessions = line.agent.sessions
        assert len(sessions) == calls
        assert all(s.protocol_errors == [] for s in sessions)
        results = {s.results["k"]: s.results for s in sessions}  # type: ignore[attr-defined]
        assert sorted(results) == list(range(calls))

        orders = await line.server.services.store.list_orders(status="all", limit=100)
        assert len(orders) == calls
        by_number = {o.order_number: o for o in orders}
        assert len(by_number) == calls  # unique numbers among active orders
        for k, result in results.items():
            number = result["checkout"]["order_number"]
            order = order_to_json(by_number[number], with_private=True)
            assert order["phone"] == phone_of(k)
            [item] = order["items"]
            expected = drink_of(k)
            assert item["flavor"] == expected["flavor"]
            assert item["toppings"] == expected["toppings"]
            assert item["sweetness"] == expected["sweetness"]
            # order_status on that call sees that caller's order and nobody else's.
            assert [o["order_number"] for o in result["status"]["orders"]] == [number]
        assert all(streams[k].played.errors == [] for k in range(calls))


async def keyed_order_or_nothing(agent: FakeAgentSession) -> None:
    """The keyed order, except on the call that never keys anything in (it is closed for
    its bad frames first): that one only has to end."""
    try:
        await keyed_order_script(agent)
    except AgentScriptError:
        if agent.injected_user or not agent.closed.is_set():
            raise


async def test_bad_frames_on_one_call_leave_a_parallel_call_unharmed(tmp_path: Path) -> None:
    async with shop_line(tmp_path, keyed_order_or_nothing) as line:
        good: list[TwilioStream] = []
        bad_done = trio.Event()
        bad_close: list[int | None] = []

        async def bad_call() -> None:
            sid = make_call_sid(999)
            with trio.fail_after(30):
                async with line.dial(sid, "+14155550999") as stream:
                    await trio.sleep(0.3)
                    for frame in (
                        "not json at all",
                        '{"event": "media"}',  # a known event with missing fields
                        '{"event": "media", "streamSid": "MZ1", "sequenceNumber": "5",'
                        ' "media": {"chunk": "x", "timestamp": "1", "payload": "!!"}}',
                        '{"event": "surprise", "streamSid": "MZ1"}',  # unknown event
                        "[1, 2, 3]",
                        b"\x00\x01binary garbage",
                    ):
                        await stream.send_raw(frame)
                        await trio.sleep(0.01)
                    await trio.sleep(0.3)
                    assert not stream.closed.is_set()  # a few bad frames are skipped
                    await stream.send_raw("x" * 70_000)  # over BOBA_MAX_MESSAGE_BYTES
                    await stream.closed.wait()
                    bad_close.append(stream.close_code)
            bad_done.set()

        async def good_call() -> None:
            good.append(await place_keyed_call(line, 7))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(bad_call)
            nursery.start_soon(good_call)

        assert bad_close == [1009]
        orders = await line.server.services.store.list_orders(status="all")
        assert [o.phone for o in orders] == [phone_of(7)]
        assert good[0].played.errors == []


async def test_fifty_malformed_messages_end_the_call(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.closed.wait()

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(5)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550999") as stream:
                sent = 0
                with contextlib.suppress(trio_websocket.ConnectionClosed):
                    for n in range(49):
                        await stream.send_raw(f'{{"event": "bogus{n}"}}')
                        sent += 1
                    await trio.sleep(0.3)
                    assert not stream.closed.is_set()  # 49 are tolerated
                    await stream.send_raw("{ the fiftieth, malformed")
                    sent += 1
                await stream.closed.wait()
                assert sent == 50
            after = await line.after(sid, "+14155550999")
        assert after.says == [] and after.hangup
        assert stream.close_code == 1000
