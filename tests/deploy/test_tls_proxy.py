"""deploy/nginx.conf and deploy/Caddyfile in front of a real `boba serve`, over TLS, on
loopback (issue 16.1).

One shop behind one real proxy (Debian's nginx, or Debian's caddy; a self-signed
certificate for 127.0.0.1; the recipe exactly as shipped but for names, ports and
certificate paths);
the agent is the fake Deepgram agent, the SMS go to the fake Twilio REST API. Through
the proxy it proves: Twilio-signed webhooks pass and unsigned ones are refused; the
`wss://…/twilio` stream carries a whole order; `/orders/events` is not buffered;
`X-Forwarded-For` counts for rate limiting only from `BOBA_TRUSTED_PROXIES`; staff
cookies are `Secure`; and the JSON logs tag the call's lines with its `call_sid`.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

from tests.deploy.harness import (
    BobaProcess,
    CaddyProcess,
    NginxProcess,
    boba_serve,
    caddy_in_front,
    free_port,
    nginx_in_front,
    self_signed_certificate,
)
from tests.fakes.fake_agent import FakeAgentSession, fake_agent_server
from tests.fakes.twilio_client import dial, form, make_call_sid, post_webhook
from tests.fakes.twilio_rest import FakeTwilioRest

pytestmark = pytest.mark.deploy

STAFF_PASSWORD = "deploy-test-staff-password"
CALLER = "+14155550199"
CUSTOMER_PHONE = "+14155551234"
T = TypeVar("T")


@asynccontextmanager
async def in_thread(manager: AbstractContextManager[T]) -> AsyncIterator[T]:
    """A blocking context manager (process start/stop) kept off the trio thread."""
    value = await trio.to_thread.run_sync(manager.__enter__)
    try:
        yield value
    finally:
        await trio.to_thread.run_sync(manager.__exit__, None, None, None)


async def take_an_order(agent: FakeAgentSession) -> None:
    """The agent's side of a whole call: a drink, the phone number, checkout, goodbye."""
    await agent.wait_audio(0.1)
    await agent.user_says("a taro milk tea with boba please")
    staged = await agent.call_function("add_to_cart", {
        "flavor": "taro milk tea", "toppings": ["boba"], "sweetness": "75%",
        "ice": "less ice",
    })
    assert staged["ok"], staged
    assert (await agent.call_function("confirm_pending_to_cart"))["ok"]
    saved = await agent.call_function("save_phone_number", {"phone": "(415) 555-1234"})
    assert saved["ok"], saved
    checkout = await agent.call_function("checkout_order")
    assert checkout["ok"], checkout
    await agent.say(f"Your order number is {checkout['order_number']}.", seconds=0.2)
    assert (await agent.call_function("end_call"))["ok"]
    await agent.say("Thanks for calling, goodbye!", seconds=0.2)


class Shop:
    """The proxied shop and clients that reach it as Twilio and browsers would."""

    def __init__(self, boba: BobaProcess, proxy: NginxProcess | CaddyProcess,
                 tls: ssl.SSLContext, rest: FakeTwilioRest) -> None:
        self.boba, self.proxy, self.tls, self.rest = boba, proxy, tls, rest
        self.public = proxy.public_url
        self.name = "nginx" if isinstance(proxy, NginxProcess) else "caddy"

    def client(self, source: str = "127.0.0.1", **options: Any) -> httpx.AsyncClient:
        """An HTTPS client from a given loopback address (each one is a different client)."""
        transport = httpx.AsyncHTTPTransport(verify=self.tls, local_address=source)
        return httpx.AsyncClient(base_url=self.public, transport=transport, timeout=10,
                                 **options)

    def direct_client(self, source: str) -> httpx.AsyncClient:
        """Straight to boba serve, around the proxy."""
        transport = httpx.AsyncHTTPTransport(local_address=source)
        return httpx.AsyncClient(base_url=self.boba.base_url, transport=transport, timeout=10)


PROXIES = {"nginx": nginx_in_front, "caddy": caddy_in_front}


