"""Black-box contract audit: CONTRACT §2/§3/§4/§7/§8 checked against a real `boba serve`.

One `boba serve` child process per module (started once, shared by every test here),
configured like a production shop behind a TLS proxy: `BOBA_PUBLIC_URL` is https, Twilio
credentials point at the fake Twilio REST API (so `BOBA_SMS` defaults to `twilio` and the
SMS texts can be read off the wire), and `BOBA_AGENT_URL` points at a closed port (so a
call meets an unreachable agent). Orders are committed through the store on the same
SQLite file from this process, as a second instance sharing the database would, so these
tests depend only on the HTTP surface of the server under test.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import trio
import trio_websocket

from boba_proto.model import Order
from boba_runtime.cli.serve import run_shop
from boba_runtime.store.feed import DEFAULT_PING_INTERVAL
from boba_runtime.store.order_store import OrderStore
from tests.fakes.twilio_client import (
    form,
    make_call_sid,
    open_twilio_stream,
    parse_twiml,
    post_webhook,
    sign,
)
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.helpers.failure_output import show_output_on_failure
from tests.helpers.orders import draft
from tests.helpers.processes import Child, boba_command, run_child
from tests.helpers.sse import SseFrame, sse_frames

PUBLIC = "https://boba.example.com"
PASSWORD = "audit-staff-password"
FROM_NUMBER = "+15550001111"
START_TIMEOUT = 30.0
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ORDER_KEYS = [
    "order_number", "status", "phone", "items", "total", "created_at", "ready_at", "name",
    "sms",
]  # CONTRACT §12 adds "name"
ITEM_KEYS = ["flavor", "toppings", "addons", "sweetness", "ice", "price"]
APOLOGY = "Sorry, we're having trouble taking orders right now. Please call back in a few minutes."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Shop:
    base_url: str
    database: str
    twilio: FakeTwilioRest
    process: subprocess.Popen[str]
    child: Child

    @property
    def staff(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {PASSWORD}"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    root = tmp_path_factory.mktemp("audit")
    port = free_port()
    database = f"sqlite:///{root / 'boba.sqlite3'}"  # an absolute path: sqlite:////tmp/…
    with FakeTwilioRest() as twilio:
        env = {
            "BOBA_HOST": "127.0.0.1",
            "BOBA_PORT": str(port),
            "BOBA_PUBLIC_URL": PUBLIC,
            "BOBA_DATA_DIR": str(root / "data"),
            "BOBA_DATABASE": database,
            "BOBA_STAFF_PASSWORD": PASSWORD,
            "BOBA_AGENT_URL": f"ws://127.0.0.1:{free_port()}/agent",  # nobody listens
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_BASE_URL": twilio.base_url,
        }
        with run_child(boba_command("serve"), cwd=root, env=env, name="boba serve") as child:
            process = child.process
            base_url = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + START_TIMEOUT
                while True:
                    assert process.poll() is None, f"boba serve exited at start\n{child.report()}"
                    try:
                        if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, (
                        f"boba serve did not become healthy\n{child.report()}")
                    time.sleep(0.05)
                yield Shop(base_url, database, twilio, process, child)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


@pytest.fixture(autouse=True)
def server_output_on_failure(request: pytest.FixtureRequest, shop: Shop) -> Iterator[None]:
    """A failing test here shows what the server logged while it ran."""
    start = len(shop.child.stderr)
    show_output_on_failure(request.node, "boba serve output during this test",
                           lambda: shop.child.stdout[-4000:] + shop.child.stderr[start:])
    yield


@pytest.fixture
async def client(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shop.base_url, timeout=10) as client:
        yield client


@pytest.fixture
async def store(shop: Shop) -> AsyncIterator[OrderStore]:
    """The server's store, opened from this process (a second instance on the same file)."""
    opened = await OrderStore.open(shop.database)
    try:
        yield opened
    finally:
        await opened.aclose()


async def new_order(store: OrderStore, phone: str = "+14155551234") -> Order:
    return await store.commit_order(draft(phone))


def assert_json_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]
    assert "<" not in response.text and "Traceback" not in response.text
    error: str = body["error"]
    return error


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def signed(client: httpx.AsyncClient, path: str, params: dict[str, str],
                 shop: Shop, *, signature: str | None = None) -> httpx.Response:
    return await post_webhook(
        client, server_url=shop.base_url, public_url=PUBLIC, path=path, params=params,
        auth_token=shop.twilio.auth_token, signature=signature,
    )


# --- §3 Twilio routes ------------------------------------------------------------------


