"""CONTRACT §12 through the real server: sold out (API, SSE, restart, a call in progress),
open hours and the pause switch on `/voice`, the wait, the name on the cup, and the
transfer to staff (by function and on agent failure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import trio

from boba_proto.model import OrderDraft, order_to_json
from boba_proto.shop import DAYS
from boba_web.twilio_routes import APOLOGY, CONNECTING
from tests.fakes.fake_agent import FakeAgentSession
from tests.fakes.twilio_client import make_call_sid
from tests.helpers.server import running_server
from tests.helpers.sse import sse_frames
from tests.runtime.test_store import BLACK, TARO
from tests.web.test_call_loopback import drink, shop_line
from tests.web.test_call_records_web import settled_call

TRANSFER = "+14155550142"
BUILTIN = files("boba_proto").joinpath("menu.toml").read_text("utf-8")


async def events_until(client: httpx.AsyncClient, base: str, wanted: str) -> list[dict[str, Any]]:
    """SSE events from the start (Last-Event-ID: 0) until one of type `wanted`."""
    seen: list[dict[str, Any]] = []
    with trio.fail_after(5):
        async with client.stream("GET", f"{base}/orders/events",
                                 headers={"Last-Event-ID": "0"}) as response:
            async for frame in sse_frames(response.aiter_lines()):
                if frame.data:
                    seen.append(json.loads(frame.data[0]))
                    if seen[-1]["type"] == wanted:
                        return seen
    raise AssertionError(seen)


async def test_sold_out_api_sse_and_restart(tmp_path: Path) -> None:
    async with running_server(tmp_path / "shop") as server, httpx.AsyncClient() as client:
        base, staff = server.base_url, server.staff_headers
        menu = (await client.get(f"{base}/api/menu")).json()
        assert menu["flavors"] == [
            {"name": "taro milk tea", "price": 5.5, "available": True},
            {"name": "black milk tea", "price": 5.5, "available": True},
        ]
        assert [t["name"] for t in menu["toppings"]] == [
            "boba", "egg pudding", "crystal agar boba", "vanilla cream"]
        assert menu["addons"] == [{"name": "matcha stencil on top", "price": 0.5,
                                   "available": True}]
        url = f"{base}/api/menu/flavors/taro%20milk%20tea"
        assert (await client.put(url, json={"available": False})).status_code == 401
        bad = await client.put(f"{base}/api/menu/drinks/taro", json={"available": False},
                               headers=staff)
        assert bad.status_code == 404 and "error" in bad.json()
        unknown = await client.put(f"{base}/api/menu/flavors/matcha%20latte",
                                   json={"available": False}, headers=staff)
        assert unknown.status_code == 404 and "matcha latte" in unknown.json()["error"]
        for body in (b"{}", b'{"available": "no"}', b"not json"):
            wrong = await client.put(url, content=body, headers=staff)
            assert wrong.status_code == 400, body
            assert wrong.json()["error"].endswith(".")
        done = await client.put(url, json={"available": False}, headers=staff)
        assert done.status_code == 200
        assert done.json() == {"kind": "flavors", "name": "taro milk tea", "price": 5.5,
                               "available": False}
        assert done.headers["cache-control"] == "no-store"
        events = await events_until(client, base, "menu_changed")
        assert events[-1] == {"type": "menu_changed"}
        menu = (await client.get(f"{base}/api/menu")).json()
        assert menu["flavors"][0] == {"name": "taro milk tea", "price": 5.5, "available": False}
    # A restart keeps it.
    async with running_server(tmp_path / "shop") as server, httpx.AsyncClient() as client:
        menu = (await client.get(f"{server.base_url}/api/menu")).json()
        assert menu["flavors"][0]["available"] is False
        assert server.services.shop.availability.flavors == frozenset({"taro milk tea"})


async def test_a_call_in_progress_sees_sold_out_at_its_next_function_call(
    tmp_path: Path,
) -> None:
    marked = trio.Event()
    staged_first = trio.Event()
    results: dict[str, Any] = {}

    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_audio(0.1)
        assert (await agent.call_function("add_to_cart", drink("taro milk tea", "boba")))["ok"]
        assert (await agent.call_function("confirm_pending_to_cart"))["ok"]
        staged_first.set()
        await marked.wait()
        results["refused"] = await agent.call_function("add_to_cart", drink("taro milk tea"))
        results["summary"] = await agent.call_function("menu_summary")
        # The taro already in the cart stays valid and can still be changed.
        results["modified"] = await agent.call_function(
            "modify_cart_item", {"index": 0, "ice": "less ice"})
        assert (await agent.call_function("add_to_cart", drink("black milk tea")))["ok"]
        assert (await agent.call_function("confirm_pending_to_cart"))["ok"]
        results["saved"] = await agent.call_function(
            "save_phone_number", {"phone": "415 555 1234", "name": "Ana Lucia"})
        results["checkout"] = await agent.call_function("checkout_order")
        await agent.say("Your order number is 4, 7, 8, 2.", seconds=0.2)
        await agent.call_function("end_call")
        await agent.say("Goodbye!", seconds=0.2)

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(1)
        base, staff = line.server.base_url, line.server.staff_headers
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await staged_first.wait()
                response = await line.client.put(
                    f"{base}/api/menu/flavors/Taro%20Milk%20Tea", json={"available": False},
                    headers=staff)
                assert response.status_code == 200
                marked.set()
                await stream.closed.wait()
        assert results["refused"] == {
            "ok": False, "error": "Sorry, the taro milk tea is sold out right now. "
            "We still have black milk tea, if you'd like one of those."}
        assert results["summary"]["flavors"] == ["black milk tea"]
        assert results["summary"]["sold_out"] == ["taro milk tea"]
        assert results["modified"]["ok"] and results["modified"]["item"]["ice"] == "less ice"
        assert results["saved"] == {"ok": True, "phone": "+14155551234", "name": "Ana Lucia"}
        checkout = results["checkout"]
        assert checkout["ok"] and checkout["name"] == "Ana Lucia"
        assert checkout["ready_in_minutes"] == 5
        number = checkout["order_number"]
        order = (await line.client.get(f"{base}/api/orders/{number}", headers=staff)).json()
        assert order["name"] == "Ana Lucia"
        assert order["items"][0]["flavor"] == "taro milk tea"
        public = (await line.client.get(f"{base}/api/orders")).json()
        assert public[0]["name"] == "Ana Lucia" and "phone" not in public[0]
        await trio.to_thread.run_sync(line.rest.wait_for_requests, 1)
        [message] = line.rest.messages()
        assert message.form["Body"] == (
            f"Thanks for your order! Your order number is {number}. It should be ready in "
            "about 5 minutes. We'll text you when it's ready for pickup.")


def closed_today_menu(tmp_path: Path) -> Path:
    """A menu open every day but today (in UTC), 09:00-17:00."""
    today = DAYS[datetime.now(UTC).weekday()]
    lines = [f'{day} = "09:00-17:00"' for day in DAYS if day != today]
    path = tmp_path / "menu.toml"
    path.write_text(BUILTIN + '\n[hours]\ntimezone = "UTC"\n' + "\n".join(lines) + "\n")
    return path


async def test_closed_hours_answer_without_an_agent(tmp_path: Path) -> None:
    agents: list[FakeAgentSession] = []

    async def script(agent: FakeAgentSession) -> None:
        agents.append(agent)

    menu = closed_today_menu(tmp_path)
    async with shop_line(tmp_path, script, BOBA_MENU=str(menu)) as line:
        twiml = await line.answer(make_call_sid(7), "+14155550199")
        assert twiml.connect_action is None and twiml.stream_url is None
        assert twiml.hangup
        [said] = twiml.says
        assert "closed" in said and "We open again tomorrow at 9 AM." in said
        shop = (await line.client.get(f"{line.server.base_url}/api/shop")).json()
        assert shop["open_now"] is False and shop["today"] is None
        assert shop["taking_orders"] is True and shop["wait_minutes"] == 5
        await trio.sleep(0.2)
        assert agents == [] and line.agent.sessions == []
        assert line.server.services.calls.load == 0  # no slot was taken


async def kept_calls(line: Any) -> list[dict[str, Any]]:
    """GET /api/calls (staff) once the writer has flushed every call (CONTRACT §13)."""
    await line.server.services.call_records.flush()
    response = await line.client.get(f"{line.server.base_url}/api/calls",
                                     headers=line.server.staff_headers)
    assert response.status_code == 200
    calls: list[dict[str, Any]] = response.json()
    return calls


async def test_calls_out_of_hours_or_paused_are_kept_as_closed(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.closed.wait()

    closed_sid, paused_sid = make_call_sid(11), make_call_sid(12)
    async with shop_line(tmp_path / "hours", script,
                         BOBA_MENU=str(closed_today_menu(tmp_path))) as line:
        twiml = await line.answer(closed_sid, "+14155550199")
        assert twiml.stream_url is None and twiml.hangup
        [kept] = await kept_calls(line)
        assert (kept["call_sid"], kept["outcome"]) == (closed_sid, "closed")
        assert kept["caller"] == "+14155550199"
        record = await settled_call(line.server, closed_sid)
        assert record["transcript"] == []

    async with shop_line(tmp_path / "paused", script) as line:
        base, staff = line.server.base_url, line.server.staff_headers
        paused = await line.client.put(f"{base}/api/shop", json={"taking_orders": False},
                                       headers=staff)
        assert paused.status_code == 200
        twiml = await line.answer(paused_sid, "+14155550111")
        assert "not taking phone orders right now" in twiml.says[0]
        [kept] = await kept_calls(line)
        assert (kept["call_sid"], kept["outcome"]) == (paused_sid, "closed")


async def test_bad_hours_stop_the_start_with_file_and_line(tmp_path: Path) -> None:
    from boba_runtime.config.settings import SettingsError
    from boba_runtime.services import load_menu
    from tests.helpers.server import settings_for_test

    path = tmp_path / "menu.toml"
    path.write_text(BUILTIN + '\n[hours]\ntimezone = "Mars/Olympus"\nmon = "10:00-21:00"\n')
    settings = settings_for_test(tmp_path, {"BOBA_MENU": str(path)})
    try:
        load_menu(settings)
    except SettingsError as error:
        line = BUILTIN.count("\n") + 3
        assert f"{path}:{line}: hours.timezone:" in str(error)
        assert "BOBA_MENU" in str(error)
    else:
        raise AssertionError("an unknown time zone was accepted")


async def test_pause_switch(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.closed.wait()

    async with shop_line(tmp_path, script) as line:
        base, staff = line.server.base_url, line.server.staff_headers
        assert (await line.client.put(f"{base}/api/shop", json={"taking_orders": False})
                ).status_code == 401
        assert (await line.client.put(f"{base}/api/shop", json={"taking": False},
                                      headers=staff)).status_code == 400
        paused = await line.client.put(f"{base}/api/shop", json={"taking_orders": False},
                                       headers=staff)
        assert paused.status_code == 200
        assert paused.json()["taking_orders"] is False and paused.json()["open_now"] is True
        twiml = await line.answer(make_call_sid(8), "+14155550199")
        assert twiml.stream_url is None and twiml.hangup
        assert "not taking phone orders right now" in twiml.says[0]
        events = await events_until(line.client, base, "shop_changed")
        assert events[-1] == {"type": "shop_changed", "taking_orders": False}
        await line.client.put(f"{base}/api/shop", json={"taking_orders": True}, headers=staff)
        twiml = await line.answer(make_call_sid(9), "+14155550199")
        assert twiml.says == [CONNECTING] and twiml.stream_url is not None
        assert line.agent.sessions == []


async def test_wait_time_follows_the_received_orders(tmp_path: Path) -> None:
    async with running_server(tmp_path / "shop") as server, httpx.AsyncClient() as client:
        store, base = server.services.store, server.base_url
        shop = (await client.get(f"{base}/api/shop")).json()
        assert shop == {"open_now": True, "taking_orders": True, "today": None,
                        "wait_minutes": 5, "waits": {}, "next_opening": None}
        orders = []
        for items in ((TARO, BLACK), (TARO, BLACK, TARO), (BLACK,)):
            orders.append(await store.commit_order(OrderDraft(
                phone="+14155551234", items=items,
                total_cents=sum(d.price_cents for d in items))))
        assert [o.ready_in_minutes for o in orders] == [5, 6, 15]
        shop = (await client.get(f"{base}/api/shop")).json()
        assert shop["wait_minutes"] == 18
        assert shop["waits"] == {orders[0].order_number: 5, orders[1].order_number: 6,
                                 orders[2].order_number: 15}
        done = await client.post(f"{base}/api/orders/{orders[0].order_number}/done",
                                 headers=server.staff_headers)
        assert done.status_code == 200
        shop = (await client.get(f"{base}/api/shop")).json()
        assert shop["wait_minutes"] == 12
        assert shop["waits"] == {orders[1].order_number: 5, orders[2].order_number: 9}
        assert order_to_json(orders[0], with_private=False)["name"] is None


async def test_transfer_to_staff_dials_the_shop(tmp_path: Path) -> None:
    answers: list[dict[str, Any]] = []

    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_audio(0.1)
        answers.append(await agent.call_function("transfer_to_staff"))
        await agent.say("Sure, let me put you through to the shop.", seconds=0.3)

    async with shop_line(tmp_path, script, BOBA_TRANSFER_NUMBER=TRANSFER) as line:
        sid = make_call_sid(2)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.closed.wait()
            response = await after_text(line, sid)
        assert answers == [{"ok": True, "transferring": True}]
        assert response.text.endswith(f"<Dial>{TRANSFER}</Dial></Response>"), response.text
        assert "<Hangup" not in response.text and "<Say" not in response.text
        # The sentence played before the stream ended: its mark came back.
        assert stream.played.marks_sent and stream.played.marks_sent == stream.played.marks_echoed
        functions = line.agent.sessions[0].function_names
        assert "transfer_to_staff" in functions
        prompt = line.agent.sessions[0].settings["agent"]["think"]["prompt"]
        assert "transfer_to_staff" in prompt
        record = await settled_call(line.server, sid)  # CONTRACT §13
        assert record["call"]["outcome"] == "transferred"
        assert record["call"]["order_number"] is None
        assert [t["name"] for t in record["transcript"] if t["kind"] == "function"] == [
            "transfer_to_staff"]


async def after_text(line: Any, sid: str) -> httpx.Response:
    """Twilio's signed `/voice/after` for `sid`, as raw TwiML (the fake's parser has no
    `<Dial>`)."""
    from tests.fakes.twilio_client import form, post_webhook
    from tests.web.test_call_loopback import PUBLIC

    return await post_webhook(line.client, server_url=line.server.base_url, public_url=PUBLIC,
                              path="/voice/after", params=form(sid, "+14155550199"),
                              auth_token=line.auth_token)


async def test_agent_failure_transfers_instead_of_apologising(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_audio(0.2)
        await agent.drop()

    async with shop_line(tmp_path, script, BOBA_TRANSFER_NUMBER=TRANSFER) as line:
        sid = make_call_sid(3)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.closed.wait()
            response = await after_text(line, sid)
        assert response.text.endswith(f"<Dial>{TRANSFER}</Dial></Response>"), response.text
        assert "<Say" not in response.text
        # The record keeps why: the agent failed (the report counts it), dialled or not.
        record = await settled_call(line.server, sid)
        assert record["call"]["outcome"] == "agent_failed"
    async with shop_line(tmp_path / "plain", script) as line:
        sid = make_call_sid(4)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.closed.wait()
            after = await line.after(sid, "+14155550199")
        assert after.says == [APOLOGY] and after.hangup  # no transfer number: the apology
        assert "transfer_to_staff" not in line.agent.sessions[0].function_names
