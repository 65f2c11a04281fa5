"""`WS /twilio` beside Quart (boba_web.twilio_stream): only that scope skips Quart, and the
phone side over raw ASGI events ends cleanly. The whole call path over real Hypercorn
is covered by tests/web/test_call_loopback.py."""

from __future__ import annotations

from typing import Any

import pytest

from boba_runtime.call.runner import PhoneClosed
from boba_web.twilio_stream import AsgiPhone, ScopeHeaders, install_twilio_stream


class FakeApp:
    def __init__(self) -> None:
        self.seen: list[str] = []

        async def quart_asgi(scope: Any, receive: Any, send: Any) -> None:
            self.seen.append(f"quart {scope['type']} {scope.get('path')}")

        self.asgi_app = quart_asgi


async def _nothing() -> dict[str, Any]:
    return {}


async def _discard(message: Any) -> None:
    return None


async def test_only_the_twilio_websocket_skips_quart() -> None:
    app = FakeApp()
    handled: list[str] = []

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        handled.append(scope["path"])

    install_twilio_stream(app, handler)
    for scope in (
        {"type": "websocket", "path": "/twilio"},
        {"type": "http", "path": "/twilio"},
        {"type": "websocket", "path": "/phone/ws"},
        {"type": "http", "path": "/voice"},
        {"type": "lifespan"},
    ):
        await app.asgi_app(scope, _nothing, _discard)
    assert handled == ["/twilio"]
    assert app.seen == [
        "quart http /twilio",
        "quart websocket /phone/ws",
        "quart http /voice",
        "quart lifespan None",
    ]


async def test_phone_over_asgi_reads_frames_then_reports_the_hangup_every_time() -> None:
    inbox: list[dict[str, Any]] = [
        {"type": "websocket.receive", "text": '{"event":"connected"}'},
        {"type": "websocket.receive", "bytes": b"\x01"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)  # a second read after the disconnect would fail here

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    phone = AsgiPhone(receive, send)
    assert await phone.receive() == '{"event":"connected"}'
    assert await phone.receive() == b"\x01"
    await phone.send("hello")
    for _ in range(2):
        with pytest.raises(PhoneClosed):
            await phone.receive()
    with pytest.raises(PhoneClosed):
        await phone.send("too late")
    await phone.close(1000)  # the peer is gone: nothing more to send
    assert sent == [{"type": "websocket.send", "text": "hello"}]


async def test_phone_close_sends_one_close_frame() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    phone = AsgiPhone(_nothing, send)
    await phone.close(1008, "token")
    await phone.close(1008, "token")
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "token"}]


def test_scope_headers_are_case_insensitive() -> None:
    raw = [(b"X-Twilio-Signature", b"abc"), (b"x-twilio-signature", b"x")]
    headers = ScopeHeaders({"headers": raw})
    assert headers.get("x-twilio-signature") == "abc"
    assert headers.get("X-TWILIO-SIGNATURE") == "abc"
    assert headers.get("missing") is None