async def test_voice_twiml_is_the_contracts_text(shop: Shop, client: httpx.AsyncClient) -> None:
    sid = make_call_sid(0xA0D17)
    response = await signed(client, "/voice", form(sid, "+14155551234"), shop)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    token = parse_twiml(response.text).parameters["token"]
    assert re.fullmatch(r"[0-9]+\.[0-9a-f]{32}", token)  # expiry . MAC (CONTRACT §3)
    # The contract's texts verbatim (`"/>`, not the twilio package's `" />`).
    assert response.text.endswith(
        "<Response><Say>Connecting you to the Deepgram Boba Rista.</Say>"
        f'<Connect action="{PUBLIC}/voice/after">'
        '<Stream url="wss://boba.example.com/twilio">'
        '<Parameter name="caller" value="+14155551234"/>'
        f'<Parameter name="callSid" value="{sid}"/>'
        f'<Parameter name="token" value="{token}"/>'
        "</Stream></Connect></Response>"
    ), response.text

    after = await signed(client, "/voice/after", form(sid, "+14155551234"), shop)
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/xml")
    assert after.text.endswith("<Response><Hangup/></Response>"), after.text


async def test_twilio_refusals_are_json_and_carry_no_twiml(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    params = form(make_call_sid(0xBAD), "+14155551234")
    for path in ("/voice", "/voice/after"):
        for signature in (None, "", "bm90IHRoZSBzaWduYXR1cmU="):
            headers = {} if signature is None else {"X-Twilio-Signature": signature}
            response = await client.post(path, data=params, headers=headers)
            assert_json_error(response, 403)
    # Signed for the address the request went to, not BOBA_PUBLIC_URL: refused as well.
    wrong_url = sign(shop.twilio.auth_token, f"{shop.base_url}/voice", params)
    assert_json_error(await signed(client, "/voice", params, shop, signature=wrong_url), 403)
    no_sid = {k: v for k, v in params.items() if k != "CallSid"}
    assert_json_error(await signed(client, "/voice", no_sid, shop), 400)
    # The media stream's handshake: refused with 403 before the socket is accepted.
    for headers in ([], [(b"X-Twilio-Signature", b"bm90IHJpZ2h0")]):
        with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
            async with trio_websocket.open_websocket_url(
                f"ws://{shop.base_url[7:]}/twilio", extra_headers=headers, connect_timeout=5
            ):
                pass
        assert rejected.value.status_code == 403


async def test_unreachable_agent_ends_the_stream_and_after_apologises(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    sid = make_call_sid(0xDEAD)
    answer = await signed(client, "/voice", form(sid, "+14155551234"), shop)
    twiml = parse_twiml(answer.text)
    assert twiml.stream_url == "wss://boba.example.com/twilio"
    async with open_twilio_stream(
        server_url=shop.base_url, stream_url=twiml.stream_url,
        auth_token=shop.twilio.auth_token, call_sid=sid, parameters=twiml.parameters,
    ) as stream:
        await stream.send_connected()
        await stream.send_start()
        with trio.fail_after(10):
            await stream.closed.wait()  # the bridge ends the stream itself
    after = await signed(client, "/voice/after", form(sid, "+14155551234"), shop)
    assert after.status_code == 200
    assert after.text.endswith(f"<Response><Say>{APOLOGY}</Say><Hangup/></Response>"), after.text


# --- §3 the order API ------------------------------------------------------------------


async def test_list_query_parameters(
    shop: Shop, client: httpx.AsyncClient, store: OrderStore
) -> None:
    for _ in range(51):
        await new_order(store)
    default = await client.get("/api/orders")
    assert default.status_code == 200
    assert default.headers["content-type"].startswith("application/json")
    assert len(default.json()) == 50
    everything = (await client.get("/api/orders", params={"status": "all", "limit": "500"})).json()
    assert len(everything) >= 51
    numbers = [o["order_number"] for o in everything if o["status"] in ("received", "ready")]
    assert [o["order_number"] for o in default.json()] == numbers[:50]  # newest first
    one = await client.get("/api/orders", params={"limit": "1"})
    assert [o["order_number"] for o in one.json()] == numbers[:1]
    # "larger is capped" (docs/serve.md), however large: a 5000-digit limit made int() raise.
    for limit in ("501", "9" * 5000):
        capped = await client.get("/api/orders", params={"status": "all", "limit": limit})
        assert capped.status_code == 200 and len(capped.json()) <= 500

    for status in ("", "lost", "ACTIVE", "received", "picked_up"):
        assert_json_error(await client.get("/api/orders", params={"status": status}), 400)
    # "²" passed str.isdigit and then broke int(): a 500 instead of a 400.
    for limit in ("", "0", "000", "-1", "+5", "1.5", "ten", " 5", "²", "５"):
        assert_json_error(await client.get("/api/orders", params={"limit": limit}), 400)


async def test_order_json_shape_staff_and_public(
    shop: Shop, client: httpx.AsyncClient, store: OrderStore
) -> None:
    order = await new_order(store, "+14155550199")
    staff = await client.get(f"/api/orders/{order.order_number}", headers=shop.staff)
    assert staff.status_code == 200
    assert staff.headers["content-type"].startswith("application/json")
    body = staff.json()
    assert list(body) == ORDER_KEYS
    assert re.fullmatch(r"\d{4}", body["order_number"])
    assert body["status"] == "received" and body["phone"] == "+14155550199"
    assert body["items"] == [{
        "flavor": "taro milk tea", "toppings": ["boba"], "addons": [],
        "sweetness": "50%", "ice": "regular ice", "price": 6.25,
    }]
    assert list(body["items"][0]) == ITEM_KEYS
    assert isinstance(body["total"], float) and body["total"] == 6.25
    assert TIMESTAMP.match(body["created_at"]) and body["ready_at"] is None
    assert list(body["sms"]) == ["received", "ready"]
    assert body["sms"]["received"] in {"queued", "sent"} and body["sms"]["ready"] is None

    public = [o for o in (await client.get("/api/orders")).json()
              if o["order_number"] == order.order_number]
    assert len(public) == 1
    assert list(public[0]) == [k for k in ORDER_KEYS if k not in ("phone", "sms")]
    assert {k: v for k, v in body.items() if k not in ("phone", "sms")} == public[0]


async def test_staff_auth_basic_bearer_and_cookie(
    shop: Shop, client: httpx.AsyncClient, store: OrderStore
) -> None:
    order = await new_order(store)
    path = f"/api/orders/{order.order_number}"
    for headers in ({}, {"Authorization": "Bearer nope"}, basic("x", "nope"),
                    {"Authorization": f"Token {PASSWORD}"}, {"Authorization": PASSWORD}):
        assert_json_error(await client.get(path, headers=headers), 401)
        assert_json_error(await client.post(f"{path}/done", headers=headers), 401)
    for headers in (shop.staff, basic("barista", PASSWORD), basic("", PASSWORD)):
        assert (await client.get(path, headers=headers)).status_code == 200

    login = await client.post("/login", data={"password": PASSWORD})
    assert login.status_code in (302, 303)
    cookie = login.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith("boba_session=")
    assert {"httponly", "secure", "samesite", "max-age", "path"} <= attributes
    assert "samesite=strict" in cookie.lower() and "max-age=43200" in cookie.lower()
    value = cookie.split(";")[0].split("=", 1)[1]
    # Secure (the public URL is https), so send it by hand over this plain-http socket.
    with_cookie = {"Cookie": f"boba_session={value}"}
    assert (await client.get(path, headers=with_cookie)).json()["phone"] == "+14155551234"
    console = await client.get("/barista", headers=with_cookie)
    assert console.status_code == 200 and 'name="password"' not in console.text
    assert_json_error(await client.get(path, headers={"Cookie": f"boba_session={value}x"}), 401)

    logout = await client.post("/logout", headers=with_cookie)
    assert logout.status_code in (302, 303)
    assert re.search(r"boba_session=;.*(max-age=0|expires=thu, 01 jan 1970)",
                     logout.headers["set-cookie"].lower())

    wrong = await client.post("/login", data={"password": "guess"})
    assert wrong.status_code == 401 and 'name="password"' in wrong.text
    assert "set-cookie" not in wrong.headers
    form_page = await client.get("/barista")
    assert form_page.status_code == 200 and 'name="password"' in form_page.text
    assert "+1415555" not in form_page.text


async def test_login_throttle_is_429_from_one_address(shop: Shop) -> None:
    # From 127.0.0.2, so this address's lock-out does not touch the other tests' logins.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=shop.base_url, transport=transport) as other:
        codes = [(await other.post("/login", data={"password": "guess"})).status_code
                 for _ in range(6)]
        assert codes == [401] * 5 + [429]
        # Only wrong guesses are refused: the right password still logs in.
        right = await other.post("/login", data={"password": PASSWORD})
        assert right.status_code == 303 and "set-cookie" in right.headers


async def test_transitions_status_codes_and_sms_on_the_wire(
    shop: Shop, client: httpx.AsyncClient, store: OrderStore
) -> None:
    committed_at = time.monotonic()
    ready_order = await new_order(store, "+14155550142")
    number = ready_order.order_number
    base = f"/api/orders/{number}"

    done_at = time.monotonic()
    done = await client.post(f"{base}/done", headers=shop.staff)
    assert done.status_code == 200 and list(done.json()) == ORDER_KEYS
    assert done.json()["status"] == "ready" and TIMESTAMP.match(done.json()["ready_at"])
    again = await client.post(f"{base}/done", headers=shop.staff)  # idempotent
    assert again.status_code == 200 and again.json()["status"] == "ready"
    assert_json_error(await client.post(f"{base}/cancel", headers=shop.staff), 409)

    # §8: both texts, exactly, handed to Twilio within 5 s; the second Done queued nothing.
    received = (f"Thanks for your order! Your order number is {number}. "
                f"It should be ready in about {ready_order.ready_in_minutes} minutes. "  # §12
                "We'll text you when it's ready for pickup.")
    ready = f"Your boba order #{number} is now ready for pickup!"
    with trio.fail_after(8):  # the bound is checked below, on the fake's own clock
        while True:
            bodies = [m.form.get("Body") for m in shop.twilio.created_messages()
                      if m.form.get("To") == "+14155550142"]
            sms = (await client.get(base, headers=shop.staff)).json()["sms"]
            if sms == {"received": "sent", "ready": "sent"} and len(bodies) >= 2:
                break
            await trio.sleep(0.1)
    assert sorted(bodies) == sorted([received, ready])
    handed = {m.form.get("Body"): m.received_at for m in shop.twilio.created_messages()
              if m.form.get("To") == "+14155550142"}
    received_after, ready_after = handed[received] - committed_at, handed[ready] - done_at
    print(f"SMS handed to Twilio {received_after:.2f} s after the commit (received), "
          f"{ready_after:.2f} s after Done (ready)")
    assert received_after < 5 and ready_after < 5, (received_after, ready_after)
    assert {m.form.get("From") for m in shop.twilio.created_messages()} == {FROM_NUMBER}

    picked = await client.post(f"{base}/picked-up", headers=shop.staff)
    assert picked.status_code == 200 and picked.json()["status"] == "picked_up"
    for action in ("done", "picked-up", "cancel"):
        assert_json_error(await client.post(f"{base}/{action}", headers=shop.staff), 409)

    other = await new_order(store, "+14155550143")
    cancelled = await client.post(f"/api/orders/{other.order_number}/cancel", headers=shop.staff)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["sms"]["ready"] is None
    assert_json_error(
        await client.post(f"/api/orders/{other.order_number}/picked-up", headers=shop.staff), 409
    )
    for action in ("done", "picked-up", "cancel"):
        assert_json_error(await client.post(f"/api/orders/0000/{action}", headers=shop.staff), 404)
    assert_json_error(await client.get("/api/orders/0000", headers=shop.staff), 404)


async def test_errors_are_json_with_the_right_status(shop: Shop, client: httpx.AsyncClient) -> None:
    assert_json_error(await client.get("/no/such/page"), 404)
    assert_json_error(await client.get("/api/orders/1234/nothing"), 404)
    not_allowed = await client.delete("/api/orders")
    assert_json_error(not_allowed, 405)
    assert "GET" in not_allowed.headers["allow"]
    assert_json_error(await client.get("/api/orders/1234/done", headers=shop.staff), 405)
    assert_json_error(await client.put("/healthz"), 405)
    assert_json_error(
        await client.post("/api/orders/1234/done", headers=shop.staff,
                          content=b"x" * (1024 * 1024 + 1)),
        413,
    )
    # The same kept-alive connection still answers after the refused body (it hung).
    assert_json_error(await client.get("/orders/events", headers={"Last-Event-ID": "x"}), 400)


async def test_a_body_the_handler_ignores_does_not_hang_the_connection(shop: Shop) -> None:
    # Hypercorn left a kept-alive connection hanging when a response ended before the
    # request body had arrived; the next request on it got no answer.
    async with httpx.AsyncClient(base_url=shop.base_url, timeout=10) as client:
        for size in (70_000, 100_000, 200_000, 500_000, 1024 * 1024):
            refused = await client.post("/api/orders/0000/done", headers=shop.staff,
                                        content=b"x" * size)
            assert_json_error(refused, 404)
            assert (await client.get("/healthz")).status_code == 200, size


async def test_healthz_and_metrics(shop: Shop, client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.headers["content-type"].startswith("application/json")
    assert health.json() == {"status": "ok"}
    assert_json_error(await client.get("/metrics"), 401)
    metrics = await client.get("/metrics", headers=shop.staff)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    for name in ("boba_calls_active", "boba_calls_total", "boba_orders", "boba_sms_messages"):
        assert re.search(rf"^{name}\b", metrics.text, re.MULTILINE), name


async def test_pages_status_and_type(shop: Shop, client: httpx.AsyncClient) -> None:
    for path in ("/orders", "/barista"):
        page = await client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


# --- §7 Server-Sent Events -----------------------------------------------------------


async def next_event(frames: AsyncIterator[SseFrame]) -> SseFrame:
    async for frame in frames:
        if frame.data:
            return frame
    raise AssertionError("the event stream ended")


async def test_sse_wire_format(shop: Shop, store: OrderStore) -> None:
    async with httpx.AsyncClient(base_url=shop.base_url, timeout=10) as client:
        with trio.fail_after(10):
            async with client.stream("GET", "/orders/events") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].split(";")[0] == "text/event-stream"
                frames = sse_frames(response.aiter_lines())
                order = await new_order(store, "+14155550177")  # after we subscribed
                created = await next_event(frames)
                await store.mark_ready(order.order_number)
                changed = await next_event(frames)
    for frame in (created, changed):
        assert frame.fields == ["id", "data"] and len(frame.data) == 1  # no `event:` line
        assert "+1415555" not in frame.data[0]
    assert created.id is not None and changed.id is not None and changed.id > created.id
    assert json.loads(created.data[0]) == {
        "type": "order_created", "order_number": order.order_number, "status": "received",
    }
    assert json.loads(changed.data[0]) == {
        "type": "order_status_changed", "order_number": order.order_number, "status": "ready",
    }
    # With Last-Event-ID: every later event first, in order, then nothing twice.
    async with httpx.AsyncClient(base_url=shop.base_url, timeout=10) as client:
        with trio.fail_after(10):
            headers = {"Last-Event-ID": str(created.id - 1)}
            async with client.stream("GET", "/orders/events", headers=headers) as response:
                frames = sse_frames(response.aiter_lines())
                replayed = [await next_event(frames), await next_event(frames)]
    assert [(f.id, f.data) for f in replayed] == [(f.id, f.data) for f in (created, changed)]


def test_ping_interval_leaves_a_margin_under_15_seconds() -> None:
    # §7: a `: ping` at least every 15 s. Pinging after exactly 15 idle seconds arrives a
    # little after a 15 s client deadline; `boba serve` must use the shorter default.
    assert DEFAULT_PING_INTERVAL <= 12
    default = inspect.signature(run_shop).parameters["sse_ping_interval"].default
    assert default == DEFAULT_PING_INTERVAL


def test_public_url_scheme_in_any_case_still_means_https() -> None:
    # "HTTPS://…" was kept as given, so the session cookie lost `Secure` behind a TLS proxy
    # (the pages test `public_url.startswith("https://")`).
    from boba_runtime.config.settings import load_settings

    settings = load_settings({}, {"BOBA_PUBLIC_URL": "HTTPS://Boba.Example.com/",
                                  "TWILIO_AUTH_TOKEN": "t",
                                  "BOBA_DATA_DIR": "/nonexistent-audit"}, None)
    assert settings.public_url == "https://Boba.Example.com"
    assert settings.stream_url == "wss://Boba.Example.com/twilio"


async def test_an_http2_client_cannot_stop_the_server(shop: Shop) -> None:
    # Last in this module: without the fix it kills the shared server. HTTP/2 DATA after
    # an early 413 raised KeyError inside Hypercorn, which ended the whole trio server
    # (pgjones/hypercorn#329); HTTP/2 needs no TLS (prior knowledge), nor any password.
    body = b"x" * (3 * 1024 * 1024)
    async with httpx.AsyncClient(base_url=shop.base_url, http1=False, http2=True,
                                 timeout=5) as h2_client:
        for _ in range(25):
            try:
                response = await h2_client.post("/api/orders/1234/done", content=body)
            except httpx.TransportError:
                continue  # that connection may be closed; the server must stay up
            assert_json_error(response, 413)
    assert shop.process.poll() is None, "boba serve exited"
    async with httpx.AsyncClient(base_url=shop.base_url, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("request_line", [
    b"GET /healthz HTTP/1.1\r\nHost: boba.example.com\r\nConnection: close\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\nHost: boba.example.com\r\n\r\n",
])
async def test_a_connection_the_response_closes_is_closed(shop: Shop, request_line: bytes) -> None:
    # Hypercorn closed such a connection from inside the app's task while quart-trio was
    # cancelling it: the close was cancelled, the socket stayed open, the client (and a
    # graceful shutdown) waited for an end that never came.
    port = int(shop.base_url.rsplit(":", 1)[1])
    answer = b""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request_line)
            while chunk := await stream.receive_some(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}'), answer
