"""CONTRACT §12 on the shop floor, in headless Chromium: the console's sold-out toggles and
pause switch (one tap, tablet-sized, live on every console), and the TV's first names and
waits (updated as orders are done)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from boba_proto.model import OrderDraft
from tests.browser.cdp import Browser, Page
from tests.browser.shop import STAFF_PASSWORD, make_draft, running_server, shop_services

pytestmark = pytest.mark.browser

TV_SIZE = (1920, 1080)
TABLET_SIZE = (768, 1024)


async def log_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/barista")
    await page.click("#password")
    await page.type_text(STAFF_PASSWORD)
    await page.press_enter()
    await page.wait_for("document.getElementById('shop')?.dataset.loaded === 'true'", timeout=10)
    await page.wait_for("document.getElementById('connection').dataset.state === 'live'")


def toggle(kind: str, name: str) -> str:
    return f'#menu-items button[data-kind="{kind}"][data-name="{name}"]'


def named(draft: OrderDraft, name: str) -> OrderDraft:
    return OrderDraft(phone=draft.phone, items=draft.items, total_cents=draft.total_cents,
                      name=name)


async def test_console_toggles_are_one_tap_and_live_on_every_console(
    tmp_path: Path, browser: Browser, screenshot_dir: Path
) -> None:
    async with shop_services(tmp_path) as services, running_server(services) as base:
        store = services.store
        first = await store.commit_order(named(make_draft(), "Ana"))
        await store.commit_order(make_draft(toppings=("boba", "egg pudding")))
        tablet = await browser.new_page(width=TABLET_SIZE[0], height=TABLET_SIZE[1])
        await log_in(tablet, base)
        other = await browser.new_page(width=1280, height=800)  # a second console
        await other.goto(f"{base}/barista")
        await other.wait_for("document.getElementById('shop')?.dataset.loaded === 'true'")
        await other.wait_for("document.getElementById('connection').dataset.state === 'live'")

        taro = toggle("flavors", "taro milk tea")
        assert await tablet.evaluate(f"document.querySelector('{taro}').dataset.available") \
            == "true"
        # Tablet-sized: nothing wider than 768 px, every control at least 44 px tall.
        layout = await tablet.evaluate(
            """(() => ({
                scroll: document.documentElement.scrollWidth,
                heights: [...document.querySelectorAll('#shop button')].map(
                    b => b.getBoundingClientRect().height),
            }))()""")
        assert layout["scroll"] <= TABLET_SIZE[0]
        assert len(layout["heights"]) == 1 + 2 + 4 + 1  # pause + flavors + toppings + add-on
        assert min(layout["heights"]) >= 44

        # One tap: sold out, stored, and shown on the other console without a reload.
        await tablet.click(taro)
        await tablet.wait_for(f"document.querySelector('{taro}').dataset.available === 'false'")
        await other.wait_for(f"document.querySelector('{taro}').dataset.available === 'false'",
                             timeout=2)
        async with httpx.AsyncClient(base_url=base) as client:
            menu = (await client.get("/api/menu")).json()
        assert menu["flavors"][0] == {"name": "taro milk tea", "price": 5.5, "available": False}
        assert services.shop.availability.flavors == frozenset({"taro milk tea"})

        # The pause switch, one tap, live too.
        await tablet.click("#taking-orders")
        await other.wait_for(
            "document.getElementById('taking-orders').dataset.taking === 'false'", timeout=2)
        assert services.shop.taking_orders is False
        label = await other.evaluate("document.getElementById('taking-orders').innerText")
        assert "paused" in label

        # The wait on the console: overall, and per preparing order on its card.
        await tablet.wait_for("document.getElementById('wait-now').innerText === "
                              "'Wait now: 6 min'")
        card = f'#orders [data-order="{first.order_number}"]'
        await tablet.wait_for(f"document.querySelector('{card} .wait')?.innerText === '~5 min'")
        assert "Ana" in await tablet.evaluate(f"document.querySelector('{card}').innerText")
        await tablet.screenshot(screenshot_dir / "barista-shop-controls.png")

        # And back: available again, taking orders again.
        await other.click(taro)
        await tablet.wait_for(f"document.querySelector('{taro}').dataset.available === 'true'",
                              timeout=2)
        await other.click("#taking-orders")
        await tablet.wait_for(
            "document.getElementById('taking-orders').dataset.taking === 'true'", timeout=2)
        assert services.shop.availability.flavors == frozenset()
        assert services.shop.taking_orders is True


async def test_tv_shows_first_names_and_waits_that_follow_the_orders(
    tmp_path: Path, browser: Browser, screenshot_dir: Path
) -> None:
    async with shop_services(tmp_path) as services, running_server(services) as base:
        store = services.store
        ana = await store.commit_order(named(make_draft(), "Ana Lucia"))
        bo = await store.commit_order(named(make_draft(toppings=("boba", "egg pudding")), "Bo"))
        page = await browser.new_page(width=TV_SIZE[0], height=TV_SIZE[1])
        await page.goto(f"{base}/orders")
        await page.wait_for("document.getElementById('connection').dataset.state === 'live'")

        def tile(number: str) -> str:
            return f'#preparing [data-order="{number}"]'

        await page.wait_for(f"document.querySelector('{tile(ana.order_number)} .name')"
                            "?.innerText === 'Ana'")
        text = await page.evaluate(f"document.querySelector('{tile(ana.order_number)}').innerText")
        assert "Lucia" not in text  # the first name only
        # The waits come from /api/shop, fetched after the list: wait for them too.
        await page.wait_for(f"document.querySelector('{tile(ana.order_number)} .label')"
                            "?.dataset.wait === '5'")
        await page.wait_for(f"document.querySelector('{tile(bo.order_number)} .label')"
                            "?.dataset.wait === '5'")
        # A new named order arrives live, with its name and its wait behind the others.
        cy = await store.commit_order(named(make_draft(), "Cy"))
        await page.wait_for(f"document.querySelector('{tile(cy.order_number)} .name')"
                            "?.innerText === 'Cy'", timeout=2)
        await page.wait_for(f"document.querySelector('{tile(cy.order_number)} .label')"
                            "?.dataset.wait === '6'", timeout=2)
        body = await page.evaluate("document.body.innerText")
        assert "+1415" not in body and "sold out" not in body.lower()
        await page.screenshot(screenshot_dir / "tv-board-names.png")

        # Done on the first order: it moves to Ready and the others' waits shrink.
        async with httpx.AsyncClient(base_url=base,
                                     headers={"Authorization": f"Bearer {STAFF_PASSWORD}"}) as c:
            assert (await c.post(f"/api/orders/{ana.order_number}/done")).status_code == 200
        in_ready = f"#ready [data-order=\"{ana.order_number}\"]"
        await page.wait_for(f"!!document.querySelector('{in_ready}')", timeout=2)
        await page.wait_for(f"document.querySelector('{tile(cy.order_number)} .label')"
                            "?.dataset.wait === '5'", timeout=2)  # 1 drink ahead now
        await page.wait_for(f"document.querySelector('{tile(bo.order_number)} .label')"
                            "?.dataset.wait === '5'", timeout=2)
        ready = await page.evaluate(
            f"document.querySelector('#ready [data-order=\"{ana.order_number}\"]').innerText")
        assert "Ana" in ready and "MIN" not in ready.upper()