@pytest.mark.parametrize("proxy", ["nginx", "caddy"])
async def test_the_shop_behind_a_tls_proxy(tmp_path: Path, proxy: str) -> None:
    certificate = self_signed_certificate(tmp_path)
    https_port = free_port()
    public = f"https://127.0.0.1:{https_port}"
    with FakeTwilioRest() as rest:
        async with fake_agent_server(take_an_order) as agent:
            env = {
                "BOBA_PUBLIC_URL": public,
                "BOBA_TRUSTED_PROXIES": "127.0.0.1",
                "BOBA_AGENT_URL": agent.url,
                "BOBA_DATA_DIR": str(tmp_path / "data"),
                "BOBA_DATABASE": f"sqlite:///{tmp_path / 'boba.sqlite3'}",
                "BOBA_STAFF_PASSWORD": STAFF_PASSWORD,
                "TWILIO_ACCOUNT_SID": rest.account_sid,
                "TWILIO_AUTH_TOKEN": rest.auth_token,
                "TWILIO_FROM_NUMBER": "+14155550100",
                "TWILIO_API_BASE_URL": rest.base_url,
                "BOBA_LOG_FORMAT": "json",
                "NO_PROXY": "127.0.0.1,localhost",
            }
            async with in_thread(boba_serve(tmp_path, env)) as boba, in_thread(
                PROXIES[proxy](tmp_path, https_port=https_port, upstream_port=boba.port,
                               certificate=certificate)
            ) as front:
                shop = Shop(boba, front, certificate.client_context(), rest)
                try:
                    await signed_webhooks_only(shop)
                    order_number, call_sid = await whole_call_over_wss(shop)
                    await events_are_not_buffered(shop, order_number)
                    await forwarded_for_only_from_the_proxy(shop)
                    await staff_cookie_is_secure(shop)
                except BaseException:
                    print(f"{proxy} log:\n" + front.error_log()[-3000:])
                    raise
            # boba serve has stopped (SIGTERM): its whole log is written.
            json_logs_tag_the_call(boba, call_sid)


async def signed_webhooks_only(shop: Shop) -> None:
    sid = make_call_sid(1)
    async with shop.client() as client:
        signed = await post_webhook(client, server_url=shop.public, public_url=shop.public,
                                    path="/voice", params=form(sid, CALLER),
                                    auth_token=shop.rest.auth_token)
        assert signed.status_code == 200, signed.text
        assert f'url="wss://127.0.0.1:{shop.proxy.https_port}/twilio"' in signed.text
        unsigned = await post_webhook(client, server_url=shop.public, public_url=shop.public,
                                      path="/voice", params=form(make_call_sid(2), CALLER),
                                      auth_token=None)
        assert unsigned.status_code == 403 and "<Response" not in unsigned.text
        # Signed for the address boba itself listens on, not the public one: refused too,
        # whatever Host or X-Forwarded-* the proxy passes along.
        inner = await post_webhook(client, server_url=shop.public,
                                   public_url=shop.boba.base_url, path="/voice",
                                   params=form(make_call_sid(3), CALLER),
                                   auth_token=shop.rest.auth_token)
        assert inner.status_code == 403


async def whole_call_over_wss(shop: Shop) -> tuple[str, str]:
    sid = make_call_sid(10)
    async with shop.client() as client:
        with trio.fail_after(30):
            async with dial(client, server_url=shop.public, public_url=shop.public,
                            auth_token=shop.rest.auth_token, call_sid=sid, caller=CALLER,
                            ssl_context=shop.tls) as stream:
                await stream.closed.wait()  # the shop hangs up after the goodbye
        assert stream.played.marks_sent and stream.played.marks_sent == stream.played.marks_echoed
        assert stream.played.media_bytes > 0 and stream.played.errors == []
        after = await post_webhook(client, server_url=shop.public, public_url=shop.public,
                                   path="/voice/after", params=form(sid, CALLER),
                                   auth_token=shop.rest.auth_token)
        assert after.status_code == 200 and "<Hangup" in after.text
        staff = {"Authorization": f"Bearer {STAFF_PASSWORD}"}
        orders = (await client.get("/api/orders", params={"status": "all"})).json()
        assert len(orders) == 1
        number = orders[0]["order_number"]
        order = (await client.get(f"/api/orders/{number}", headers=staff)).json()
    assert order["phone"] == CUSTOMER_PHONE and order["total"] == 6.25
    assert order["items"][0]["sweetness"] == "75%" and order["items"][0]["ice"] == "less ice"
    return number, sid


