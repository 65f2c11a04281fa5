"""Call records for staff (CONTRACT §13): `GET /api/calls` (`?limit=N`, `&caller=+1…`
for one person's calls), `GET /api/calls/{call_sid}`,
the Calls list page `/calls`, a call's transcript `/calls/{call_sid}`, and
`/calls/order/{order_number}`, which the console links from each order.

Pages are rendered on the server (no script): function calls fold away in `<details>`.
Without a staff session a page shows the login form, as the console does.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from quart import Response, request
from quart_trio import QuartTrio

from boba_runtime.store.order_store import StoreUnavailable, parse_time
from boba_runtime.store.records import (
    CallSummary,
    call_sid_for_order,
    get_call,
    list_calls,
    shop_zone,
)
from boba_web.api import json_response, parse_limit
from boba_web.errors import json_error
from boba_web.rendering import render_page
from boba_web.staff import request_is_staff, staff_only

CALL_SID = re.compile(r"^(CA|PH)[0-9a-fA-F]{32}$")
ORDER_NUMBER = re.compile(r"^[0-9]{4}$")
E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
PAGE_LIMIT = 200

OUTCOME_LABELS = {
    "ordered": "ordered",
    "no_order": "no order",
    "transferred": "transferred",
    "agent_failed": "agent failed",
    "busy": "busy",
    "closed": "closed",
    "caller_hung_up": "caller hung up",
    "unknown": "unknown (server stopped)",
    "in_progress": "in progress",
}


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def unavailable(error: StoreUnavailable) -> Response:
    return no_store(json_error(503, f"The order store is unavailable right now: {error}"))


def local_time(text: str, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return parse_time(text).astimezone(zone).strftime(fmt)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def call_row(call: CallSummary, zone: ZoneInfo) -> dict[str, Any]:
    """What the list and transcript templates show of one call."""
    return {
        "sid": call.call_sid,
        "started": local_time(call.started_at, zone),
        "duration": duration_text(call.duration_seconds),
        "outcome": call.outcome,
        "outcome_label": OUTCOME_LABELS.get(call.outcome, call.outcome),
        "order_number": call.order_number,
        "caller": call.caller or ("erased" if call.erased else "–"),
        "source": "softphone" if call.source == "phone" else "phone",
        "lines_dropped": call.lines_dropped,
        "erased": call.erased,
    }


def register_calls_routes(app: QuartTrio, services: Any) -> None:
    store = services.store

    def zone() -> ZoneInfo:
        return shop_zone(services.menu)

    async def fresh() -> None:
        """This process's queued lines first, so staff see the call as it is now."""
        writer = getattr(services, "call_records", None)
        if writer is not None:
            with contextlib.suppress(StoreUnavailable):  # the read below says so
                await writer.flush()

    @app.get("/api/calls")
    @staff_only(services)
    async def api_calls() -> Response:
        limit = parse_limit(request.args.get("limit"))
        if limit is None:
            return no_store(json_error(400, "limit must be a whole number from 1 to 500."))
        caller = request.args.get("caller")
        if caller is not None and not E164.match(caller):
            return no_store(json_error(400, "caller must be a phone number like +14155551234."))
        await fresh()
        try:
            calls = await list_calls(store, limit=limit, caller=caller)
        except StoreUnavailable as error:
            return unavailable(error)
        return no_store(json_response(calls))

    @app.get("/api/calls/<call_sid>")
    @staff_only(services)
    async def api_call(call_sid: str) -> Response:
        await fresh()
        try:
            detail = await get_call(store, call_sid)
        except StoreUnavailable as error:
            return unavailable(error)
        if detail is None:
            return no_store(json_error(404, f"There is no call {call_sid[:40]}."))
        return no_store(json_response(detail))

    @app.get("/calls")
    async def calls_page() -> Response:
        if not await request_is_staff(services):
            return await render_page("login.html")
        await fresh()
        shop = zone()
        try:
            calls = await list_calls(store, limit=PAGE_LIMIT)
        except StoreUnavailable:
            return await render_page(
                "call.html", 503, call=None, lines=[],
                missing="The order store is not answering; try again shortly.",
            )
        return await render_page(
            "calls.html",
            calls=[call_row(c, shop) for c in calls],
            timezone=shop.key,
        )

    @app.get("/calls/order/<order_number>")
    async def call_of_order(order_number: str) -> Response:
        if not await request_is_staff(services):
            return await render_page("login.html")
        sid = None
        if ORDER_NUMBER.match(order_number):
            sid = await call_sid_for_order(store, order_number)
        if sid is None:
            return await render_page(
                "call.html", 404, call=None, lines=[],
                missing=f"No call is recorded for order {order_number[:8]}.",
            )
        return Response("", status=303, headers={"Location": f"/calls/{sid}"})

    @app.get("/calls/<call_sid>")
    async def call_page(call_sid: str) -> Response:
        if not await request_is_staff(services):
            return await render_page("login.html")
        detail = None
        if CALL_SID.match(call_sid):
            await fresh()
            detail = await get_call(store, call_sid)
        if detail is None:
            return await render_page(
                "call.html", 404, call=None, lines=[], missing="There is no such call."
            )
        shop = zone()
        started = parse_time(detail.call.started_at)
        lines = [
            {
                "kind": line.kind,
                "who": "caller" if line.role == "user" else "agent",
                "content": line.content,
                "name": line.name,
                "arguments": line.arguments,
                "result": line.result,
                "offset": duration_text(line.offset),
                "clock": _clock_at(started, line.offset, shop),
            }
            for line in detail.transcript
        ]
        return await render_page(
            "call.html", call=call_row(detail.call, shop), lines=lines, missing=None,
            timezone=shop.key,
        )


def _clock_at(started: datetime, offset: float, zone: ZoneInfo) -> str:
    from datetime import timedelta

    return (started + timedelta(seconds=offset)).astimezone(zone).strftime("%H:%M:%S")
