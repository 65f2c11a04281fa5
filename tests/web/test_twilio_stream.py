"""`WS /twilio` beside Quart (boba_web.twilio_stream): only that scope skips Quart, and the
phone side over raw ASGI events ends cleanly. The whole call path over real Hypercorn
is covered by tests/web/test_call_loopback.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from boba_runtime.call.runner import PhoneClosed
from boba_runtime.cli.bench_driver import LeanWebSocket, serve
from boba_web.twilio_stream import AsgiPhone, ScopeHeaders, install_twilio_stream
from tests.fakes.twilio_client import answer_call
from tests.helpers.server import running_server

CLOSE_OPCODE = 0x8


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



async def upgrade_after_a_request(host: str, port: int, path: str) -> LeanWebSocket:
    """A WebSocket opened on a kept-alive connection after a plain request: `boba serve`
    hands such a connection to Hypercorn, so `/twilio` runs through the ASGI handler
    (a fresh connection takes the raw route of `boba_runtime.cli.public_port`)."""
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        answer += await stream.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    await stream.send_all(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    head, _, rest = head.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return LeanWebSocket(stream, client=True, buffered=rest)


class SilentAgent:
    """An agent that says Welcome and then reads nothing, not even a close frame: the
    bridge waits its whole close timeout (2 s) for it before the call's handler returns."""

    def __init__(self) -> None:
        self.connections = 0

    async def __call__(self, ws: LeanWebSocket) -> None:
        await ws.send(json.dumps({"type": "Welcome", "request_id": "silent"}))
        self.connections += 1
        await trio.sleep_forever()


async def test_a_finished_stream_closes_its_socket_though_the_caller_kept_sending(
    tmp_path: Path,
) -> None:
    """The server's close frame must end in a closed TCP connection even when the caller
    sent more than Hypercorn's per-connection queue (10 messages) after the call stopped
    reading. Before `AsgiPhone.drain`, Hypercorn then never read the caller's close reply
    and the socket stayed open for good (the streams of the two-instance test that never
    ended, issue #17, before `boba serve` took fresh `/twilio` connections off Hypercorn).
    Our raw client keeps sending after the close frame, as a loaded Twilio edge does before
    it has read it; it upgrades after a plain request, so the ASGI handler runs the call."""
    async with trio.open_nursery() as nursery:
        agent = SilentAgent()
        agent_port = await nursery.start(serve, agent, "127.0.0.1")
        env = {"BOBA_AGENT_URL": f"ws://127.0.0.1:{agent_port}/agent"}
        # `/voice` on one server, the stream on another (same data directory: same key
        # and store), so the call opens its own agent link and waits for its close
        # instead of taking the one `/voice` pre-opened.
        async with (
            running_server(tmp_path, env) as first,
            running_server(tmp_path, env) as server,
            httpx.AsyncClient() as http,
        ):
            sid, caller = "CA" + "1" * 32, "+14155550123"
            twiml = await answer_call(http, server_url=first.base_url,
                                      public_url=server.base_url, auth_token=None,
                                      call_sid=sid, caller=caller)
            host, port = server.base_url.removeprefix("http://").split(":")
            ws = await upgrade_after_a_request(host, int(port), "/twilio")
            stream_sid = "MZ" + "1" * 32
            media = {"event": "media", "streamSid": stream_sid, "sequenceNumber": "3",
                     "media": {"track": "inbound", "chunk": "1", "timestamp": "20",
                               "payload": "/" * 216}}
            stop = {"event": "stop", "sequenceNumber": "2", "streamSid": stream_sid,
                    "stop": {"accountSid": "AC" + "0" * 32, "callSid": sid}}
            for message in (
                {"event": "connected", "protocol": "Call", "version": "1.0.0"},
                {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                 "start": {"accountSid": "AC" + "0" * 32, "streamSid": stream_sid,
                           "callSid": sid, "tracks": ["inbound"],
                           "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                           "channels": 1},
                           "customParameters": twiml.parameters}},
            ):
                await ws.send(json.dumps(message))
            with trio.fail_after(10):
                while agent.connections < 2:  # the pre-opened one and the call's own
                    await trio.sleep(0.01)
                await ws.send(json.dumps(stop))
                while (frame := ws._parse()) is None or frame[1] != CLOSE_OPCODE:
                    if frame is None:
                        await ws._fill()  # read without answering the close frame yet
                late = b"".join(ws._frame(1, json.dumps(media).encode()) for _ in range(40))
                await ws._stream.send_all(late)  # the call no longer reads these
                await ws._stream.send_all(ws._frame(CLOSE_OPCODE, (1000).to_bytes(2, "big")))
                while await ws._stream.receive_some(65536) != b"":  # ... the server ends TCP
                    pass
            await ws.aclose()
        nursery.cancel_scope.cancel()