async def events_are_not_buffered(shop: Shop, order_number: str) -> None:
    """The first event reaches a client through the proxy within 1 s of its commit."""
    staff = {"Authorization": f"Bearer {STAFF_PASSWORD}"}
    async with (
        shop.client() as watcher,
        shop.client() as barista,
        watcher.stream("GET", "/orders/events") as events,
    ):
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.aiter_lines()
        committed_at: list[float] = []

        async def press_done() -> None:
            await trio.sleep(0.3)  # headers came: the stream is registered; let it idle
            started = trio.current_time()
            response = await barista.post(f"/api/orders/{order_number}/done",
                                          headers=staff)
            assert response.status_code == 200, response.text
            committed_at.append(started)  # the commit happened after this instant

        async with trio.open_nursery() as nursery:
            nursery.start_soon(press_done)
            with trio.fail_after(10):
                async for line in lines:
                    if line.startswith("data:"):
                        arrived = trio.current_time()
                        break
        event = json.loads(line.removeprefix("data:"))
    assert event == {"type": "order_status_changed", "order_number": order_number,
                     "status": "ready"}
    delay = arrived - committed_at[0]
    print(f"SSE through {shop.name}: first event {delay * 1000:.0f} ms after the request that "
          "committed it")
    assert delay < 1.0, f"the event took {delay:.2f} s through {shop.name}"


async def forwarded_for_only_from_the_proxy(shop: Shop) -> None:
    """Login failures count per client behind the proxy (X-Forwarded-For from a trusted proxy),
    and a client cannot pick its address by sending the header itself."""
    wrong = {"password": "not the password"}
    async with shop.client("127.0.0.2") as first:
        for _ in range(5):
            assert (await first.post("/login", data=wrong)).status_code == 401
        limited = await first.post("/login", data=wrong)
        assert limited.status_code == 429 and "Retry-After" in limited.headers
    async with shop.client("127.0.0.3") as second:  # another client: not limited
        assert (await second.post("/login", data=wrong)).status_code == 401
    async with shop.client("127.0.0.4") as spoofer:  # claims to be the limited one
        claimed = await spoofer.post("/login", data=wrong,
                                     headers={"X-Forwarded-For": "127.0.0.2"})
        assert claimed.status_code == 401
    async with shop.direct_client("127.0.0.5") as around:  # not a trusted proxy
        direct = await around.post("/login", data=wrong,
                                   headers={"X-Forwarded-For": "127.0.0.2"})
        assert direct.status_code == 401
    print(f"X-Forwarded-For: 429 for the client behind {shop.name} that failed 6 times; "
          "401 for another client, a spoofed header, and a direct peer")


async def staff_cookie_is_secure(shop: Shop) -> None:
    async with shop.client("127.0.0.6") as browser:
        response = await browser.post("/login", data={"password": STAFF_PASSWORD},
                                      headers={"Origin": shop.public})
        assert response.status_code == 303, response.text
        cookie = response.headers["set-cookie"]
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert cookie.startswith("boba_session=")
        assert {"secure", "httponly", "samesite"} <= flags, cookie
        assert "samesite=strict" in cookie.lower()
        page = await browser.get("/barista")
        assert page.status_code == 200 and "Log in" not in page.text


def json_logs_tag_the_call(boba: BobaProcess, call_sid: str) -> None:
    lines = boba.log_lines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    about_the_call = [e for e in entries if call_sid in e["message"]]
    assert about_the_call, "no log line about the call"
    assert all(e.get("call_sid") == call_sid for e in about_the_call)
    committed = [e for e in entries if "committed order" in e["message"]]
    assert committed and committed[0]["call_sid"] == call_sid
    text = "\n".join(lines)
    assert CUSTOMER_PHONE not in text and CALLER not in text  # masked at info
