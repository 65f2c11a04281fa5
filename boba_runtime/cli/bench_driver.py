"""A lean WebSocket endpoint (RFC 6455) for the load driver of `boba bench`, loopback only.

Why not trio-websocket, as the product uses: the bench process plays Twilio *and* the
agent for every call, so it handles as many WebSocket messages as the server under test.
trio-websocket costs tens of microseconds per message (wsproto's event machinery, a
reader task and a memory channel per connection); on a 2-core machine the driver then
takes as much CPU as the server and starves it. This endpoint parses frames in the
receiving task itself and writes each frame with one `send_all`, which is all the bench
needs: whole messages, no extensions, no subprotocols, ping answered, close honoured.
It is not a general-purpose WebSocket library: it trusts its loopback peer's framing only
as far as the RFC's framing rules go (bad frames raise `WsClosed`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
from collections.abc import Awaitable, Callable, Sequence

import trio

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CONTINUATION, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_MAX_HEADER = 16384
_RECEIVE_SIZE = 65536


class WsClosed(Exception):
    """The connection is closed (close frame, EOF or a framing error); `code` if known."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


class WsHandshakeError(Exception):
    """The peer refused the upgrade (e.g. 403 for a bad signature) or answered nonsense."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _accept_value(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())  # RFC 6455 mandates SHA-1


def _xor(data: bytes, key: bytes) -> bytes:
    """(Un)mask `data` with the 4-byte `key`: one big-integer XOR, done in C."""
    n = len(data)
    if n == 0:
        return data
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little"
    )


class LeanWebSocket:
    """One WebSocket over a trio stream. `send` may be called from several tasks; `receive`
    from one task at a time."""

    def __init__(self, stream: trio.abc.Stream, *, client: bool, buffered: bytes = b"") -> None:
        self._stream = stream
        self._client = client
        self._buffer = bytearray(buffered)
        self._send_lock = trio.Lock()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._close_sent = False
        self.closed: WsClosed | None = None

    # --- sending ------------------------------------------------------------------------------

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        mask_bit = 0x80 if self._client else 0
        if n < 126:
            header = bytes((0x80 | opcode, mask_bit | n))
        elif n < 65536:
            header = bytes((0x80 | opcode, mask_bit | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, mask_bit | 127)) + n.to_bytes(8, "big")
        if self._client:
            key = random.getrandbits(32).to_bytes(4, "big")
            return header + key + _xor(payload, key)
        return header + payload

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.closed is not None:
            raise self.closed
        frame = self._frame(opcode, payload)
        try:
            async with self._send_lock:
                await self._stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = self.closed or WsClosed(None, "connection lost")
            raise self.closed from exc

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._send_frame(_TEXT, message.encode())
        else:
            await self._send_frame(_BINARY, message)

    # --- receiving ----------------------------------------------------------------------------

    async def _fill(self) -> None:
        try:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.closed = self.closed or WsClosed(None, "connection lost")
            raise self.closed
        self._buffer += data

    async def receive(self) -> str | bytes:
        """The next whole message; raises `WsClosed` when the connection ends."""
        while True:
            if self.closed is not None:
                raise self.closed
            frame = self._parse()
            if frame is None:
                await self._fill()
                continue
            fin, opcode, payload = frame
            if opcode == _PING:
                await self._send_frame(_PONG, payload)
            elif opcode == _PONG:
                pass
            elif opcode == _CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                await self._reply_close(payload[:2])
                self.closed = WsClosed(code, payload[2:].decode(errors="replace"))
                raise self.closed
            elif opcode in (_TEXT, _BINARY, _CONTINUATION):
                if opcode != _CONTINUATION:
                    self._fragment_opcode = opcode
                    self._fragments = []
                self._fragments.append(payload)
                if fin:
                    whole = b"".join(self._fragments)
                    self._fragments = []
                    return whole.decode() if self._fragment_opcode == _TEXT else whole
            else:
                self.closed = WsClosed(1002, f"unknown opcode {opcode}")
                raise self.closed

    def _parse(self) -> tuple[bool, int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        length = second & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            offset = 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length = int.from_bytes(buffer[2:10], "big")
            offset = 10
        masked = bool(second & 0x80)
        key = b""
        if masked:
            key = bytes(buffer[offset : offset + 4])
            offset += 4
        if len(buffer) < offset + length:
            return None
        payload = bytes(buffer[offset : offset + length])
        del buffer[: offset + length]
        if masked:
            payload = _xor(payload, key)
        return bool(first & 0x80), first & 0x0F, payload

    # --- closing ------------------------------------------------------------------------------

    async def _reply_close(self, code: bytes) -> None:
        if not self._close_sent:
            self._close_sent = True
            try:
                async with self._send_lock:
                    await self._stream.send_all(self._frame(_CLOSE, code))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def aclose(self, code: int = 1000, *, wait: float = 2.0) -> None:
        """Send a close frame, wait briefly for the peer's, then close the TCP stream."""
        try:
            if self.closed is None:
                await self._reply_close(code.to_bytes(2, "big"))
                with trio.move_on_after(wait):
                    while True:
                        await self.receive()
        except WsClosed:
            pass
        finally:
            self.closed = self.closed or WsClosed(code, "closed by us")
            with trio.CancelScope(shield=True):
                await self._stream.aclose()


# --- handshakes -----------------------------------------------------------------------------------


async def _read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    """HTTP head (up to the blank line) and whatever came after it."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_HEADER:
            raise WsHandshakeError(0, "HTTP head too large")
        chunk = await stream.receive_some(_RECEIVE_SIZE)
        if not chunk:
            raise WsHandshakeError(0, "connection closed during the handshake")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    return head, rest


def _headers(lines: list[bytes]) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return headers


async def connect(
    host: str, port: int, path: str, *, headers: Sequence[tuple[str, str]] = ()
) -> LeanWebSocket:
    """Open a client WebSocket to `ws://host:port/path` (plain TCP: loopback only)."""
    stream = await trio.open_tcp_stream(host, port)
    try:
        key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
            "Connection: Upgrade", f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13", *(f"{name}: {value}" for name, value in headers),
        ]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        head, rest = await _read_head(stream)
        status_line, *header_lines = head.split(b"\r\n")
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 101:
            refused = status_line.decode(errors="replace")
            raise WsHandshakeError(status, f"upgrade refused: {refused}")
        if _headers(header_lines).get(b"sec-websocket-accept") != _accept_value(key):
            raise WsHandshakeError(status, "bad Sec-WebSocket-Accept")
        return LeanWebSocket(stream, client=True, buffered=rest)
    except BaseException:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        raise


Handler = Callable[[LeanWebSocket], Awaitable[None]]


async def serve(
    handler: Handler, host: str, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Accept WebSocket clients on `host`, port chosen by the OS (reported via `task_status`);
    each connection runs `handler(ws)` and is closed when it returns."""

    async def on_connection(stream: trio.SocketStream) -> None:
        try:
            head, rest = await _read_head(stream)
            request_line, *header_lines = head.split(b"\r\n")
            key = _headers(header_lines).get(b"sec-websocket-key")
            if not request_line.startswith(b"GET ") or not key:
                await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            await stream.send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + _accept_value(key) + b"\r\n\r\n"
            )
            ws = LeanWebSocket(stream, client=False, buffered=rest)
            try:
                await handler(ws)
            finally:
                await ws.aclose()
        except (WsHandshakeError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(on_connection, listeners)
