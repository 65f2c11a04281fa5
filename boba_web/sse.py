"""`GET /orders/events`: Server-Sent Events from the store's event table (CONTRACT §7).

The stream itself is `boba_runtime.store.feed.sse_frames`; this module parses
`Last-Event-ID` and sets the headers. Works the same on quart 0.22 (a disconnect cancels
the handler) and 0.23: all cleanup is in the generator's `finally`.
"""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from boba_runtime.services import Services
from boba_runtime.store.feed import sse_frames
from boba_web.errors import json_error
from boba_web.sse_limits import SseSlots
from boba_web.staff_auth import address_of

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not hold events back
}


def parse_last_event_id(value: str | None) -> int | None:
    """An integer id, or None for a missing/blank header. Garbage raises ValueError."""
    if value is None or not value.strip():
        return None
    number = int(value.strip())
    if number < 0:
        raise ValueError("negative event id")
    return number


def register_sse(app: QuartTrio, services: Services) -> None:
    slots = SseSlots(max_total=services.settings.max_sse_clients)

    @app.get("/orders/events")
    async def order_events() -> Response:
        address = address_of(services, request.scope, request.headers)
        refused = slots.refusal(address)
        if refused == 503:
            return json_error(503, "Too many event-stream clients right now; try again shortly.",
                              Retry_After="5")
        if refused == 429:
            return json_error(429, "Too many event streams from this address.",
                              Retry_After="5")
        try:
            last_id = parse_last_event_id(
                request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
            )
        except ValueError:
            return json_error(400, "Last-Event-ID must be a whole number.")
        if last_id is None:
            subscription = await services.feed.subscribe_new()
        else:
            subscription = services.feed.subscribe(last_id)
        frames = sse_frames(subscription, ping_interval=services.sse_ping_interval)
        response = Response(slots.hold(address, frames), headers=SSE_HEADERS)
        response.timeout = None  # an endless stream: no RESPONSE_TIMEOUT
        return response
