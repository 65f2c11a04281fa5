"""`WS /twilio` off Quart's per-message path (issue #18: a lean media path).

Under `boba serve`, `/twilio` never reaches Hypercorn: the public port's own listener
(`boba_runtime.cli.public_port`) sees the upgrade and runs the call on the raw stream
(`twilio_raw_route`, registered in `app.extensions[RAW_ROUTES]`). The bare ASGI handler
below stays for every other server of the app (the test client, a connection that
upgrades after an earlier request) and does the same checks.

Every other route stays a Quart-Trio route; only the Twilio Media Stream skips Quart.
Quart runs a websocket handler behind a task and a memory channel of its own (a second
hop after Hypercorn's), plus its request context and wrappers, for every 20 ms frame of
every call. Here the call's phone reader awaits Hypercorn's ASGI `receive` itself and
feeds `run_call`'s core directly: one hop from the socket's task to the call, no more.

How it is wired: `install_twilio_stream` wraps the app's `asgi_app` (Quart's own hook
for ASGI middleware), so the one app object served by Hypercorn still answers every
path on the one public port, under the one `boba serve` command, with the same TLS
(Hypercorn terminates TLS before any ASGI scope exists). A websocket scope for
`/twilio` goes to `twilio_stream_handler`; everything else (HTTP, lifespan, the other
websockets) goes to Quart unchanged.

What the handler does is what the Quart route did (CONTRACT §3): the handshake's
`X-Twilio-Signature` is checked before the socket is accepted (403 JSON otherwise, via
the ASGI websocket-denial extension), then `run_call` runs the call with the per-call
token check on `start`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import msgspec
import trio

from boba_runtime.call.runner import (
    CLOSE_NORMAL,
    Authorize,
    CallWiring,
    PhoneClosed,
    run_call,
)
from boba_runtime.cli.public_port import (
    RAW_ROUTES,
    HeaderLookup,
    RawWebSocketRoute,
    ServerWebSocket,
)
from boba_runtime.config.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
SignatureCheck = Callable[[Settings, str, dict[str, Any], "ScopeHeaders | HeaderLookup"], bool]

TWILIO_PATH = "/twilio"
DRAIN_SECONDS = 5.0
"""How long a finished call waits for the caller's side to answer its close frame."""
FORBIDDEN = "The X-Twilio-Signature is missing or wrong."


class ScopeHeaders:
    """Case-insensitive lookup of an ASGI scope's request headers (first value wins)."""

    def __init__(self, scope: Scope) -> None:
        self._headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            self._headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def get(self, key: str, /) -> str | None:
        return self._headers.get(key.lower())


class AsgiPhone:
    """`run_call`'s phone side over the raw ASGI websocket events of one connection."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._gone = False  # the peer left: ASGI says so once, then would block forever
        self._closed = False  # we closed it

    async def receive(self) -> str | bytes:
        if self._gone:
            raise PhoneClosed
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            if text is not None:
                return str(text)
            return bytes(message.get("bytes") or b"")
        self._gone = True  # websocket.disconnect
        raise PhoneClosed

    async def send(self, text: str) -> None:
        if self._closed or self._gone:
            raise PhoneClosed
        await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        if not self._gone:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """Read and drop what the peer still sends until it has gone (its close reply or
        the end of the TCP connection), for at most `seconds`.

        Hypercorn puts each incoming message into a bounded queue (10) that only this
        handler reads, and reads the socket only while the queue has room; its queue is
        never closed when the handler returns. A call that ends while the caller's audio
        is still arriving stops reading, the queue fills, and Hypercorn never reads the
        caller's close reply: the connection then stays open for good (Twilio waits for
        its end; a graceful shutdown waits its whole grace period). Draining until the
        disconnect lets Hypercorn see the reply and close the socket.
        """
        if self._gone:
            return
        with trio.move_on_after(seconds):
            while (await self._receive())["type"] != "websocket.disconnect":
                pass
            self._gone = True


async def _deny(scope: Scope, send: Send) -> None:
    """403 with the JSON error body, before the handshake completes."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = msgspec.json.encode({"error": FORBIDDEN})
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # a server without the denial extension answers a close before accept with 403
        await send({"type": "websocket.close", "code": 1008})


def twilio_stream_handler(
    settings: Settings,
    calls: CallWiring,
    authorize: Authorize,
    signature_ok: SignatureCheck,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI handler of one `/twilio` websocket scope."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return  # the client left before the handshake completed
        if not signature_ok(settings, settings.stream_url, {}, ScopeHeaders(scope)):
            log.warning("WS /twilio refused: bad or missing X-Twilio-Signature")
            await _deny(scope, send)
            return
        await send({"type": "websocket.accept"})
        connector = calls.choose_agent(scope)
        phone = AsgiPhone(receive, send)
        try:
            await run_call(phone, calls.deps, connector, authorize=authorize)
        finally:
            await phone.drain()  # bounded; then Hypercorn can close the socket

    return handle


def twilio_raw_route(
    settings: Settings,
    calls: CallWiring,
    authorize: Authorize,
    signature_ok: SignatureCheck,
) -> RawWebSocketRoute:
    """`/twilio` on `boba serve`'s own listener (`boba_runtime.cli.public_port`): the same
    checks as the ASGI handler, with the socket read by the call's phone reader itself."""

    def allowed(headers: HeaderLookup) -> bool:
        return signature_ok(settings, settings.stream_url, {}, headers)

    async def run(socket: ServerWebSocket, scope: Mapping[str, Any]) -> None:
        connector = calls.choose_agent(scope)
        await run_call(socket, calls.deps, connector, authorize=authorize)

    return RawWebSocketRoute(allowed=allowed, forbidden=FORBIDDEN, run=run)


def install_twilio_stream(app: Any, handler: ASGIApp,
                          raw_route: RawWebSocketRoute | None = None) -> None:
    """Route websocket scopes for `/twilio` to `handler`; everything else to Quart."""
    quart_asgi: ASGIApp = app.asgi_app

    async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope.get("path") == TWILIO_PATH:
            await handler(scope, receive, send)
        else:
            await quart_asgi(scope, receive, send)

    app.asgi_app = asgi_app
    if raw_route is not None:
        app.extensions.setdefault(RAW_ROUTES, {})[TWILIO_PATH] = raw_route
