"""Twilio's three routes (CONTRACT §3): `POST /voice`, `POST /voice/after`, `WS /twilio`.

* `/voice` answers a call with TwiML built by the `twilio` package: a `<Say>`, then
  `<Connect action=".../voice/after"><Stream url="ws(s)://PUBLIC/twilio">` with the
  `caller`, `callSid` and per-call `token` parameters; over `BOBA_MAX_CALLS` a busy
  message and `<Hangup/>`.
* `/voice/after` is Twilio's callback when the stream ends: `<Hangup/>`, preceded by an
  apology when the call ended because the agent failed.
* `/twilio` is the Media Stream, served beside Quart by `boba_web.twilio_stream`: the
  handshake's `X-Twilio-Signature` (over the stream URL exactly as in the TwiML, no
  params) is checked before the socket is accepted, the `start` event's token before any
  agent connection is opened, then `run_call` runs it.

Signatures are computed over `BOBA_PUBLIC_URL`, never `Host` or `X-Forwarded-*`. With
`BOBA_VALIDATE_TWILIO=false` they are skipped (the stream token is still checked). With
validation on but no `TWILIO_AUTH_TOKEN` they cannot be checked: `boba serve` starts like
that only on a loopback address (CONTRACT §2), and these routes, failing closed, refuse
every Twilio request unless the server is bound to loopback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from quart import Response, request
from quart_trio import QuartTrio
from twilio.request_validator import (  # type: ignore[import-untyped]
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.twiml.voice_response import VoiceResponse  # type: ignore[import-untyped]

from boba_proto import twilio as tw
from boba_proto.shop import ShopStatus
from boba_runtime.call.records import Outcome
from boba_runtime.call.registry import CallOutcome, CallRegistry, CallsFull
from boba_runtime.call.runner import Authorize, CallWiring
from boba_runtime.call.stream_tokens import token_expiry
from boba_runtime.config.logsafe import shown
from boba_runtime.config.settings import Settings
from boba_runtime.services import Services
from boba_runtime.store.order_store import StoreError
from boba_web.errors import json_error
from boba_web.shop_routes import closed_twiml
from boba_web.twilio_stream import (
    install_twilio_stream,
    twilio_raw_route,
    twilio_stream_handler,
)

log = logging.getLogger(__name__)

CONNECTING = "Connecting you to the Deepgram Boba Rista."
BUSY = "Sorry, all of our lines are busy right now. Please call back in a few minutes."
APOLOGY = "Sorry, we're having trouble taking orders right now. Please call back in a few minutes."
TWIML = "text/xml; charset=utf-8"


# --- TwiML ------------------------------------------------------------------------------------


def render_twiml(response: VoiceResponse) -> str:
    """The TwiML text, empty elements written `<Hangup/>` as in CONTRACT §3.

    The twilio package (ElementTree) writes `<Hangup />`; the contract's texts have no space.
    ElementTree escapes `>` in text and attribute values, so ` />` only ever ends a tag.
    """
    return str(response).replace(" />", "/>")


def connect_twiml(settings: Settings, *, caller: str, call_sid: str, token: str) -> str:
    response = VoiceResponse()
    response.say(CONNECTING)
    connect = response.connect(action=f"{settings.public_url}/voice/after")
    stream = connect.stream(url=settings.stream_url)
    stream.parameter(name="caller", value=caller)
    stream.parameter(name="callSid", value=call_sid)
    stream.parameter(name="token", value=token)
    return render_twiml(response)


def busy_twiml() -> str:
    response = VoiceResponse()
    response.say(BUSY)
    response.hangup()
    return render_twiml(response)


def after_twiml(outcome: CallOutcome | None, transfer_number: str | None = None) -> str:
    """`<Hangup/>`; the apology first when the agent failed; `<Dial>` the shop instead
    after `transfer_to_staff`, or after a failure when a transfer number is set (§12)."""
    response = VoiceResponse()
    if transfer_number is not None and outcome in (CallOutcome.TRANSFER, CallOutcome.FAILED):
        response.dial(transfer_number)
        return render_twiml(response)
    if outcome is CallOutcome.FAILED:
        response.say(APOLOGY)
    response.hangup()
    return render_twiml(response)


# --- signatures -------------------------------------------------------------------------------


class HeaderLookup(Protocol):
    def get(self, key: str, /) -> str | None: ...


def signature_ok(
    settings: Settings,
    url: str,
    params: Mapping[str, Any],
    headers: HeaderLookup,
) -> bool:
    """`X-Twilio-Signature` of one request, per `BOBA_VALIDATE_TWILIO` (fail closed)."""
    if not settings.validate_twilio:
        return True
    token = settings.twilio_auth_token
    if token is None:
        # Cannot validate: acceptable only for local development, bound to loopback and
        # reached through a loopback public URL (not a public one behind a proxy).
        return settings.unsigned_twilio_allowed
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        return False
    algorithm = get_signature_algorithm(headers.get(SIGNATURE_SETTINGS_HEADER))
    return bool(RequestValidator(token).validate(url, params, signature, algorithm))


def webhook_url(settings: Settings, path: str, query_string: bytes) -> str:
    """The URL Twilio signed: BOBA_PUBLIC_URL + path + query, never the Host header."""
    url = settings.public_url.rstrip("/") + path
    if query_string:
        url += "?" + query_string.decode("latin-1")
    return url


def forbidden() -> Response:
    """403 with no TwiML; JSON like every other error of this server (CONTRACT §3)."""
    return json_error(403, "The X-Twilio-Signature is missing or wrong.")


STREAM_TOKEN_USED = "stream-token"
"""The store's mark kind for a stream token that opened a call (accepted once)."""

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
"""Twilio's shape of a CallSid: `CA` and 32 lowercase hex digits."""


