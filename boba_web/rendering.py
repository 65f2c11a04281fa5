"""Shop pages as HTML: one template renderer with the shop's names and the headers that keep
a page to its own scripts (used by the shop-floor pages and the softphone page)."""

from __future__ import annotations

from typing import Any

from quart import Response, render_template

SHOP_NAME = "BobaRista"
BLUEPRINT = "shop"  # the pages' blueprint: its static files and login routes

# Pages load only their own scripts, styles and data; nothing from elsewhere, no frames.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)



async def render_page(template: str, status: int = 200, **context: Any) -> Response:
    """A shop page (these pages and `/phone`): the template with the shop's names, and
    headers that keep it to its own scripts, uncached."""
    body = await render_template(
        template,
        shop_name=SHOP_NAME,
        static_endpoint=f"{BLUEPRINT}.static",
        login_endpoint=f"{BLUEPRINT}.login",
        logout_endpoint=f"{BLUEPRINT}.logout",
        **context,
    )
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response
