"""Two `boba serve` processes on one PostgreSQL database (issue #17 item 2, DESIGN §5).

Two instances on their own ports share the database, `BOBA_SECRET_KEY` and
`BOBA_STAFF_PASSWORD`, as they would behind a load balancer with no sticky sessions. A fake
Twilio places 2 × 20 calls at once through the real `/voice` webhook and the real `/twilio`
WebSocket, spread so that a call's `/voice` and its stream land on the same instance or on
different ones; the fake Deepgram agent takes one order per call (the caller keys in their
number, so a crossed wire shows as a wrong order). A few more calls lose their agent mid-call
and must hear the apology from whichever instance gets `/voice/after`.

What must hold: no two orders share a number; every order reaches the event streams of both
instances with the same integer ids; each order gets exactly one "received" SMS although
both outbox workers run; an agent link pre-opened by `/voice` on one instance is closed
unused when the stream lands on the other; every stream ends and both instances stop
cleanly. The figures (orders, cross-instance event delay, SMS counts) are printed.

PostgreSQL: `BOBA_TEST_POSTGRES_URL`, default the local server every machine runs; a fresh
database per test. Unreachable: skipped locally, a failure when `CI` is set.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from boba_web.twilio_routes import APOLOGY
from tests.fakes.fake_agent import FakeAgentServer, FakeAgentSession, fake_agent_server
from tests.fakes.twilio_client import dial, hang_up_after, make_call_sid
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.helpers.processes import Child, boba_command, run_child
from tests.helpers.sse import sse_frames
from tests.helpers.stores import fresh_pg_database, pg_server  # noqa: F401  (the fixture)
from tests.web.test_call_concurrency import drink_of, key_in, phone_of

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.slow

PUBLIC = "https://boba.example.com"  # both instances sit behind one public name
FROM_NUMBER = "+14155550100"
SECRET_KEY = "two-instances-" + "k" * 50
STAFF_PASSWORD = "two-instances-staff-password"
BANNER = re.compile(r"BobaRista is open on (http://127\.0\.0\.1:\d+)")

CALLS_PER_INSTANCE = 20
ORDERING = 2 * CALLS_PER_INSTANCE
# Calls whose agent drops mid-call: (where /voice lands, where the stream lands, where
# /voice/after lands). The last two ask the instance that never saw the stream.
FAILING = {
    ORDERING: ("a", "b", "b"),
    ORDERING + 1: ("b", "a", "a"),
    ORDERING + 2: ("a", "b", "a"),
    ORDERING + 3: ("b", "a", "b"),
}
SSE_PER_INSTANCE = 2
CALL_TIMEOUT = 120.0  # one call, start to `/voice/after`, on a shared 2-core machine


def route(k: int) -> tuple[str, str, str]:
    """Where call k's `/voice`, stream and `/voice/after` land: every combination of the
    first two occurs 10 times among the ordering calls; `/voice/after` follows the stream."""
    if k in FAILING:
        return FAILING[k]
    voice = "ab"[k % 2]
    stream = "ab"[(k // 2) % 2]
    return voice, stream, stream


@pytest.fixture
def shared_database(pg_server: str) -> Iterator[str]:  # noqa: F811
    with fresh_pg_database(pg_server, "twoinst_") as url:
        yield url


# --- the agent ---------------------------------------------------------------------------------


async def keyed_call(agent: FakeAgentSession) -> None:
    """The caller keys their number in; it says which call this is and what they order.
    The failing calls lose their agent instead (as if Deepgram crashed)."""
    typed = ""
    while len(typed) < 10:  # a pause over 2 s on a loaded machine splits the number
        await agent.wait_injected(len(agent.injected_user) + 1, timeout=CALL_TIMEOUT)
        typed = re.sub(r"\D", "", "".join(agent.injected_user))
    k = int(typed[-4:]) - 1000
    agent.results = {"k": k}  # type: ignore[attr-defined]
    if k in FAILING:
        await agent.drop()
        return
    staged = await agent.call_function("add_to_cart", drink_of(k), timeout=30)
    assert staged["ok"], staged
    await agent.call_function("confirm_pending_to_cart", timeout=30)
    saved = await agent.call_function("save_phone_number", {"phone": typed}, timeout=30)
    assert saved["ok"], saved
    checkout = await agent.call_function("checkout_order", timeout=30)
    assert checkout["ok"], checkout
    agent.results["checkout"] = checkout  # type: ignore[attr-defined]
    await agent.call_function("end_call", timeout=30)
    await agent.say("Goodbye!", seconds=0.2)


# --- the instances --------------------------------------------------------------------------


def instance_env(database: str, data_dir: Path, agent: FakeAgentServer,
                 rest: FakeTwilioRest) -> dict[str, str]:
    return {
        "BOBA_HOST": "127.0.0.1",
        "BOBA_PORT": "0",
        "BOBA_PUBLIC_URL": PUBLIC,
        "BOBA_DATABASE": database,
        "BOBA_DATA_DIR": str(data_dir),
        "BOBA_SECRET_KEY": SECRET_KEY,
        "BOBA_STAFF_PASSWORD": STAFF_PASSWORD,
        "BOBA_AGENT_URL": agent.url,
        "BOBA_SMS": "twilio",
        "TWILIO_ACCOUNT_SID": rest.account_sid,
        "TWILIO_AUTH_TOKEN": rest.auth_token,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": rest.base_url,
    }


@contextlib.asynccontextmanager
async def two_instances(
    tmp_path: Path, database: str, agent: FakeAgentServer, rest: FakeTwilioRest
) -> AsyncIterator[tuple[dict[str, str], dict[str, Child]]]:
    """`boba serve` twice on one database: base URLs and children by name ("a", "b")."""
    with contextlib.ExitStack() as stack:
        children: dict[str, Child] = {}
        for name in "ab":
            home = tmp_path / name
            home.mkdir()
            children[name] = stack.enter_context(run_child(
                boba_command("serve"), cwd=home, name=f"boba serve {name}",
                env=instance_env(database, home / "data", agent, rest),
            ))
        urls = {}
        for name, child in children.items():
            line = await trio.to_thread.run_sync(child.wait_for_line, BANNER.search, 90.0)
            found = BANNER.search(line)
            assert found is not None
            urls[name] = found.group(1)
        yield urls, children


# --- event streams ---------------------------------------------------------------------------


@dataclass
class Listener:
    instance: str
    events: list[tuple[int, dict[str, Any], float]] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def created(self) -> dict[str, tuple[int, float]]:
        """Order number -> (event id, arrival time) of its `order_created` event."""
        return {data["order_number"]: (event_id, at) for event_id, data, at in self.events
                if data["type"] == "order_created"}


async def listen(url: str, headers: dict[str, str], listener: Listener,
                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=None) as client,
        client.stream("GET", "/orders/events") as response,
    ):
        assert response.status_code == 200
        task_status.started()  # the subscription exists once the headers are sent
        async for frame in sse_frames(response.aiter_lines()):
            if not frame.data:  # `: connected` with `retry:`, `: ping`
                continue
            assert frame.id is not None and len(frame.data) == 1, frame
            listener.events.append((frame.id, json.loads(frame.data[0]), trio.current_time()))
            listener.changed.set()
            listener.changed = trio.Event()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# --- the test --------------------------------------------------------------------------------


async def test_two_instances_share_one_database(tmp_path: Path, shared_database: str) -> None:
    with FakeTwilioRest() as rest:
        async with (
            fake_agent_server(keyed_call) as agent,
            two_instances(tmp_path, shared_database, agent, rest) as (urls, children),
            httpx.AsyncClient(timeout=60) as http,
        ):
            async with trio.open_nursery() as nursery:
                figures = await place_the_calls(urls, agent, rest, http, nursery)
                nursery.cancel_scope.cancel()  # the event streams
            print(figures)
            # Both instances stop cleanly: every call and stream is over.
            for child in children.values():
                child.process.send_signal(signal.SIGTERM)
            for child in children.values():
                code = await trio.to_thread.run_sync(child.process.wait, 30)
                assert code == 0, child.report()


async def place_the_calls(
    urls: dict[str, str], agent: FakeAgentServer, rest: FakeTwilioRest,
    http: httpx.AsyncClient, nursery: trio.Nursery,
) -> str:
    """Everything the test asserts; the measured figures as one line."""
    # Staff log in on A; the session cookie works on B too (one BOBA_SECRET_KEY).
    login = await http.post(f"{urls['a']}/login", data={"password": STAFF_PASSWORD},
                            headers={"Origin": PUBLIC})
    assert login.status_code == 303, login.text
    cookie = {"Cookie": login.headers["set-cookie"].split(";", 1)[0]}
    for url in urls.values():
        assert (await http.get(f"{url}/api/orders/0000", headers=cookie)).status_code == 404
        assert (await http.get(f"{url}/api/orders/0000")).status_code == 401

    listeners = [Listener(name) for name in "ab" for _ in range(SSE_PER_INSTANCE)]
    for listener in listeners:
        await nursery.start(listen, urls[listener.instance], cookie, listener)

    afters: dict[int, list[str]] = {}

    phases: dict[int, str] = {}

    async def call(k: int) -> None:
        voice, stream_on, after_on = route(k)
        sid = make_call_sid(0x700 + k)
        phases[k] = "dialing"
        with trio.move_on_after(CALL_TIMEOUT) as deadline:
            await place_call(k, voice, stream_on, after_on, sid)
        assert not deadline.cancelled_caught, (
            f"call {k} (/voice, stream, /voice/after on {route(k)}) stuck: {phases[k]}")

    async def place_call(k: int, voice: str, stream_on: str, after_on: str, sid: str) -> None:
        # dial() posts /voice to `server_url`; its stream goes to `stream_server_url`.
        async with dial(http, server_url=urls[voice], public_url=PUBLIC,
                        auth_token=rest.auth_token, call_sid=sid, caller=phone_of(k),
                        stream_server_url=urls[stream_on]) as stream:
            phases[k] = "waiting for the greeting"
            await stream.wait_media()  # the greeting plays first
            phases[k] = "keying in"
            await key_in(stream, phone_of(k))
            phases[k] = "waiting for the server's close frame"
            await stream.closed.wait()
            phases[k] = "waiting for the server to end the TCP connection"
        assert stream.played.errors == []
        phases[k] = "posting /voice/after"
        after = await hang_up_after(
            http, server_url=urls[after_on], public_url=PUBLIC,
            auth_token=rest.auth_token, call_sid=sid, caller=phone_of(k),
        )
        assert after.hangup, (k, after)
        afters[k] = after.says

    everyone = [*range(ORDERING), *FAILING]
    started = trio.current_time()
    async with trio.open_nursery() as calls:
        for k in everyone:
            calls.start_soon(call, k)
    calls_seconds = trio.current_time() - started

    # Every call ended, and the caller heard how: the apology only after a failure,
    # also from the instance that never held the stream.
    assert sorted(afters) == everyone
    for k, says in afters.items():
        assert says == ([APOLOGY] if k in FAILING else []), (k, route(k), says)

    # One order per ordering call, each with its own number, phone and drink.
    results = [s.results for s in agent.sessions if hasattr(s, "results")]
    assert sorted(r["k"] for r in results) == everyone
    checkouts = {r["k"]: r["checkout"] for r in results if r["k"] not in FAILING}
    numbers = {checkout["order_number"]: k for k, checkout in checkouts.items()}
    assert len(numbers) == ORDERING, "two calls were told the same order number"
    listed = (await http.get(f"{urls['b']}/api/orders",
                             params={"status": "all", "limit": "100"})).json()
    assert sorted(o["order_number"] for o in listed) == sorted(numbers)
    for index, (number, k) in enumerate(sorted(numbers.items())):
        url = urls["ab"[index % 2]]
        order = (await http.get(f"{url}/api/orders/{number}", headers=cookie)).json()
        assert order["phone"] == phone_of(k)
        assert [item["flavor"] for item in order["items"]] == [drink_of(k)["flavor"]]

    # Every order reached every event stream of both instances, with the same ids.
    with trio.fail_after(30):
        while any(len(x.created()) < ORDERING for x in listeners):
            await trio.sleep(0.05)
    ids = [[event_id for event_id, _, _ in x.events] for x in listeners]
    assert all(found == ids[0] for found in ids), ids
    assert ids[0] == sorted(set(ids[0]))  # increasing, no repeats
    assert set(listeners[0].created()) == set(numbers)
    delays = []  # from the instance that committed the order to the other one
    for number, k in numbers.items():
        home = route(k)[1]
        here = min(x.created()[number][1] for x in listeners if x.instance == home)
        there = max(x.created()[number][1] for x in listeners if x.instance != home)
        delays.append(max(0.0, there - here))

    # Exactly one "received" SMS per order, though both outbox workers ran.
    await rest.await_requests(ORDERING, timeout=60)
    await trio.sleep(2.0)  # time for a second send to show
    received = [m.form for m in rest.created_messages()
                if m.form.get("Body", "").startswith("Thanks for your order!")]
    per_phone: dict[str, int] = {}
    for message in received:
        per_phone[message["To"]] = per_phone.get(message["To"], 0) + 1
    assert per_phone == {phone_of(k): 1 for k in range(ORDERING)}, per_phone
    for message in received:
        number = checkouts[int(message["To"][-4:]) - 1000]["order_number"]
        assert f"order number is {number}." in message["Body"]
    assert len(rest.messages()) == ORDERING  # no other message was even attempted

    # Agent links pre-opened by `/voice` on the instance the stream did not reach were
    # closed unused (never configured), and every link is closed now.
    unused = [s for s in agent.sessions if s.settings is None]
    crossed = sum(1 for k in everyone if route(k)[0] != route(k)[1])
    assert len(unused) == crossed
    with trio.fail_after(30):
        for session in agent.sessions:
            await session.closed.wait()

    return (
        f"\ntwo instances, one PostgreSQL: {ORDERING} orders from {ORDERING} concurrent "
        f"ordering calls (+{len(FAILING)} failing) in {calls_seconds:.1f} s, "
        f"{len(numbers)} distinct numbers; cross-instance SSE delay "
        f"p50 {percentile(delays, 0.5) * 1000:.0f} ms, p99 {percentile(delays, 0.99) * 1000:.0f} "
        f"ms, max {max(delays) * 1000:.0f} ms; {len(received)} received SMS for {ORDERING} "
        f"orders ({len(rest.messages())} message requests); {len(unused)} pre-opened agent "
        f"links closed unused ({crossed} calls crossed instances)"
    )
