"""What every fault case shares: a real `boba serve` process wired to the fakes at the true
boundaries (the Deepgram agent, the Twilio REST API), callers that behave like Twilio, an
agent that orders and writes down every order number it was told, and the shop's own
answers read back over HTTP.

* `serve(...)`: a `boba serve` child (one process, like production's default) on
  127.0.0.1:0, its output kept and shown only if the test fails; `.kill()` is SIGKILL.
* `ordering_agent(ledger)`: the fake agent's script. Each call stages a drink, saves a phone
  of its own, checks out (again, as a real agent would, when told to try again) and hangs
  up. The `Ledger` holds the figures: numbers told, answer times, retries, cut-offs.
* `Callers`: places calls as Twilio does (signed `/voice`, the signed stream, `/voice/after`)
  and counts how they ended.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_websocket

from tests.fakes.fake_agent import AgentScriptError, FakeAgentSession, Script
from tests.fakes.twilio_client import dial, hang_up_after
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.helpers.failure_output import show_output_on_failure
from tests.helpers.processes import Child, boba_command, checkout_env

PUBLIC = "https://boba.example.com"
FROM_NUMBER = "+14155550100"
STAFF_PASSWORD = "faults-staff-password"
SECRET_KEY = "faults-secret-key-" + "k" * 32
BANNER = re.compile(r"BobaRista is open on (http://127\.0\.0\.1:\d+)")
START_TIMEOUT = 90.0  # a cold start on a loaded 2-core machine
CALL_TIMEOUT = 90.0
DRINK = {"flavor": "taro milk tea", "toppings": ["boba"], "sweetness": "50%",
         "ice": "less ice"}


# --- the agent's side: what each caller was told ---------------------------------------------


@dataclass
class Told:
    phone: str
    number: str
    answer_s: float  # checkout_order requested -> its FunctionCallResponse arrived


@dataclass
class Ledger:
    """Everything the fake agent heard, across every call of a case."""

    told: list[Told] = field(default_factory=list)
    try_again: int = 0  # checkouts answered "couldn't place it, shall I try again?"
    gave_up: int = 0  # calls still refused after every retry
    cut_off: int = 0  # agent links dropped mid-script (the server died, or refused the call)
    cut_off_in_checkout: int = 0  # ... while a checkout was waiting for its answer
    in_checkout: int = 0  # checkouts waiting for their answer right now
    sessions: int = 0
    hold: trio.Event | None = None  # when set by a test: calls wait for it before ordering
    phones: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    def numbers(self) -> list[str]:
        return [t.number for t in self.told]

    def answer_times(self) -> list[float]:
        return [t.answer_s for t in self.told]


def ordering_agent(ledger: Ledger, *, retries: int = 8) -> Script:
    """The agent of every fault case: one drink, a phone of its own, checkout, goodbye."""

    async def script(agent: FakeAgentSession) -> None:
        ledger.sessions += 1
        phone = f"+1415555{next(ledger.phones):04d}"
        in_checkout = False
        try:
            if ledger.hold is not None:
                await ledger.hold.wait()
            staged = await agent.call_function("add_to_cart", DRINK, timeout=CALL_TIMEOUT)
            assert staged["ok"], staged
            confirmed = await agent.call_function("confirm_pending_to_cart",
                                                  timeout=CALL_TIMEOUT)
            assert confirmed["ok"], confirmed
            saved = await agent.call_function("save_phone_number", {"phone": phone},
                                              timeout=CALL_TIMEOUT)
            assert saved["ok"], saved
            for _ in range(retries):
                in_checkout = True
                ledger.in_checkout += 1
                asked = trio.current_time()
                try:
                    result = await agent.call_function("checkout_order", timeout=CALL_TIMEOUT)
                finally:
                    ledger.in_checkout -= 1
                answered = trio.current_time()
                in_checkout = False
                if result["ok"]:
                    ledger.told.append(Told(phone, result["order_number"], answered - asked))
                    break
                if "try again" not in result["error"]:
                    raise AgentScriptError(f"checkout refused, not retryable: {result}")
                ledger.try_again += 1
                await trio.sleep(0.3)
            else:
                ledger.gave_up += 1
            assert (await agent.call_function("end_call", timeout=CALL_TIMEOUT))["ending"]
            await agent.say("Goodbye!", seconds=0.2)
        except (AgentScriptError, trio_websocket.ConnectionClosed):
            if not agent.closed.is_set():
                raise  # a real failure of the script, not a dropped link
            ledger.cut_off += 1
            ledger.cut_off_in_checkout += in_checkout

    return script


# --- the shop: a real `boba serve` process ---------------------------------------------------


def shop_env(*, database: str, agent_url: str, rest: FakeTwilioRest, data_dir: Path,
             extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "BOBA_HOST": "127.0.0.1",
        "BOBA_PORT": "0",
        "BOBA_PUBLIC_URL": PUBLIC,
        "BOBA_DATA_DIR": str(data_dir),
        "BOBA_DATABASE": database,
        "BOBA_AGENT_URL": agent_url,
        "BOBA_STAFF_PASSWORD": STAFF_PASSWORD,
        "BOBA_SECRET_KEY": SECRET_KEY,
        "TWILIO_ACCOUNT_SID": rest.account_sid,
        "TWILIO_AUTH_TOKEN": rest.auth_token,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": rest.base_url,
        "BOBA_SMS": "twilio",
    }
    env.update(extra or {})
    return env


@dataclass
class Shop:
    child: Child
    base_url: str

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, like a power cut of the process."""
        self.child.process.send_signal(signal.SIGKILL)
        self.child.process.wait(10)


