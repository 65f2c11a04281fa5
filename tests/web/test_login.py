"""Staff login in the browser (CONTRACT §3): the cookie, the form, the rate limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from boba_runtime.config.auth import SESSION_COOKIE, CredentialLimiter, verify_session_cookie
from boba_web.app import create_app
from boba_web.pages import make_pages_blueprint
from tests.browser.shop import STAFF_PASSWORD, make_draft, shop_services

FORM = "application/x-www-form-urlencoded"


def from_address(address: str) -> dict[str, object]:
    return {"scope_base": {"client": (address, 40000)}}


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    parts = [p.strip() for p in set_cookie.split(";")]
    attributes = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        attributes[name.lower()] = value
    return attributes


async def test_right_password_sets_a_signed_strict_http_only_cookie(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        response = await client.post("/login", form={"password": STAFF_PASSWORD})
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/barista")
        set_cookie = response.headers["Set-Cookie"]
        assert set_cookie.startswith(f"{SESSION_COOKIE}=")
        attributes = cookie_attributes(set_cookie)
        assert "httponly" in attributes
        assert attributes["samesite"] == "Strict"
        assert attributes["max-age"] == str(12 * 3600)
        assert attributes["path"] == "/"
        assert "secure" not in attributes  # plain http on loopback
        value = set_cookie.split(";", 1)[0].split("=", 1)[1]
        assert verify_session_cookie(
            services.secret_key, value, services.clock(), password=STAFF_PASSWORD
        )


async def test_the_cookie_opens_the_console_and_the_staff_api(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        order = await services.store.commit_order(make_draft())
        client = create_app(services).test_client()
        assert (await client.get(f"/api/orders/{order.order_number}")).status_code == 401
        await client.post("/login", form={"password": STAFF_PASSWORD})
        console = await client.get("/barista")
        assert "barista.js" in await console.get_data(as_text=True)
        details = await client.get(f"/api/orders/{order.order_number}")
        assert details.status_code == 200
        assert (await details.get_json())["phone"] == order.phone
        done = await client.post(
            f"/api/orders/{order.order_number}/done", headers={"Origin": "http://localhost"}
        )
        assert done.status_code == 200


async def test_wrong_password_is_401_with_the_form_again(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        response = await client.post("/login", form={"password": "guess"})
        assert response.status_code == 401
        html = await response.get_data(as_text=True)
        assert 'name="password"' in html and "not right" in html
        assert "Set-Cookie" not in response.headers
        empty = await client.post("/login", form={})
        assert empty.status_code == 401


async def test_forged_or_foreign_cookie_is_not_a_session(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        issued = services.clock().timestamp()
        for forged in ("1", f"{int(issued)}.AAAA", "admin", f"{int(issued)}.."):
            client.set_cookie("localhost", SESSION_COOKIE, forged)
            html = await (await client.get("/barista")).get_data(as_text=True)
            assert 'name="password"' in html, forged
            assert (await client.get("/barista/orders")).status_code == 401


async def test_logout_clears_the_cookie(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        await client.post("/login", form={"password": STAFF_PASSWORD})
        response = await client.post("/logout")
        assert response.status_code == 303
        set_cookie = response.headers["Set-Cookie"]
        assert set_cookie.startswith(f"{SESSION_COOKIE}=;") or f'{SESSION_COOKIE}=""' in set_cookie
        attributes = cookie_attributes(set_cookie)
        assert attributes.get("max-age") == "0" or "expires" in attributes
        html = await (await client.get("/barista")).get_data(as_text=True)
        assert 'name="password"' in html


async def test_cookie_is_secure_when_the_public_url_is_https(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        from quart_trio import QuartTrio

        app = QuartTrio("boba_web")
        app.register_blueprint(
            make_pages_blueprint(services, public_url="https://boba.example.com")
        )
        response = await app.test_client().post("/login", form={"password": STAFF_PASSWORD})
        assert "secure" in cookie_attributes(response.headers["Set-Cookie"])


async def test_login_from_another_site_is_refused(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        response = await client.post(
            "/login",
            form={"password": STAFF_PASSWORD},
            headers={"Origin": "https://evil.example"},
        )
        assert response.status_code == 403
        assert "Set-Cookie" not in response.headers
        same_site = await client.post(
            "/login",
            form={"password": STAFF_PASSWORD},
            headers={"Origin": "http://localhost"},
        )
        assert same_site.status_code == 303


async def test_more_than_five_failures_a_minute_from_one_address_is_429(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        attacker = from_address("203.0.113.7")
        for _ in range(5):
            response = await client.post("/login", form={"password": "nope"}, **attacker)
            assert response.status_code == 401
        blocked = await client.post("/login", form={"password": "nope"}, **attacker)
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        assert 'name="password"' in await blocked.get_data(as_text=True)
        # only wrong guesses are refused: the right password still logs in from there
        right = await client.post("/login", form={"password": STAFF_PASSWORD}, **attacker)
        assert right.status_code == 303
        assert right.headers["Set-Cookie"].startswith(f"{SESSION_COOKIE}=")
        # another address is not affected
        other = await client.post(
            "/login", form={"password": STAFF_PASSWORD}, **from_address("198.51.100.2")
        )
        assert other.status_code == 303


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_window_slides() -> None:
    clock = FakeClock()
    limiter = CredentialLimiter(per_address=5, window_s=60, clock=clock)
    for _ in range(5):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
        clock.now += 10
    assert limiter.retry_after("a") == pytest.approx(10)  # first failure was 50 s ago
    clock.now += 10
    assert limiter.retry_after("a") is None  # the oldest failure left the window
    limiter.failed("a")
    assert limiter.retry_after("a") is not None
    limiter.succeeded("a")
    assert limiter.retry_after("a") is None


def test_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = CredentialLimiter(per_address=1, window_s=60, max_addresses=3, clock=clock)
    for address in ("a", "b", "c", "d"):
        limiter.failed(address)
    assert limiter.retry_after("a") is None  # forgotten: the oldest address went first
    assert all(limiter.retry_after(x) is not None for x in ("b", "c", "d"))


async def test_get_login_leads_to_the_form(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        response = await create_app(services).test_client().get("/login")
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/barista")
