"""The daily report page in headless Chromium (CONTRACT §13): a staff member logs in,
reads a seeded day's figures and charts, picks another day with the date picker, and
follows the Calls list to a transcript. The screenshot is the README's."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from boba_proto.model import Drink, OrderDraft
from boba_runtime.call.records import CallRecordWriter, Line, LineKind, Outcome
from boba_runtime.store.order_store import OrderStore
from tests.browser.cdp import Browser
from tests.helpers.server import STAFF_PASSWORD, running_server
from tests.runtime.test_reports import seed_day
from tests.runtime.test_store import FakeClock

pytestmark = pytest.mark.browser

DESK_SIZE = (1280, 1000)
FLAVORS = ("taro milk tea", "black milk tea")
TOPPINGS = ("boba", "egg pudding", "crystal agar boba", "vanilla cream")


TRANSCRIPT = (
    Line(seq=1, offset_ms=400, kind=LineKind.TEXT, role="assistant",
         content="Hey! I am your Deepgram BobaRista. What would you like to order?"),
    Line(seq=2, offset_ms=3100, kind=LineKind.TEXT, role="user",
         content="A taro milk tea with egg pudding, please."),
    Line(seq=3, offset_ms=3600, kind=LineKind.FUNCTION, name="add_to_cart",
         arguments='{"flavor": "taro milk tea", "toppings": ["egg pudding"]}',
         result='{"ok": true, "staged": true}'),
)


async def busy_afternoon(store: OrderStore, clock: FakeClock) -> None:
    """More of the same day, from a seeded generator: the screenshot stays the same."""
    rng = random.Random(1125)
    writer = CallRecordWriter(store, clock=clock)
    for n in range(30):
        clock.now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC) + timedelta(
            minutes=rng.randrange(0, 10 * 60)
        )
        toppings = tuple(sorted(rng.sample(TOPPINGS, rng.randrange(0, 3))))
        drinks = tuple(
            Drink(flavor=rng.choice(FLAVORS), toppings=toppings, sweetness="50%",
                  ice="regular ice", price_cents=550 + 75 * len(toppings))
            for _ in range(rng.randrange(1, 3))
        )
        order = await store.commit_order(
            OrderDraft(phone="+14155550100", items=drinks,
                       total_cents=sum(d.price_cents for d in drinks))
        )
        sid = f"CA{0xB0BA00 + n:032x}"  # apart from seed_day's sids
        writer.open_call(sid, caller="+14155550100")
        if n == 0:
            for line in TRANSCRIPT:
                writer.add_line(sid, line)
        writer.close_call(sid, outcome=Outcome.ORDERED, order_number=order.order_number,
                          greeted_ms=500, ordered_ms=500 + rng.randrange(30_000, 120_000))
    await writer.flush()


async def test_the_daily_report_page(
    browser: Browser, tmp_path: Path, screenshot_dir: Path
) -> None:
    clock = FakeClock()
    database = f"sqlite:///{tmp_path / 'boba.sqlite3'}"
    store = await OrderStore.open(database, clock=clock, rng=random.Random(4782))
    try:
        await seed_day(store, clock)
        await busy_afternoon(store, clock)
        async with running_server(tmp_path, {"BOBA_DATABASE": database}, store=store) as server:
            base = server.base_url
            page = await browser.new_page(width=DESK_SIZE[0], height=DESK_SIZE[1])

            # anonymous: the login form, no figures
            await page.goto(f"{base}/reports?date=2026-11-25")
            text = await page.evaluate("document.body.innerText")
            assert "Staff password" in text and "Revenue" not in text
            await page.click("#password")
            await page.type_text(STAFF_PASSWORD)
            await page.press_enter()
            await page.wait_for("!!document.getElementById('orders')", timeout=10)

            await page.goto(f"{base}/reports?date=2026-11-25")
            await page.wait_for("document.querySelectorAll('svg.chart-svg').length === 2")
            figures = await page.evaluate(
                """Object.fromEntries([...document.querySelectorAll('.figure')].map(f => [
                    f.querySelector('.label').innerText, f.querySelector('.value').innerText]))"""
            )
            report = (await page.evaluate(
                "fetch('/api/reports/daily?date=2026-11-25').then(r => r.json())"
            ))
            assert figures["Orders"] == str(report["orders"]) == "33"
            assert figures["Revenue"] == f"${report['revenue']:,.2f}"
            assert figures["Calls"] == str(report["calls"])
            # the bars are as tall as their counts say, and the charts fit the page
            bars = await page.evaluate(
                """[...document.querySelectorAll('#orders-per-hour rect')].map(
                    r => [r.dataset.label, +r.dataset.value, r.getBoundingClientRect().height])"""
            )
            assert [(label, value) for label, value, _ in bars] == [
                (h["hour"], h["orders"]) for h in report["orders_per_hour"]
            ]
            tallest = max(bars, key=lambda bar: bar[1])
            for _label, value, height in bars:
                assert abs(height - tallest[2] * value / tallest[1]) < 1.5
            flavors = await page.evaluate(
                """[...document.querySelectorAll('#drinks-by-flavor rect')].map(
                    r => [r.dataset.label, +r.dataset.value])"""
            )
            assert dict(flavors) == report["drinks_by_flavor"]
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= DESK_SIZE[0]
            await page.screenshot(screenshot_dir / "daily-report.png")

            # the date picker: another day, by typing into it and submitting
            await page.evaluate("document.getElementById('date').value = '2026-11-24'")
            await page.click("form.day button[type=submit]")
            await page.wait_for("location.search === '?date=2026-11-24'", timeout=10)
            await page.wait_for("!!document.querySelector('.figure')")
            orders = await page.evaluate(
                "document.querySelector('.figure .value').innerText"
            )
            assert orders == "1"

            # from the nav to the calls list, then one call's transcript page
            await page.click(".staff-nav a[href='/calls']")
            await page.wait_for("location.pathname === '/calls'", timeout=10)
            rows = await page.evaluate("document.querySelectorAll('tr[data-call]').length")
            assert rows == 37  # 7 seeded calls + 30 of the afternoon

            # a transcript: caller and agent lines, the function call folded until clicked
            first = f"CA{0xB0BA00:032x}"
            await page.click(f"tr[data-call='{first}'] a")
            await page.wait_for(f"location.pathname === '/calls/{first}'", timeout=10)
            said = await page.evaluate(
                "[...document.querySelectorAll('.line .who')].map(w => w.innerText)"
            )
            assert said == ["agent", "caller"]
            folded = "document.querySelector('.line.function details').open"
            assert await page.evaluate(folded) is False
            assert not await page.evaluate(
                "document.querySelector('.line.function dd').checkVisibility()"
            )
            await page.click(".line.function summary")
            await page.wait_for(folded)
            arguments = await page.evaluate(
                "document.querySelector('.line.function dd').innerText"
            )
            assert "egg pudding" in arguments
    finally:
        await store.aclose()
