"""The shop-floor pages: the TV board, the barista console, staff login and `/metrics`.

Server-rendered templates and a little plain JavaScript shipped in the package (no build
step, no CDN). The TV board only ever touches public data (`/api/orders`, the event
stream); the console's staff data comes from `/barista/orders` and `/api/orders/{n}`,
both behind the staff check. Everything is built per app by `make_pages_blueprint`: the
login limiter lives in that closure, not at module level.
"""

from __future__ import annotations

import collections
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from quart import Blueprint, Response, jsonify, request

from boba_proto.model import order_to_json
from boba_runtime.config.auth import SESSION_COOKIE, SESSION_LIFETIME, make_session_cookie
from boba_runtime.config.proxies import Network
from boba_runtime.config.proxies import client_address as forwarded_client
from boba_runtime.metrics import Metrics
from boba_runtime.store.order_store import OrderStore, StoreError, StoreUnavailable
from boba_web.errors import json_error
from boba_web.rendering import BLUEPRINT, render_page
from boba_web.staff import StaffSecrets, request_is_staff

log = logging.getLogger("boba.web")

ASSETS_URL = "/assets"
CONSOLE_LIST_LIMIT = 500

class PagesServices(StaffSecrets, Protocol):
    """What the pages need from `boba_runtime.services.Services`."""

    @property
    def store(self) -> OrderStore: ...

    @property
    def metrics(self) -> Metrics: ...


class LoginLimiter:
    """Counts failed logins per client address over a sliding window.

    More than `max_failures` failures within `window_s` seconds and that address is told
    429 until the oldest failure leaves the window. Memory is bounded: past
    `max_addresses` the address seen longest ago is forgotten first. One limiter per app
    (per worker process); `clock` is injectable for tests.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, address: str) -> collections.deque[float]:
        now = self._clock()
        times = self._failures.get(address)
        if times is None:
            return collections.deque()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def retry_after(self, address: str) -> float | None:
        """Seconds this address must wait, or None when it may try now."""
        times = self._recent(address)
        if len(times) < self.max_failures:
            return None
        return max(1.0, self.window_s - (self._clock() - times[0]))

    def failed(self, address: str) -> None:
        times = self._recent(address)
        times.append(self._clock())
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


def _see_other(path: str) -> Response:
    """303 to a page of this site (after a form post the browser then GETs it)."""
    return Response("", status=303, headers={"Location": path})


def _same_origin(public_url: str | None) -> bool:
    """A browser's cross-site form post carries a foreign `Origin`: refuse those."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    allowed = {request.host_url.rstrip("/")}
    if public_url:
        allowed.add(public_url.rstrip("/"))
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" in allowed


def make_pages_blueprint(
    services: PagesServices,
    *,
    public_url: str | None = None,
    limiter: LoginLimiter | None = None,
    trusted_proxies: tuple[Network, ...] = (),
) -> Blueprint:
    """The pages, login/logout, the console's staff list and `/metrics` for one app."""
    pages = Blueprint(
        BLUEPRINT,
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path=ASSETS_URL,
    )
    now = services.clock
    login_limiter = limiter if limiter is not None else LoginLimiter()
    secure_cookie_default = bool(public_url and public_url.startswith("https://"))

    def client_address() -> str:
        """The client behind a trusted proxy (X-Forwarded-For), else the peer."""
        return forwarded_client(
            request.remote_addr, request.headers.get("X-Forwarded-For"), trusted_proxies
        )

    def cookie_flags() -> dict[str, Any]:
        """The session cookie's attributes: the same to set it and to clear it."""
        secure = secure_cookie_default or request.scheme == "https"
        return {"path": "/", "httponly": True, "samesite": "Strict", "secure": secure}

    @pages.get("/orders")
    async def tv_board() -> Response:
        return await render_page("tv.html")

    @pages.get("/barista")
    async def barista() -> Response:
        if not request_is_staff(services):
            return await render_page("login.html")
        return await render_page("barista.html")

    @pages.get("/login")
    async def login_page() -> Response:
        """The form lives on /barista; someone who types /login lands there."""
        return _see_other("/barista")

    @pages.post("/login")
    async def login() -> Response:
        if not _same_origin(public_url):
            return await render_page("login.html", 403, error="Log in from this site's own page.")
        address = client_address()
        wait = login_limiter.retry_after(address)
        if wait is not None:
            seconds = int(wait + 0.999)  # whole seconds, rounded up
            response = await render_page(
                "login.html",
                429,
                error=f"Too many wrong passwords. Try again in {seconds} seconds.",
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        form = await request.form
        given = form.get("password", "")
        if not given or not hmac.compare_digest(
            given.encode("utf-8"), services.staff_password.encode("utf-8")
        ):
            login_limiter.failed(address)
            return await render_page("login.html", 401, error="That password is not right.")
        login_limiter.succeeded(address)
        response = _see_other("/barista")
        response.set_cookie(
            SESSION_COOKIE,
            make_session_cookie(services.secret_key, now()),
            max_age=int(SESSION_LIFETIME.total_seconds()),
            **cookie_flags(),
        )
        return response

    @pages.post("/logout")
    async def logout() -> Response:
        if not _same_origin(public_url):
            return await render_page("login.html", 403, error="Log out from this site's own page.")
        response = _see_other("/barista")
        response.delete_cookie(SESSION_COOKIE, **cookie_flags())
        return response

    @pages.get("/barista/orders")
    async def console_orders() -> Response:
        """Active orders with phone and SMS state, for the console (staff only)."""
        if not request_is_staff(services):
            return json_error(401, "Staff login required.", WWW_Authenticate="Bearer")
        try:
            orders = await services.store.list_orders(status="active", limit=CONSOLE_LIST_LIMIT)
        except StoreUnavailable:
            return json_error(503, "The order store is not answering; try again shortly.")
        except StoreError:
            log.exception("listing orders for the console failed")
            return json_error(500, "The order store failed.")
        response = jsonify([order_to_json(order, with_private=True) for order in orders])
        response.headers["Cache-Control"] = "no-store"
        return response

    @pages.get("/metrics")
    async def metrics() -> Response:
        if not request_is_staff(services):
            return json_error(
                401, "Send the staff password as a Bearer token.", WWW_Authenticate="Bearer"
            )
        collector = services.metrics
        if collector is None:
            return json_error(503, "Metrics are not set up in this process.")
        body = await collector.scrape(services.store)
        return Response(body, status=200, content_type=Metrics.content_type)

    return pages


def register_pages(app: Any, services: PagesServices, **options: Any) -> None:
    """One line in `create_app`: `register_pages(app, services)`.

    The public URL (for the cookie's `Secure` flag behind a TLS proxy, and the login's
    same-origin check) comes from `services.settings` when there is one.
    """
    settings = getattr(services, "settings", None)
    options.setdefault("public_url", getattr(settings, "public_url", None))
    options.setdefault("trusted_proxies", getattr(settings, "proxy_networks", ()))
    app.register_blueprint(make_pages_blueprint(services, **options))
