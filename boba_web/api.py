"""The order API (CONTRACT §3/§4) and `/healthz`.

Public: `GET /api/orders` (no phone, no SMS state). Staff: everything that shows a phone
or changes an order. Store errors map to statuses here: unknown number 404, a transition
the order's status does not allow 409, a store that does not answer 503.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from boba_proto.model import Order, order_to_json
from boba_runtime.services import Services
from boba_runtime.store.order_store import OrderConflict, OrderNotFound, StoreUnavailable
from boba_web.errors import json_error
from boba_web.staff import staff_only

log = logging.getLogger("boba.web")

LIST_STATUSES = ("active", "ready", "all")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
HEALTH_TIMEOUT = 2.0  # seconds the store may take to answer /healthz


def json_response(value: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status=status, content_type="application/json")


def parse_limit(text: str | None) -> int | None:
    """`limit` as a count from 1 to MAX_LIMIT (larger is capped); None when it is bad.

    ASCII digits only: `str.isdigit` also passes "²" and 5000-digit strings, which `int`
    then refuses with a ValueError (a 500 instead of the 400 the caller deserves).
    """
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    if not digits:
        return None  # zero
    if len(digits) > len(str(MAX_LIMIT)):
        return MAX_LIMIT
    return min(int(digits), MAX_LIMIT)


def _store_unavailable(error: StoreUnavailable) -> Response:
    """503 without the store's own words (they may name hosts, paths or SQL): logged."""
    log.warning("the order store is unavailable: %s", error)
    return json_error(503, "The order store is unavailable right now; try again shortly.")


def register_api(app: QuartTrio, services: Services) -> None:
    store = services.store

    def private(order: Order) -> Response:
        return json_response(order_to_json(order, with_private=True))

    @app.get("/api/orders")
    async def list_orders() -> Response:
        status = request.args.get("status", "active")
        if status not in LIST_STATUSES:
            return json_error(400, "status must be one of active, ready or all.")
        limit = parse_limit(request.args.get("limit"))
        if limit is None:
            return json_error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}.")
        try:
            orders = await store.list_orders(status=status, limit=limit)
        except StoreUnavailable as error:
            return _store_unavailable(error)
        return json_response([order_to_json(o, with_private=False) for o in orders])

    @app.get("/api/orders/<order_number>")
    @staff_only(services)
    async def get_order(order_number: str) -> Response:
        try:
            order = await store.get_order(order_number)
        except StoreUnavailable as error:
            return _store_unavailable(error)
        if order is None:
            return json_error(404, f"There is no order {order_number}.")
        return private(order)

    async def change(order_number: str, apply: Callable[[str], Awaitable[Order]]) -> Response:
        try:
            order = await apply(order_number)
        except OrderNotFound:
            return json_error(404, f"There is no order {order_number}.")
        except OrderConflict as error:
            return json_error(409, str(error))
        except StoreUnavailable as error:
            return _store_unavailable(error)
        return private(order)  # the store's change signal tells the event feed

    async def mark_ready(order_number: str) -> Order:
        order, _changed = await store.mark_ready(order_number)
        return order

    @app.post("/api/orders/<order_number>/done")
    @staff_only(services)
    async def done(order_number: str) -> Response:
        return await change(order_number, mark_ready)

    @app.post("/api/orders/<order_number>/picked-up")
    @staff_only(services)
    async def picked_up(order_number: str) -> Response:
        return await change(order_number, store.mark_picked_up)

    @app.post("/api/orders/<order_number>/cancel")
    @staff_only(services)
    async def cancel(order_number: str) -> Response:
        return await change(order_number, store.cancel)

    @app.get("/healthz")
    async def healthz() -> Response:
        reason = None
        with trio.move_on_after(HEALTH_TIMEOUT) as scope:
            try:
                await store.ping()
            except StoreUnavailable as error:
                log.warning("/healthz: the order store does not answer: %s", error)
                reason = "the order store does not answer"
        if scope.cancelled_caught:
            reason = f"the order store did not answer within {HEALTH_TIMEOUT:g} s"
        if reason is not None:
            return json_response({"status": "unavailable", "reason": reason}, status=503)
        return json_response({"status": "ok"})
