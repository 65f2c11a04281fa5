"""The public port's own listener (boba_runtime.cli.public_port) over real loopback sockets:
a raw WebSocket route is served on the stream, off Hypercorn, plain and TLS; its handshake
check answers 403 before accepting; every other request (HTTP and other WebSockets) still
reaches the ASGI app through Hypercorn on the same port; malformed and oversized heads are
refused cleanly and the server goes on serving. The whole `/twilio` call over this
listener is tests/web/test_call_loopback.py (plain and TLS)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio_websocket
from hypercorn.config import Config

from boba_runtime.call.runner import PhoneClosed
from boba_runtime.cli.public_port import (
    MAX_HEAD_BYTES,
    HeaderLookup,
    RawWebSocketRoute,
    ServerWebSocket,
    serve_public,
)

KEY_HEADER = "X-Test-Key"
UPGRADE = (
    "GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@dataclass
class Seen:
    asgi: list[str] = field(default_factory=list)  # what reached the app through Hypercorn
    raw: list[dict[str, Any]] = field(default_factory=list)  # scopes of the raw route


def make_app(seen: Seen) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        seen.asgi.append(f"{scope['type']} {scope['path']}")
        if scope["type"] == "http":
            body = f"http {scope['path']}".encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        else:
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "from hypercorn"})
            await send({"type": "websocket.close", "code": 1000})

    return app


def echo_route(seen: Seen) -> RawWebSocketRoute:
    def allowed(headers: HeaderLookup) -> bool:
        return headers.get(KEY_HEADER.lower()) == "good"

    async def run(ws: ServerWebSocket, scope: Mapping[str, Any]) -> None:
        seen.raw.append(dict(scope))
        while True:
            try:
                message = await ws.receive()
            except PhoneClosed:
                return
            if message == "bye":
                await ws.close(4000, "asked to")
                return
            await ws.send(f"echo {message!s}")

    return RawWebSocketRoute(allowed=allowed, forbidden="bad key", run=run)


@dataclass
class Running:
    port: int
    seen: Seen
    tls: bool

    @property
    def http(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@asynccontextmanager
async def listening(tmp_path: Path, *, tls: bool = False) -> AsyncIterator[Running]:
    seen = Seen()
    config = Config()
    config.accesslog = None
    config.graceful_timeout = 1.0
    if tls:
        config.certfile, config.keyfile = (str(p) for p in self_signed(tmp_path))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_public(
                make_app(seen), config, sock, {"/raw": echo_route(seen)},
                max_message_bytes=65536, shutdown_trigger=shutdown_trigger,
                task_status=task_status,
            )
        )
        try:
            yield Running(port=port, seen=seen, tls=tls)
        finally:
            stop.set()


async def raw_exchange(running: Running, data: bytes) -> bytes:
    """Send `data` on a fresh connection; everything the server answers until it closes."""
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", running.port)
    if running.tls:
        stream = trio.SSLStream(stream, client_tls(), server_hostname="127.0.0.1")
    answer = b""
    with trio.fail_after(10):
        await stream.send_all(data)
        while chunk := await stream.receive_some(65536):
            answer += chunk
    await trio.aclose_forcefully(stream)
    return answer


async def raw_exchange_half_closed(running: Running, data: bytes) -> bytes:
    """Like `raw_exchange`, but the client says it has nothing more to send (EOF)."""
    stream = await trio.open_tcp_stream("127.0.0.1", running.port)
    answer = b""
    with trio.fail_after(10):
        await stream.send_all(data)
        await stream.send_eof()
        while chunk := await stream.receive_some(65536):
            answer += chunk
    await trio.aclose_forcefully(stream)
    return answer


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=needs_openssl)])
async def test_the_raw_route_is_served_off_hypercorn_and_the_rest_through_it(
    tmp_path: Path, tls: bool
) -> None:
    async with listening(tmp_path, tls=tls) as running:
        options: dict[str, Any] = {"ssl_context": client_tls()} if tls else {}
        async with trio_websocket.open_websocket_url(
            f"{running.ws}/raw?x=1", extra_headers=[(KEY_HEADER, "good")], **options
        ) as ws:
            for text in ("one", "two"):
                await ws.send_message(text)
                assert await ws.get_message() == f"echo {text}"
            await ws.send_message("bye")
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 4000
        async with httpx.AsyncClient(verify=False) as http:  # the same port, HTTP
            response = await http.get(f"{running.http}/anything")
            assert response.text == "http /anything"
            response = await http.post(f"{running.http}/raw", content=b"not an upgrade")
            assert response.text == "http /raw"
        async with trio_websocket.open_websocket_url(f"{running.ws}/other", **options) as ws:
            assert await ws.get_message() == "from hypercorn"
        assert running.seen.asgi == ["http /anything", "http /raw", "websocket /other"]
        [scope] = running.seen.raw
        assert scope["path"] == "/raw" and scope["scheme"] == ("wss" if tls else "ws")
        assert scope["server"] == ("127.0.0.1", running.port)
        assert (KEY_HEADER.lower().encode(), b"good") in scope["headers"]


async def test_a_refused_handshake_is_403_json_before_accepting(tmp_path: Path) -> None:
    async with listening(tmp_path) as running:
        for extra in ("", f"{KEY_HEADER}: wrong\r\n"):
            answer = await raw_exchange(running, (UPGRADE + extra + "\r\n").encode())
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 403 "), answer
            assert b"content-type: application/json" in head.lower()
            assert msgspec.json.decode(body) == {"error": "bad key"}
        with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
            async with trio_websocket.open_websocket_url(f"{running.ws}/raw"):
                pass
        assert rejected.value.status_code == 403
        assert running.seen.raw == [] and running.seen.asgi == []


async def test_malformed_and_huge_heads_are_refused_and_serving_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with listening(tmp_path) as running:
        # Signed but not an upgrade: websockets answers 426, nothing reaches the route.
        plain_get = f"GET /raw HTTP/1.1\r\nHost: x\r\n{KEY_HEADER}: good\r\n\r\n"
        answer = await raw_exchange(running, plain_get.encode())
        assert answer.startswith(b"HTTP/1.1 426 "), answer
        # A broken header line on the raw route: closed without a call.
        answer = await raw_exchange(running, b"GET /raw HTTP/1.1\r\nno colon here\r\n\r\n")
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
        # A head larger than the limit, with no end: 431 and closed.
        huge = b"GET /raw HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10)
        answer = await raw_exchange(running, huge)
        assert answer.startswith(b"HTTP/1.1 431 "), answer
        # A head that arrives a few bytes at a time still works.
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        head = (UPGRADE + f"{KEY_HEADER}: good\r\n\r\n").encode()
        for start in range(0, len(head), 7):
            await stream.send_all(head[start:start + 7])
            await trio.sleep(0.001)
        with trio.fail_after(10):
            answer = await stream.receive_some(65536)
        assert answer.startswith(b"HTTP/1.1 101 "), answer
        await trio.aclose_forcefully(stream)
        # A head cut short by the client on the raw route: closed, no call.
        answer = await raw_exchange_half_closed(running, b"GET /raw HTTP/1.1\r\nHost: x\r\n")
        assert answer == b"", answer
        assert "WS /raw refused: the request head did not arrive whole" in caplog.text
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{running.http}/still")).text == "http /still"
        assert len(running.seen.raw) == 1
