"""The staff softphone (CONTRACT §9): `GET /phone` (a page that acts as a phone) and
`WS /phone/ws`, which runs the very same `run_call` as Twilio's `/twilio`.

The socket's protocol (Twilio's message set plus `text`, `transcript` and `function`) is
`boba_proto.phone`; the phone side that writes the extra events is the runtime's
`SoftPhone`. This module only checks who is calling and connects the three.

Staff only: the handshake must carry the staff password (Basic or Bearer) or a valid
session cookie, else 401 before the socket is accepted; a browser's cross-site handshake
(foreign `Origin`) is refused with 403. The call's `callSid` is made by the server
(`PH…`), so a softphone call never borrows a Twilio call's identity; the `caller`
custom parameter, when given, is the number used for "is my order ready".
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from urllib.parse import urlsplit

import trio
from quart import Response
from quart_trio import QuartTrio

from boba_proto.call import CallEvent
from boba_proto.phone import decode_from_phone
from boba_runtime.call.runner import CallWiring, run_call
from boba_runtime.call.softphone import SoftPhone
from boba_runtime.services import Services
from boba_web.compat import ClientDisconnectedError, QuartPhone, current_websocket
from boba_web.errors import json_error
from boba_web.rendering import render_page
from boba_web.staff import request_is_staff, staff_refusal
from boba_web.staff_auth import check_staff

__all__ = ["register_phone_routes"]

log = logging.getLogger(__name__)


def _origin_ok(origin: str | None, host: str | None, public_url: str) -> bool:
    """A handshake from a page of another site (cross-site WebSocket hijacking) is refused."""
    if not origin:
        return True  # not a browser (`boba call`, tests)
    parts = urlsplit(origin)
    allowed = {urlsplit(public_url).netloc}
    if host:
        allowed.add(host)
    return parts.netloc in allowed


def register_phone_routes(app: QuartTrio, services: Services, calls: CallWiring) -> None:
    """GET /phone and WS /phone/ws; calls run with the shared `calls`."""
    settings = services.settings
    # A softphone sends nothing while its user types (`boba call`, the text box): silence
    # on it is not a dead stream, as it would be on Twilio's.
    call_deps = dataclasses.replace(
        calls.deps, config=dataclasses.replace(calls.deps.config, phone_silence_seconds=None)
    )

    @app.get("/phone")
    async def phone_page() -> Response:
        if not await request_is_staff(services):
            return await render_page("login.html")
        return await render_page("phone.html")

    @app.websocket("/phone/ws")
    async def phone_socket() -> Response | None:
        ws = current_websocket()
        check = await check_staff(services, ws.scope, ws.headers, ws.cookies)
        if not check.ok:
            return staff_refusal(check, "Staff login required.", WWW_Authenticate="Bearer")
        if not _origin_ok(ws.headers.get("Origin"), ws.headers.get("Host"), settings.public_url):
            return json_error(403, "Open the phone from this site's own page.")
        await ws.accept()
        call_sid = f"PH{uuid.uuid4().hex}"
        phone = SoftPhone(QuartPhone(ws))
        connect = calls.choose_agent(ws.scope)

        def decode(frame: str | bytes) -> CallEvent:
            return decode_from_phone(frame, call_sid=call_sid)

        with contextlib.suppress(ClientDisconnectedError):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(phone.run_writer)
                report = await run_call(
                    phone, call_deps, connect, observe=phone.observe, decode_phone=decode
                )
                log.info(
                    "softphone call %s ended: %s, %d order(s)",
                    call_sid,
                    report.end_reason.value if report.end_reason else "refused",
                    len(report.orders),
                )
        return None
