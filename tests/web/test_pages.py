"""The shop-floor pages over the Quart test client: what each visitor may see."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from boba_web.app import create_app
from tests.browser.shop import STAFF_PASSWORD, make_draft, shop_services

STAFF = {"Authorization": f"Bearer {STAFF_PASSWORD}"}
PHONE_RE = re.compile(r"\+\d{8,15}")


async def test_tv_board_page_is_public_and_has_no_order_data(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        order = await services.store.commit_order(make_draft())
        client = create_app(services).test_client()
        response = await client.get("/orders")
        assert response.status_code == 200
        assert response.content_type.startswith("text/html")
        html = await response.get_data(as_text=True)
        assert "Preparing" in html and "Ready" in html
        assert order.phone not in html and not PHONE_RE.search(html)
        assert "/assets/tv.js" in html and "/assets/events.js" in html
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]


async def test_barista_without_session_shows_only_the_login_form(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        order = await services.store.commit_order(make_draft())
        client = create_app(services).test_client()
        response = await client.get("/barista")
        assert response.status_code == 200
        html = await response.get_data(as_text=True)
        assert '<form class="login-box" method="post" action="/login">' in html
        assert 'name="password"' in html
        assert order.order_number not in html and order.phone not in html
        assert "barista.js" not in html


async def test_barista_with_staff_credentials_shows_the_console(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        response = await client.get("/barista", headers=STAFF)
        assert response.status_code == 200
        html = await response.get_data(as_text=True)
        assert "/assets/barista.js" in html and 'action="/logout"' in html
        assert 'name="password"' not in html


async def test_console_list_is_staff_only_and_carries_phone_and_sms(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        first = await services.store.commit_order(make_draft())
        second = await services.store.commit_order(make_draft(toppings=()))
        await services.store.mark_ready(first.order_number)
        client = create_app(services).test_client()

        anonymous = await client.get("/barista/orders")
        assert anonymous.status_code == 401
        assert (await anonymous.get_json())["error"]

        response = await client.get("/barista/orders", headers=STAFF)
        assert response.status_code == 200
        orders = await response.get_json()
        by_number = {o["order_number"]: o for o in orders}
        assert set(by_number) == {first.order_number, second.order_number}
        assert by_number[first.order_number]["status"] == "ready"
        assert by_number[first.order_number]["phone"] == first.phone
        assert by_number[first.order_number]["sms"] == {"received": "queued", "ready": "queued"}
        assert by_number[second.order_number]["sms"] == {"received": "queued", "ready": None}
        assert by_number[second.order_number]["total"] == 5.5


async def test_console_list_leaves_out_finished_orders(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        done = await services.store.commit_order(make_draft())
        cancelled = await services.store.commit_order(make_draft())
        waiting = await services.store.commit_order(make_draft())
        await services.store.mark_ready(done.order_number)
        await services.store.mark_picked_up(done.order_number)
        await services.store.cancel(cancelled.order_number)
        client = create_app(services).test_client()
        orders = await (await client.get("/barista/orders", headers=STAFF)).get_json()
        assert [o["order_number"] for o in orders] == [waiting.order_number]


async def test_assets_are_served_from_the_package(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        for name, kind in [
            ("events.js", "javascript"),
            ("tv.js", "javascript"),
            ("barista.js", "javascript"),
            ("shop.css", "text/css"),
        ]:
            response = await client.get(f"/assets/{name}")
            assert response.status_code == 200, name
            assert kind in response.content_type, (name, response.content_type)


def test_pages_load_nothing_from_other_hosts() -> None:
    """Offline shop floor: no CDN, no web fonts, no absolute URLs in templates or assets."""
    package = resources.files("boba_web")
    texts = {
        f"{folder}/{entry.name}": entry.read_text(encoding="utf-8")
        for folder in ("templates", "static")
        for entry in package.joinpath(folder).iterdir()
        if entry.name.endswith((".html", ".js", ".css"))
    }
    assert {"templates/tv.html", "templates/barista.html", "static/tv.js"} <= set(texts)
    for name, text in texts.items():
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), name
        assert not re.search(r"""(fetch|import|url)\(\s*["'`](https?:)?//""", text), name
        assert "@import" not in text, name


def test_tv_script_reads_only_public_data() -> None:
    """The TV must never ask a staff route: only the public list, the event stream and the
    public shop state (the waits, CONTRACT §12)."""
    script = resources.files("boba_web").joinpath("static/tv.js").read_text(encoding="utf-8")
    urls = set(re.findall(r"""["'`](/[a-z][^"'`]*)["'`]""", script))
    assert urls == {"/api/orders?status=active&limit=500", "/orders/events", "/api/shop"}
