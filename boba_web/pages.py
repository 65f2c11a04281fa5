"""The shop-floor pages: the TV board, the barista console, staff login and `/metrics`.

Server-rendered templates and a little plain JavaScript shipped in the package (no build
step, no CDN). The TV board only ever touches public data (`/api/orders`, the event
stream); the console's staff data comes from `/barista/orders` and `/api/orders/{n}`,
both behind the staff check. Everything is built per app by `make_pages_blueprint`: the
wrong-password limiter is the process's one `CredentialLimiter` (in Services).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol
from urllib.parse import urlsplit

from quart import Blueprint, Response, jsonify, request

from boba_proto.model import order_to_json
from boba_runtime.config.auth import (
    LOGIN_PER_ADDRESS_LIMIT,
    SESSION_COOKIE,
    SESSION_ENDED,
    SESSION_LIFETIME,
    make_session_cookie,
    password_matches,
    verify_session_cookie,
)
from boba_runtime.metrics import Metrics
from boba_runtime.store.order_store import OrderStore, StoreError, StoreUnavailable
from boba_web.errors import json_error
from boba_web.rendering import BLUEPRINT, render_page
from boba_web.staff import StaffSecrets, request_is_staff, request_staff_check, staff_refusal
from boba_web.staff_auth import Verdict, address_of, count_wrong_password

log = logging.getLogger("boba.web")

ASSETS_URL = "/assets"
CONSOLE_LIST_LIMIT = 500

class PagesServices(StaffSecrets, Protocol):
    """What the pages need from `boba_runtime.services.Services`."""

    @property
    def store(self) -> OrderStore: ...

    @property
    def metrics(self) -> Metrics: ...




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
    secure_cookie_default = bool(public_url and public_url.startswith("https://"))

    def client_address() -> str:
        return address_of(services, request.scope, request.headers)

    def cookie_flags() -> dict[str, Any]:
        """The session cookie's attributes: the same to set it and to clear it."""
        secure = secure_cookie_default or request.scheme == "https"
        return {"path": "/", "httponly": True, "samesite": "Strict", "secure": secure}

    @pages.get("/orders")
    async def tv_board() -> Response:
        return await render_page("tv.html")

    @pages.get("/barista")
    async def barista() -> Response:
        if not await request_is_staff(services):
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
        form = await request.form
        given = form.get("password", "")
        if not password_matches(given, services.staff_password):
            # Only wrong guesses are limited: the right password logs in from anywhere.
            check = count_wrong_password(
                services, client_address(), per_address=LOGIN_PER_ADDRESS_LIMIT
            )
            if check.verdict is Verdict.LIMITED:
                seconds = check.retry_after
                response = await render_page(
                    "login.html",
                    429,
                    error=f"Too many wrong passwords. Try again in {seconds} seconds.",
                )
                response.headers["Retry-After"] = str(seconds)
                return response
            return await render_page("login.html", 401, error="That password is not right.")
        response = _see_other("/barista")
        response.set_cookie(
            SESSION_COOKIE,
            make_session_cookie(services.secret_key, now(), password=services.staff_password),
            max_age=int(SESSION_LIFETIME.total_seconds()),
            **cookie_flags(),
        )
        return response

    @pages.post("/logout")
    async def logout() -> Response:
        if not _same_origin(public_url):
            return await render_page("login.html", 403, error="Log out from this site's own page.")
        session = verify_session_cookie(
            services.secret_key, request.cookies.get(SESSION_COOKIE), now(),
            password=services.staff_password,
        )
        if session is not None:
            # Ended on the server: the old cookie is refused on every worker and instance.
            try:
                await services.store.claim_once(
                    SESSION_ENDED, session.session_id, expires_at=session.expires_at
                )
            except StoreError:
                log.exception("logout: could not record the end of the session")
                return await render_page(
                    "login.html", 503, error="Logging out failed; try again shortly."
                )
        response = _see_other("/barista")
        response.delete_cookie(SESSION_COOKIE, **cookie_flags())
        return response

    @pages.get("/barista/orders")
    async def console_orders() -> Response:
        """Active orders with phone and SMS state, for the console (staff only)."""
        check = await request_staff_check(services)
        if not check.ok:
            return staff_refusal(check, "Staff login required.", WWW_Authenticate="Bearer")
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
        check = await request_staff_check(services)
        if not check.ok:
            return staff_refusal(
                check, "Send the staff password as a Bearer token.", WWW_Authenticate="Bearer"
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
    app.register_blueprint(make_pages_blueprint(services, **options))