def call_sid_ok(call_sid: str) -> bool:
    return CALL_SID.fullmatch(call_sid) is not None


def token_check(registry: CallRegistry, store: Any) -> Authorize:
    """The `start` event's token must be the one `/voice` issued for its callSid and
    caller, unexpired, and not used before (by any worker: the store keeps the mark)."""

    async def authorize(start: tw.Start) -> str | None:
        info = start.start
        token = info.custom_parameters.get("token", "")
        caller = info.custom_parameters.get("caller", "")
        why = registry.token_problem(info.call_sid, caller, token)
        if why is not None:
            return why
        expiry = token_expiry(token)
        assert expiry is not None  # token_problem checked its shape
        expires_at = datetime.fromtimestamp(expiry, UTC) + timedelta(seconds=1)
        try:
            first = await store.claim_once(STREAM_TOKEN_USED, info.call_sid, expires_at=expires_at)
        except StoreError:
            return "the store does not answer, so the stream's token cannot be checked"
        if not first:
            return "the stream's token was already used (a second start for this callSid)"
        return None

    return authorize


async def shared_outcome(store: Any, call_sid: str) -> CallOutcome | None:
    """How the call ended, as the instance that ran its stream stored it; None if nobody
    stored it or the store does not answer (then no apology: logged)."""
    try:
        stored = await store.call_outcome(call_sid)
    except StoreError as exc:
        log.warning("call %s: cannot ask the store how the call ended (%s)", call_sid, exc)
        return None
    if stored is None:
        return None
    try:
        return CallOutcome(stored)
    except ValueError:
        log.warning("call %s: the store holds an unknown call outcome %r", call_sid, stored)
        return None


# --- routes -----------------------------------------------------------------------------------


def register_twilio_routes(app: QuartTrio, services: Services, calls: CallWiring) -> None:
    """POST /voice, POST /voice/after and WS /twilio; calls run with the shared `calls`."""
    settings: Settings = services.settings
    call_deps = calls.deps
    registry = call_deps.registry
    authorize = token_check(registry, services.store)

    async def signed_form() -> Any | None:
        """The webhook's form, or None (logged) when its X-Twilio-Signature is not right."""
        form = await request.form
        url = webhook_url(settings, request.path, request.query_string)
        if signature_ok(settings, url, form, request.headers):
            return form
        log.warning("POST %s refused: bad or missing X-Twilio-Signature", shown(request.path))
        return None

    def preopen_agent(call_sid: str) -> None:
        """Open the agent link while Twilio plays the `<Say>` (DESIGN §5; closed after 5 s
        if the stream does not reach this process)."""
        preopened = call_deps.preopened
        if preopened is None or not preopened.wanted(call_sid) or not hasattr(app, "nursery"):
            return  # not wired, already open, or no server running the app (test client)
        app.nursery.start_soon(preopened.hold, call_sid, calls.choose_agent(request.scope))

    @app.post("/voice")
    async def voice() -> Response:
        form = await signed_form()
        if form is None:
            return forbidden()
        call_sid = form.get("CallSid", "")
        caller = form.get("From", "")
        if not call_sid:
            return json_error(400, "The call webhook has no CallSid.")
        if not call_sid_ok(call_sid):
            log.warning("POST /voice refused: CallSid %s is not Twilio's shape", shown(call_sid))
            return json_error(400, "The CallSid is not CA followed by 32 hex digits.")
        shop = services.shop
        now = services.clock()
        status = shop.status(now)
        if status is not ShopStatus.OPEN:  # closed or paused: no agent (CONTRACT §12)
            log.info("call %s: the shop is %s; answered without an agent",
                     call_sid, status.value)
            if services.call_records is not None:  # CONTRACT §13: `closed` (paused too)
                services.call_records.record_unanswered(
                    call_sid, caller=caller, outcome=Outcome.CLOSED
                )
            twiml = closed_twiml(shop.menu, shop.zone, status, now)
            return Response(twiml, 200, content_type=TWIML)
        try:
            registry.reserve(call_sid)
        except CallsFull:
            log.warning("call %s: busy (%d calls in progress)", call_sid, registry.load,
                        extra={"call_sid": call_sid})  # before the call's own task tree
            if services.call_records is not None:  # CONTRACT §13: a busy call is kept too
                services.call_records.record_unanswered(
                    call_sid, caller=caller, outcome=Outcome.BUSY
                )
            return Response(busy_twiml(), 200, content_type=TWIML)
        token = registry.token_for(call_sid, caller)
        twiml = connect_twiml(settings, caller=caller, call_sid=call_sid, token=token)
        preopen_agent(call_sid)
        return Response(twiml, 200, content_type=TWIML)

    @app.post("/voice/after")
    async def voice_after() -> Response:
        form = await signed_form()
        if form is None:
            return forbidden()
        call_sid = form.get("CallSid", "")
        registry.release(call_sid)  # the stream is over either way
        outcome = registry.outcome(call_sid)
        if outcome is None and call_sid:  # the stream may have run on another instance
            outcome = await shared_outcome(services.store, call_sid)
        twiml = after_twiml(outcome, settings.transfer_number)
        return Response(twiml, 200, content_type=TWIML)

    # WS /twilio skips Quart (one hop from the socket to the call): see boba_web.twilio_stream.
    install_twilio_stream(
        app,
        twilio_stream_handler(settings, calls, authorize, signature_ok),
        twilio_raw_route(settings, calls, authorize, signature_ok),
    )
