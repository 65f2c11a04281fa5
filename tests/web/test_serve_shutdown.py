"""SIGTERM while calls are in progress, on a real `boba serve` process (CONTRACT §1): new
calls are refused, a call in progress may finish within the grace period, one that
outlasts it is ended with its agent socket closed, the exit code is 0, and no committed
order is lost."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio

from boba_runtime.store.order_store import OrderStore
from tests.fakes.fake_agent import FakeAgentSession, fake_agent_server
from tests.fakes.twilio_client import dial, make_call_sid
from tests.helpers.processes import boba_command, run_child
from tests.web.test_call_loopback import drink

GRACE = 10.0  # boba serve's grace period (serve.DEFAULT_GRACE_PERIOD)
BANNER = re.compile(r"BobaRista is open on (http://127\.0\.0\.1:\d+)")
FINISHING, LINGERING = "+14155550101", "+14155550102"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_lets_calls_finish_refuses_new_ones_and_loses_no_order(
    tmp_path: Path, workers: int
) -> None:
    committed = trio.Event()
    resume = trio.Event()
    sessions: dict[str, FakeAgentSession] = {}

    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_injected(1, timeout=20)  # which call this is: its keyed digits
        caller = "+1" + re.sub(r"\D", "", agent.injected_user[0])
        sessions[caller] = agent
        if caller == LINGERING:
            await agent.closed.wait()  # talks past the grace period: the server ends it
            return
        assert (await agent.call_function("add_to_cart", drink("taro milk tea")))["ok"]
        assert (await agent.call_function("confirm_pending_to_cart"))["ok"]
        assert (await agent.call_function("save_phone_number", {"phone": caller}))["ok"]
        checkout = await agent.call_function("checkout_order")
        assert checkout["ok"], checkout
        committed.set()
        await resume.wait()  # SIGTERM happens here, mid-call
        await agent.say("Your order is in. Goodbye!", seconds=0.3)
        assert (await agent.call_function("end_call"))["ending"]

    async with fake_agent_server(script) as agent_server:
        env = {"BOBA_AGENT_URL": agent_server.url, "BOBA_PORT": "0", "BOBA_SMS": "log"}
        argv = boba_command("serve", "--workers", str(workers))
        with run_child(argv, cwd=tmp_path, env=env, name="boba serve") as shop:
            line = await trio.to_thread.run_sync(shop.wait_for_line, BANNER.search, 60.0)
            match = BANNER.search(line)
            assert match is not None
            base_url = match.group(1)
            async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as calls:
                ended: dict[str, float] = {}

                async def call(n: int, caller: str) -> None:
                    async with dial(client, server_url=base_url, public_url=base_url,
                                    auth_token=None, call_sid=make_call_sid(n),
                                    caller=caller) as stream:
                        for digit in caller.removeprefix("+1") + "#":
                            await stream.send_dtmf(digit)
                        await stream.closed.wait()
                        ended[caller] = time.monotonic()

                calls.start_soon(call, 1, FINISHING)
                calls.start_soon(call, 2, LINGERING)
                with trio.fail_after(30):
                    await committed.wait()
                    while LINGERING not in sessions:
                        await trio.sleep(0.01)
                signalled = time.monotonic()
                shop.process.send_signal(signal.SIGTERM)
                # New calls are refused: the port no longer takes connections.
                with trio.fail_after(5):
                    while True:
                        try:
                            await client.post(f"{base_url}/voice", data={"CallSid": "CAx"})
                        except httpx.TransportError:
                            break
                        await trio.sleep(0.05)
                resume.set()  # the call in progress finishes normally
                with trio.fail_after(GRACE + 10):
                    code = await trio.to_thread.run_sync(shop.process.wait, GRACE + 10)
                stopped = time.monotonic()
            assert code == 0, shop.report()
            print(f"finishing call ended {ended[FINISHING] - signalled:.2f} s after SIGTERM, "
                  f"lingering call {ended[LINGERING] - signalled:.2f} s, exit "
                  f"{stopped - signalled:.2f} s")
            assert ended[FINISHING] - signalled < GRACE
            assert GRACE - 1 <= ended[LINGERING] - signalled <= GRACE + 5
            for session in sessions.values():  # every agent socket was closed by the bridge
                assert session.closed.is_set()
    async with await OrderStore.open(f"sqlite:///{tmp_path / 'boba.sqlite3'}") as store:
        orders = await store.list_orders(status="all")
    assert [o.phone for o in orders] == [FINISHING]
