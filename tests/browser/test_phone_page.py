"""The `/phone` page in headless Chromium against a real `boba serve` with the local agent:
a staff member types a whole order and sees the transcript, the function calls and the
order number. Runs in the `browser` nox session, which installs Chromium."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from boba_runtime.config.auth import make_session_cookie
from tests.browser.cdp import Page, find_chromium, launch_browser
from tests.helpers.server import RunningServer

pytestmark = pytest.mark.browser

TRANSCRIPT = "Array.from(document.querySelectorAll('#transcript li'), li => li.textContent)"


async def say(page: Page, text: str, expect: str) -> None:
    """Type one caller line and wait until a transcript line contains `expect`."""
    count = await page.evaluate(f"{TRANSCRIPT}.length")
    await page.click("#text")
    await page.type_text(text)
    await page.press_enter()
    await page.wait_for(
        f"{TRANSCRIPT}.slice({count}).some(t => t.includes({json.dumps(expect)}))", timeout=10
    )


async def test_a_whole_order_typed_on_the_phone_page(
    boba_server: RunningServer, screenshot_dir: Path
) -> None:
    chromium = find_chromium()
    assert chromium is not None, "no Chromium: run scripts/setup-browser.sh"
    base = boba_server.base_url
    services = boba_server.services
    cookie = make_session_cookie(
        services.secret_key, datetime.now(UTC), password=services.staff_password
    )
    async with launch_browser(chromium) as browser:
        page = await browser.new_page(width=768, height=1024)
        await page.send("Network.setCookie", name="boba_session", value=cookie, url=base)
        await page.goto(f"{base}/phone")
        await page.click("#dial")
        await page.wait_for(f"{TRANSCRIPT}.some(t => t.startsWith('agent: Hey!'))", timeout=10)
        await page.wait_for("document.getElementById('connection').dataset.state === 'live'")
        await say(page, "a taro milk tea with boba please", "Is that right?")
        lines = await page.evaluate(TRANSCRIPT)
        assert "caller: a taro milk tea with boba please" in lines
        assert any(t.startswith('fn: add_to_cart({"flavor": "taro milk tea"') for t in lines)
        await say(page, "yes", "Anything else?")
        await say(page, "that's all", "What phone number")
        await say(page, "four one five, five five five, zero one four two", "Is that right?")
        await say(page, "yes", "Your order is placed!")
        await say(page, "no thanks, bye", "Goodbye")
        await page.wait_for("document.getElementById('connection').dataset.state === 'idle'",
                            timeout=10)
        assert await page.evaluate("document.getElementById('dial').disabled") is False
        await page.screenshot(screenshot_dir / "phone-page.png")
        errors = [line for line in browser.console if "error" in line.lower()]
        assert errors == []
    async with httpx.AsyncClient(base_url=base) as client:
        board = (await client.get("/api/orders")).json()
    assert len(board) == 1 and board[0]["items"][0]["flavor"] == "taro milk tea"
