"""The order API and /healthz against the real stack (Hypercorn on 127.0.0.1:0 + httpx)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import trio

from boba_runtime.config.auth import SESSION_COOKIE, make_session_cookie
from tests.helpers.orders import place_order
from tests.helpers.server import STAFF_PASSWORD, RunningServer, running_server


@pytest.fixture
async def client(boba_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=boba_server.base_url, timeout=10) as client:
        yield client


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def assert_json_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"].endswith(".")
    assert "Traceback" not in response.text and "<html" not in response.text.lower()
    error: str = body["error"]
    return error


async def test_healthz_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_503_when_store_does_not_answer(
    boba_server: RunningServer, client: httpx.AsyncClient
) -> None:
    await boba_server.services.store.aclose()
    response = await client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and "store" in body["reason"]


async def test_public_list_has_no_phone_and_no_sms(
    boba_server: RunningServer, client: httpx.AsyncClient
) -> None:
    first = await place_order(boba_server.services, "+14155550001")
    second = await place_order(boba_server.services, "+14155550002")
    response = await client.get("/api/orders")
    assert response.status_code == 200
    orders = response.json()
    assert [o["order_number"] for o in orders] == [second.order_number, first.order_number]
    for order in orders:
        assert "phone" not in order and "sms" not in order
        assert order["status"] == "received"
        assert order["items"][0] == {
            "flavor": "taro milk tea", "toppings": ["boba"], "addons": [],
            "sweetness": "50%", "ice": "regular ice", "price": 6.25,
        }
        assert order["total"] == 6.25 and order["created_at"].endswith("Z")
    assert "+1415555" not in response.text


async def test_list_filters_and_limits(
    boba_server: RunningServer, client: httpx.AsyncClient
) -> None:
    orders = [await place_order(boba_server.services) for _ in range(3)]
    await boba_server.services.store.mark_ready(orders[0].order_number)
    await boba_server.services.store.cancel(orders[1].order_number)

    ready = (await client.get("/api/orders", params={"status": "ready"})).json()
    assert [o["order_number"] for o in ready] == [orders[0].order_number]
    active = (await client.get("/api/orders")).json()
    assert {o["order_number"] for o in active} == {orders[0].order_number, orders[2].order_number}
    everything = (await client.get("/api/orders", params={"status": "all"})).json()
    assert len(everything) == 3
    one = (await client.get("/api/orders", params={"status": "all", "limit": "1"})).json()
    assert one == everything[:1]
    capped = await client.get("/api/orders", params={"limit": "100000"})
    assert capped.status_code == 200

    assert_json_error(await client.get("/api/orders", params={"status": "lost"}), 400)
    assert_json_error(await client.get("/api/orders", params={"limit": "0"}), 400)
    assert_json_error(await client.get("/api/orders", params={"limit": "ten"}), 400)


async def test_staff_routes_need_the_password(
    boba_server: RunningServer, client: httpx.AsyncClient
) -> None:
    order = await place_order(boba_server.services)
    path = f"/api/orders/{order.order_number}"
    for headers in ({}, {"Authorization": "Bearer wrong"}, basic("staff", "wrong"),
                    {"Authorization": "Basic !!!"}, {"Authorization": f"Token {STAFF_PASSWORD}"}):
        response = await client.get(path, headers=headers)
        assert_json_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert_json_error(await client.post(f"{path}/done"), 401)
    assert (await client.get("/api/orders")).json()[0]["status"] == "received"  # unchanged

    for headers in (boba_server.staff_headers, basic("anyone", STAFF_PASSWORD),
                    basic("", STAFF_PASSWORD)):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert body["phone"] == "+14155551234"
        assert body["sms"]["received"] in {"queued", "sent"}
        assert body["sms"]["ready"] is None


async def test_session_cookie_is_accepted_until_it_expires(
    boba_server: RunningServer, client: httpx.AsyncClient
) -> None:
    services = boba_server.services
    order = await place_order(services)
    path = f"/api/orders/{order.order_number}"
    pw = services.staff_password
    fresh = make_session_cookie(services.secret_key, services.clock(), password=pw)
    old = make_session_cookie(
        services.secret_key, services.clock() - timedelta(hours=13), password=pw
    )
    forged = make_session_cookie(b"another key", services.clock(), password=pw)
    client.cookies.set(SESSION_COOKIE, fresh)
    assert (await client.get(path)).status_code == 200
    for bad in (old, forged, "", "123.abc", fresh + "x"):
        client.cookies.set(SESSION_COOKIE, bad)
        assert_json_error(await client.get(path), 401)


async def test_order_lifecycle_done_picked_up(
    boba_server: RunningServer, client: httpx.AsyncClient
) -> None:
    order = await place_order(boba_server.services)
    base = f"/api/orders/{order.order_number}"
    staff = boba_server.staff_headers

    done = await client.post(f"{base}/done", headers=staff)
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "ready" and body["ready_at"].endswith("Z")
    assert body["sms"]["ready"] in {"queued", "sent"}

    again = await client.post(f"{base}/done", headers=staff)  # idempotent
    assert again.status_code == 200 and again.json()["status"] == "ready"
    assert again.json()["ready_at"] == body["ready_at"]

    assert_json_error(await client.post(f"{base}/cancel", headers=staff), 409)
    picked = await client.post(f"{base}/picked-up", headers=staff)
    assert picked.status_code == 200 and picked.json()["status"] == "picked_up"
    assert "picked" in assert_json_error(await client.post(f"{base}/done", headers=staff), 409)
    assert_json_error(await client.post(f"{base}/picked-up", headers=staff), 409)
    # still readable by number after it left the board
    assert (await client.get(base, headers=staff)).json()["status"] == "picked_up"
    assert (await client.get("/api/orders")).json() == []


async def test_cancel_and_conflicts(
    boba_server: RunningServer, client: httpx.AsyncClient
) -> None:
    order = await place_order(boba_server.services)
    base = f"/api/orders/{order.order_number}"
    staff = boba_server.staff_headers
    assert_json_error(await client.post(f"{base}/picked-up", headers=staff), 409)
    cancelled = await client.post(f"{base}/cancel", headers=staff)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["sms"]["ready"] is None
    assert_json_error(await client.post(f"{base}/done", headers=staff), 409)


async def test_unknown_orders_are_404(
    boba_server: RunningServer, client: httpx.AsyncClient
) -> None:
    staff = boba_server.staff_headers
    assert_json_error(await client.get("/api/orders/0000", headers=staff), 404)
    for action in ("done", "picked-up", "cancel"):
        assert_json_error(await client.post(f"/api/orders/0000/{action}", headers=staff), 404)
    assert_json_error(await client.get("/api/orders/not-a-number", headers=staff), 404)


async def test_errors_are_json_everywhere(client: httpx.AsyncClient) -> None:
    assert_json_error(await client.get("/api/nothing-here"), 404)
    assert_json_error(await client.get("/no/such/page"), 404)
    not_allowed = await client.delete("/api/orders")
    assert_json_error(not_allowed, 405)
    assert "GET" in not_allowed.headers["allow"]
    assert_json_error(await client.get("/api/orders/1234/done"), 405)
    too_big = await client.post(
        "/api/orders/1234/done", content=b"x" * (2 * 1024 * 1024),
        headers={"Authorization": f"Bearer {STAFF_PASSWORD}"},
    )
    assert_json_error(too_big, 413)


async def test_unexpected_exception_is_a_plain_json_500(boba_server: RunningServer) -> None:
    from boba_web.app import create_app

    app = create_app(boba_server.services)

    @app.get("/api/boom")
    async def boom() -> str:
        raise RuntimeError("secret internals")

    response = await app.test_client().get("/api/boom")
    assert response.status_code == 500
    text = await response.get_data(as_text=True)
    assert "secret internals" not in text and "Traceback" not in text
    assert response.content_type == "application/json"
    assert (await response.get_json())["error"].endswith(".")


async def test_ready_orders_are_picked_up_automatically(tmp_path: Path) -> None:
    env = {"BOBA_READY_EXPIRY_MINUTES": "0.01"}  # 0.6 s
    async with running_server(tmp_path / "shop", env) as server:
        services = server.services
        waiting = await place_order(services)
        order = await place_order(services)
        await services.store.mark_ready(order.order_number)
        with trio.fail_after(10):
            while True:
                current = await services.store.get_order(order.order_number)
                assert current is not None
                if current.status.value == "picked_up":
                    break
                await trio.sleep(0.1)
        still = await services.store.get_order(waiting.order_number)
        assert still is not None and still.status.value == "received"  # only ready ones expire