@asynccontextmanager
async def serve(request: pytest.FixtureRequest, cwd: Path, env: Mapping[str, str],
                name: str = "boba serve") -> AsyncIterator[Shop]:
    """A `boba serve` child that answers `/healthz`; killed at the end if still running.
    Its output is attached to the test's report only if the test fails."""
    cwd.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        boba_command("serve"), cwd=cwd, env=checkout_env(env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    child = Child(process, name)
    show_output_on_failure(request.node, f"{name} (pid {process.pid})", child.report)
    try:
        line = await trio.to_thread.run_sync(child.wait_for_line, BANNER.search, START_TIMEOUT)
        match = BANNER.search(line)
        assert match is not None
        shop = Shop(child, match.group(1))
        await wait_healthy(shop.base_url)
        yield shop
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await trio.to_thread.run_sync(process.wait, 20.0)
            except subprocess.TimeoutExpired:
                process.kill()
                await trio.to_thread.run_sync(process.wait, 10.0)
        child.finish()
        (cwd / "boba-serve.log").write_text(child.report())  # kept with the test's tmp_path


async def wait_healthy(base_url: str, timeout: float = START_TIMEOUT) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        with trio.fail_after(timeout):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(f"{base_url}/healthz")
                    if response.status_code == 200 and response.json() == {"status": "ok"}:
                        return
                await trio.sleep(0.1)


# --- the callers' side ---------------------------------------------------------------------


BROKEN = (httpx.TransportError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
          OSError, AssertionError)
"""How a call ends when the server dies under it (AssertionError: `/voice` did not answer 200)."""


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


class Callers:
    """Places calls like Twilio; `outcomes` counts how they ended."""

    def __init__(self, client: httpx.AsyncClient, rest: FakeTwilioRest) -> None:
        self.client = client
        self.rest = rest
        self.outcomes: Counter[str] = Counter()
        self.refused_starts = 0

    async def call(self, base_url: str, *, tolerate_failure: bool = False) -> str:
        """One whole call; its outcome: `completed` (hung up after the goodbye), `refused`
        (stream closed at `start`, e.g. the token's store check failed), or with
        `tolerate_failure` `broken` (the server went away mid-call)."""
        sid = "CA" + uuid.uuid4().hex
        caller = "+14155550199"
        try:
            with trio.fail_after(CALL_TIMEOUT):
                async with dial(self.client, server_url=base_url, public_url=PUBLIC,
                                auth_token=self.rest.auth_token, call_sid=sid,
                                caller=caller) as stream:
                    await stream.closed.wait()
                after = await hang_up_after(self.client, server_url=base_url, public_url=PUBLIC,
                                            auth_token=self.rest.auth_token, call_sid=sid,
                                            caller=caller)
            outcome = "refused" if stream.close_code == 1008 else "completed"
            if outcome == "completed":
                assert after.hangup, after
        except Exception as error:
            if not (tolerate_failure and all(isinstance(leaf, BROKEN) for leaf in leaves(error))):
                raise
            outcome = "broken"
        self.outcomes[outcome] += 1
        return outcome

    async def batch(self, base_url: str, calls: int, at_once: int) -> None:
        """`calls` calls, `at_once` in progress at a time; each must complete."""
        slots = trio.Semaphore(at_once)

        async def one() -> None:
            async with slots:
                assert await self.call(base_url) == "completed"

        async with trio.open_nursery() as nursery:
            for _ in range(calls):
                nursery.start_soon(one)

    async def lines(self, base_url: str, count: int, stop: trio.Event, *,
                    tolerate_failure: bool = False) -> None:
        """`count` phone lines, each calling again as soon as its call ends, until `stop`."""

        async def line() -> None:
            while not stop.is_set():
                outcome = await self.call(base_url, tolerate_failure=tolerate_failure)
                if outcome == "broken":
                    await trio.sleep(0.2)

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(line)


# --- the shop's answers ----------------------------------------------------------------------


async def orders_by_number(client: httpx.AsyncClient, base_url: str) -> dict[str, dict[str, Any]]:
    """Every order in the store as staff see it (`GET /api/orders/{n}`: phone, SMS state)."""
    headers = {"Authorization": f"Bearer {STAFF_PASSWORD}"}
    listed = await client.get(f"{base_url}/api/orders", params={"status": "all", "limit": 500})
    assert listed.status_code == 200, listed.text
    found: dict[str, dict[str, Any]] = {}
    for order in listed.json():
        one = await client.get(f"{base_url}/api/orders/{order['order_number']}", headers=headers)
        assert one.status_code == 200, one.text
        found[order["order_number"]] = one.json()
    return found


def received_texts(rest: FakeTwilioRest) -> Counter[str]:
    """How many "received" SMS Twilio accepted (created) per order number."""
    counts: Counter[str] = Counter()
    for message in rest.created_messages():
        found = re.search(r"Your order number is (\d{4})\.", message.form.get("Body", ""))
        if found:
            counts[found.group(1)] += 1
    return counts


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def now() -> float:
    return time.monotonic()
