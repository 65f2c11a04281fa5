"""Call records through the real server (CONTRACT §13): Twilio calls, `boba call` over the
softphone socket and busy calls are kept with outcome and transcript; staff read them
as JSON and as pages, and the console links each order to its call."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from boba_runtime.call.records import Line, LineKind
from boba_runtime.cli.phone import run_phone_call
from boba_web.twilio_routes import BUSY
from tests.fakes.fake_agent import FakeAgentSession
from tests.fakes.twilio_client import form, make_call_sid, parse_twiml, post_webhook
from tests.helpers.server import RunningServer
from tests.web.test_boba_call import call as phone_call
from tests.web.test_call_loopback import PUBLIC, drink, order_script, shop_line
from tests.web.test_serve import boba_serve

CALLER = "+14155550199"
GREETING = "Hey! I am your Deepgram BobaRista. What would you like to order?"


async def settled_call(server: RunningServer, call_sid: str) -> dict[str, Any]:
    """The call's record once it has an outcome (its writer flushes within ~0.5 s)."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        with trio.fail_after(10):
            while True:
                response = await client.get(f"/api/calls/{call_sid}", headers=server.staff_headers)
                if response.status_code == 200 and response.json()["call"]["outcome"] != (
                    "in_progress"
                ):
                    assert response.headers["Cache-Control"] == "no-store"
                    data: dict[str, Any] = response.json()
                    return data
                await trio.sleep(0.1)


async def test_a_twilio_call_is_kept_with_its_transcript_and_linked_from_its_order(
    tmp_path: Path,
) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await order_script(agent, [drink("taro milk tea", "pudding")], "+14155551234")

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(7)
        with trio.fail_after(20):
            async with line.dial(sid, CALLER) as stream:
                await stream.closed.wait()
        server = line.server
        record = await settled_call(server, sid)
        call, transcript = record["call"], record["transcript"]
        [order] = await server.services.store.list_orders(status="all")
        assert call["outcome"] == "ordered"
        assert call["order_number"] == order.order_number
        assert call["caller"] == CALLER and call["source"] == "twilio"
        assert call["duration_seconds"] is not None and call["duration_seconds"] >= 0
        assert call["started_at"].endswith("Z") and call["ended_at"].endswith("Z")
        texts = [(t["role"], t["content"]) for t in transcript if t["kind"] == "text"]
        assert texts[0] == ("assistant", GREETING)  # the fake agent's greeting
        assert ("user", "a taro milk tea please") in texts
        assert ("assistant", f"Your order number is {order.order_number}.") in texts
        functions = [t for t in transcript if t["kind"] == "function"]
        assert [f["name"] for f in functions] == [
            "add_to_cart", "confirm_pending_to_cart", "save_phone_number", "checkout_order",
            "end_call",
        ]
        assert json.loads(functions[0]["arguments"]) == drink("taro milk tea", "pudding")
        assert json.loads(functions[0]["result"])["ok"] is True
        assert order.order_number in functions[3]["result"]
        offsets = [t["offset"] for t in transcript]
        assert offsets == sorted(offsets) and offsets[0] >= 0
        assert [t["seq"] for t in transcript] == list(range(1, len(transcript) + 1))

        client = line.client
        listed = await client.get(f"{server.base_url}/api/calls?limit=5",
                                  headers=server.staff_headers)
        assert listed.status_code == 200 and listed.headers["Cache-Control"] == "no-store"
        assert [c["call_sid"] for c in listed.json()] == [sid]
        for caller, expected in ((CALLER, [sid]), ("+14155550000", [])):
            mine = await client.get(f"{server.base_url}/api/calls",
                                    params={"caller": caller}, headers=server.staff_headers)
            assert [c["call_sid"] for c in mine.json()] == expected
        bad = await client.get(f"{server.base_url}/api/calls?caller=4155550199",
                               headers=server.staff_headers)
        assert bad.status_code == 400 and "error" in bad.json()

        # The console's link: order -> its call's transcript page.
        hop = await client.get(f"{server.base_url}/calls/order/{order.order_number}",
                               headers=server.staff_headers)
        assert hop.status_code == 303 and hop.headers["Location"] == f"/calls/{sid}"
        page = await client.get(f"{server.base_url}/calls/{sid}", headers=server.staff_headers)
        assert page.status_code == 200
        assert "a taro milk tea please" in page.text and "<details>" in page.text
        assert "<code>checkout_order</code>" in page.text
        calls_page = await client.get(f"{server.base_url}/calls", headers=server.staff_headers)
        assert f'data-call="{sid}"' in calls_page.text
        assert f"#{order.order_number}" in calls_page.text
        console_js = await client.get(f"{server.base_url}/assets/barista.js")
        assert '"/calls/order/"' in console_js.text


async def test_a_caller_who_hangs_up_mid_order_is_kept_as_such(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.user_says("um, a taro milk tea")
        await agent.call_function("add_to_cart", drink("taro milk tea"))
        await trio.sleep_forever()

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(8)
        with trio.fail_after(20):
            async with line.dial(sid, CALLER) as stream:
                while not line.agent.sessions or not any(
                    f for f in line.agent.sessions[0].function_responses
                ):
                    await trio.sleep(0.05)
                await stream.send_stop()
                await stream.closed.wait()
        record = await settled_call(line.server, sid)
        assert record["call"]["outcome"] == "caller_hung_up"
        assert record["call"]["order_number"] is None
        assert [t["kind"] for t in record["transcript"]] == ["text", "text", "function"]


async def test_busy_calls_are_kept(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await trio.sleep_forever()

    async with shop_line(tmp_path, script, BOBA_MAX_CALLS="1") as line:
        first, second = make_call_sid(1), make_call_sid(2)
        await line.answer(first, CALLER)  # holds the only slot
        response = await post_webhook(
            line.client, server_url=line.server.base_url, public_url=PUBLIC, path="/voice",
            params=form(second, "+14155550111"), auth_token=line.auth_token,
        )
        assert parse_twiml(response.text).says == [BUSY]
        record = await settled_call(line.server, second)
        assert record["call"]["outcome"] == "busy"
        assert record["call"]["caller"] == "+14155550111"
        assert record["transcript"] == []


async def test_a_boba_call_order_is_kept_as_a_softphone_call(
    boba_server: RunningServer,
) -> None:
    code, lines = await phone_call(boba_server, "plain_order.txt", caller="+14155550142")
    assert code == 0, "\n".join(lines)
    number = lines[-1].removeprefix("order: ")
    async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
        listed = (await client.get("/api/calls", headers=boba_server.staff_headers)).json()
    [summary] = listed
    assert summary["call_sid"].startswith("PH") and summary["source"] == "phone"
    record = await settled_call(boba_server, summary["call_sid"])
    assert record["call"]["outcome"] == "ordered"
    assert record["call"]["order_number"] == number
    said = [f"{'agent' if t['role'] == 'assistant' else 'caller'}: {t['content']}"
            for t in record["transcript"] if t["kind"] == "text"]
    printed = [line for line in lines if line.startswith(("agent: ", "caller: "))]
    assert said == printed  # the record says what `boba call` printed, in order
    fns = [line for line in lines if line.startswith("fn: ")]
    assert len([t for t in record["transcript"] if t["kind"] == "function"]) == len(fns)


async def test_calls_are_staff_only_and_errors_are_json(boba_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
        for path in ("/api/calls", f"/api/calls/{make_call_sid(1)}"):
            response = await client.get(path)
            assert response.status_code == 401 and "error" in response.json()
        staff = boba_server.staff_headers
        missing = await client.get(f"/api/calls/{make_call_sid(1)}", headers=staff)
        assert missing.status_code == 404 and "error" in missing.json()
        assert missing.headers["Cache-Control"] == "no-store"
        for bad in ("0", "x", "-1"):
            response = await client.get(f"/api/calls?limit={bad}", headers=staff)
            assert response.status_code == 400 and "error" in response.json()
        assert (await client.get("/api/calls", headers=staff)).json() == []
        for page in ("/calls", f"/calls/{make_call_sid(1)}", "/calls/order/1234"):
            anonymous = await client.get(page)
            assert anonymous.status_code == 200
            assert 'name="password"' in anonymous.text and "transcript" not in anonymous.text
        assert re.search(r"No calls yet", (await client.get("/calls", headers=staff)).text)
        # what a caller said is shown as text, never as markup
        writer = boba_server.services.call_records
        sid = make_call_sid(9)
        writer.open_call(sid, caller="+14155550100")
        writer.add_line(sid, Line(seq=1, offset_ms=0, kind=LineKind.TEXT, role="user",
                                  content="<script>alert(1)</script>"))
        page = await client.get(f"/calls/{sid}", headers=staff)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<script>alert" not in page.text
        unknown = await client.get("/calls/order/1234", headers=staff)
        assert unknown.status_code == 404 and "No call is recorded" in unknown.text


@pytest.mark.slow
async def test_a_crash_mid_call_keeps_what_was_said_and_the_restart_marks_it_unknown(
    tmp_path: Path,
) -> None:
    """`boba serve` killed (SIGKILL) in the middle of a `boba call`: the lines written so
    far (by the writer's own schedule, not by a read) survive; the next start says the
    call's outcome is unknown."""
    env = {"BOBA_STAFF_PASSWORD": "a-long-staff-password"}
    database = tmp_path / "boba.sqlite3"

    def lines_on_disk() -> int:
        if not database.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            try:
                return int(db.execute("SELECT count(*) FROM call_lines").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    with boba_serve(tmp_path, "--port", "0", **env) as shop:
        base_url = await trio.to_thread.run_sync(shop.wait_for_banner)
        said = ["hi, can I get a taro milk tea with boba please"]

        async def next_line() -> str | None:
            if said:
                return said.pop()
            await trio.sleep_forever()  # the caller stays on the line
            return None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(
                    run_phone_call, base_url, env["BOBA_STAFF_PASSWORD"], next_line,
                    out=io.StringIO(), caller="+14155550142", turn_timeout=10,
                )
            )
            with trio.fail_after(20):
                while lines_on_disk() < 3:  # greeting, the caller, add_to_cart (at least)
                    await trio.sleep(0.1)
            shop.process.kill()
            await trio.to_thread.run_sync(shop.process.wait)
            nursery.cancel_scope.cancel()

    with boba_serve(tmp_path, "--port", "0", **env) as again:
        base_url = await trio.to_thread.run_sync(again.wait_for_banner)
        headers = {"Authorization": f"Bearer {env['BOBA_STAFF_PASSWORD']}"}
        async with httpx.AsyncClient(base_url=base_url) as client:
            [summary] = (await client.get("/api/calls", headers=headers)).json()
            record = (await client.get(f"/api/calls/{summary['call_sid']}",
                                       headers=headers)).json()
        again.process.kill()
    assert record["call"]["outcome"] == "unknown"
    assert record["call"]["ended_at"] is not None
    texts = [t["content"] for t in record["transcript"] if t["kind"] == "text"]
    assert texts[0].startswith("Hey! I am your Deepgram BobaRista")
    assert texts[1] == "hi, can I get a taro milk tea with boba please"
