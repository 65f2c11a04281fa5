"""The public port: our own trio listener in front of Hypercorn (issue #18, a lean media path).

    trio.serve_listeners (plain, or TLS when BOBA_TLS_CERT/KEY are set)
    └── one task per accepted connection: `_dispatch`
        ├── reads the first request head (bounded: `MAX_HEAD_BYTES`, `HEAD_TIMEOUT_S`)
        ├── `GET <a raw route>`  → the `websockets` sans-I/O `ServerProtocol` on this very
        │                          stream and task: handshake check (403 before accept),
        │                          then the route's handler reads, decodes, feeds the call
        │                          core and writes, with no channel or task in between
        └── anything else         → Hypercorn's own per-connection `TCPServer`, with the
                                    bytes already read replayed first: Quart-Trio serves
                                    every other route (and HTTP/2) unchanged

Why: inside Hypercorn every Twilio frame crossed its protocol task, the ASGI queue and
wsproto's framing before reaching the call (profile-after.md: Hypercorn 56 % inclusive).
One port and one `boba serve` command stay: this module replaces only
`hypercorn.trio.worker_serve` (lifespan, listeners, graceful shutdown kept as Hypercorn
does them), so TLS, `--workers N` (one shared socket) and the shutdown grace work as before.

Only the first request of a connection is looked at: a client that sends another request
first and then upgrades to a raw route on the same connection is served by Hypercorn (the
app keeps an ASGI route for that path, see `boba_web.twilio_stream`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr, wrap_app
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from boba_runtime.call.agent_link import RECEIVE_BYTES, DirectAgentConnection
from boba_runtime.call.runner import CLOSE_NORMAL, PhoneClosed

log = logging.getLogger("boba.serve")

MAX_HEAD_BYTES = 16 * 1024  # Hypercorn's own limit for a request head (h11_max_incomplete_size)
HEAD_TIMEOUT_S = 10.0  # the whole first head, once the connection has sent its first byte
CLOSE_TIMEOUT_S = 2.0  # waiting for the client's close frame after ours
RAW_ROUTES = "boba_raw_routes"
"""`app.extensions` key where an app lists the WebSocket routes to take off Hypercorn
(path → `RawWebSocketRoute`; `boba_web.twilio_stream` puts `/twilio` there)."""


class HeaderLookup:
    """Case-insensitive lookup of a handshake's headers (first value wins), like
    Quart's `request.headers.get`."""

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def get(self, key: str, /) -> str | None:
        values = self._headers.get_all(key)
        return values[0] if values else None


class ServerWebSocket(DirectAgentConnection):
    """The server end of one WebSocket, read and written by its connection's own task.

    The agent link's reader (`DirectAgentConnection`: whole messages from the sans-I/O
    protocol, control replies flushed by the reader) with the phone side's failure
    (`PhoneClosed`) and a server's close: our close frame, the client's reply (bounded),
    then TCP closed by us, as RFC 6455 asks of a server.
    """

    closed_error = PhoneClosed

    def __init__(self, stream: trio.abc.Stream, protocol: ServerProtocol) -> None:
        super().__init__(stream, protocol, CLOSE_TIMEOUT_S)  # type: ignore[arg-type]
        self._closing = False

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._closing:
            return
        self._closing = True
        ws = self._ws
        with trio.move_on_after(self._close_timeout, shield=True):
            try:
                if ws.state is State.OPEN and self._lost is None:
                    ws.send_close(code, reason)
                    await self._flush()
                while ws.close_rcvd is None and self._lost is None:
                    data = await self._stream.receive_some(RECEIVE_BYTES)
                    if not data:
                        break
                    ws.receive_data(data)
                    ws.events_received()
            except (PhoneClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await trio.aclose_forcefully(self._stream)

    async def aclose(self) -> None:
        await self.close()


@dataclass(frozen=True)
class RawWebSocketRoute:
    """A WebSocket path served on the raw stream instead of through Hypercorn.

    `allowed` sees the handshake's headers before the socket is accepted; a refusal is
    answered `403` with `forbidden` as its JSON error. `run` then has the socket (a phone
    side for `run_call`) and an ASGI-like scope (`path`, `scheme`, `client`, `server`,
    `headers`) for whatever depends on where the connection came in.
    """

    allowed: Callable[[HeaderLookup], bool]
    forbidden: str
    run: Callable[[ServerWebSocket, Mapping[str, Any]], Awaitable[None]]


class ReplayStream(trio.abc.HalfCloseableStream):
    """A stream whose first reads return bytes already read from it: Hypercorn's
    `TCPServer` gets the connection as if nothing had been read. Everything else
    (`socket`, `transport_stream`, `selected_alpn_protocol`, `do_handshake`) is the
    wrapped stream's."""

    def __init__(self, stream: Any, buffered: bytes) -> None:
        self._stream = stream
        self._buffered = buffered

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._buffered:
            if max_bytes is None or max_bytes >= len(self._buffered):
                data, self._buffered = self._buffered, b""
            else:
                data, self._buffered = (
                    self._buffered[:max_bytes], self._buffered[max_bytes:]
                )
            # No checkpoint here: Hypercorn must see the request in the same scheduler pass
            # that starts its idle task, or a shutdown begun meanwhile closes the
            # connection with its request unanswered (Hypercorn's own read races the same).
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()  # AttributeError on TLS streams, as Hypercorn expects

    async def aclose(self) -> None:
        await self._stream.aclose()


class HeadTooLarge(Exception):
    """The client's first request head exceeds `MAX_HEAD_BYTES` (the client's fault)."""


async def read_head(stream: trio.abc.ReceiveStream, first_byte_timeout: float) -> bytes:
    """Bytes up to and including the first head's blank line (maybe more after it);
    fewer if the client closed or went quiet first. Raises `HeadTooLarge`."""
    buffered = b""
    with trio.move_on_after(first_byte_timeout):
        buffered = bytes(await stream.receive_some(RECEIVE_BYTES))
    if not buffered:
        return b""
    with trio.move_on_after(HEAD_TIMEOUT_S):
        while b"\r\n\r\n" not in buffered:
            if len(buffered) > MAX_HEAD_BYTES:
                raise HeadTooLarge
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                break
            buffered += data
    if b"\r\n\r\n" not in buffered and len(buffered) > MAX_HEAD_BYTES:
        raise HeadTooLarge
    return buffered


def raw_route_path(head: bytes, routes: Mapping[str, RawWebSocketRoute]) -> str | None:
    """The raw route a head asks for (`GET /path HTTP/1.1`, query ignored), else None."""
    line, _, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        return None
    path = parts[1].partition(b"?")[0].decode("latin-1")
    return path if path in routes else None


def _json_error(protocol: ServerProtocol, status: int, message: str) -> Response:
    body = msgspec.json.encode({"error": message})
    response = protocol.reject(status, "")
    del response.headers["Content-Type"]  # websockets' `Headers` adds rather than replaces
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = "application/json"
    response.headers["Content-Length"] = str(len(body))
    response.body = body
    return response


async def _send_and_close(stream: trio.abc.Stream, protocol: ServerProtocol,
                          response: Response | None = None) -> None:
    if response is not None:
        protocol.send_response(response)
    with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
        try:
            for chunk in protocol.data_to_send():
                if chunk:
                    await stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(stream)


async def serve_raw_websocket(
    stream: trio.abc.Stream,
    buffered: bytes,
    route: RawWebSocketRoute,
    scope: dict[str, Any],
    max_message_bytes: int,
) -> None:
    """One WebSocket on a raw route: handshake (403 / 4xx before accept), then `run`."""
    protocol = ServerProtocol(max_size=max_message_bytes)
    protocol.receive_data(buffered)
    events = protocol.events_received()
    if not events:  # not a valid HTTP request: websockets answered (or just closes)
        log.warning("WS %s refused: %s", scope["path"], protocol.handshake_exc)
        await _send_and_close(stream, protocol)
        return
    request = events[0]
    if not isinstance(request, Request):  # cannot happen: the first event of a server is one
        await _send_and_close(stream, protocol)
        return
    headers = HeaderLookup(request.headers)
    if not route.allowed(headers):
        log.warning("WS %s refused: %s", scope["path"], route.forbidden)
        await _send_and_close(stream, protocol, _json_error(protocol, 403, route.forbidden))
        return
    response = protocol.accept(request)
    if response.status_code != 101:  # not a WebSocket upgrade after all (400/426)
        log.warning("WS %s refused: %s", scope["path"], protocol.handshake_exc)
        await _send_and_close(stream, protocol, response)
        return
    protocol.send_response(response)
    scope["headers"] = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers.raw_items()
    ]
    socket = ServerWebSocket(stream, protocol)
    try:
        await socket._flush()  # the 101
        socket._take(events[1:])  # frames that came with the handshake
        await route.run(socket, scope)
    except PhoneClosed:
        pass
    finally:
        await socket.close()


def _addresses(stream: Any) -> tuple[Any, Any]:
    sock = stream.transport_stream.socket if isinstance(stream, trio.SSLStream) else stream.socket
    return sock.getpeername()[:2], sock.getsockname()[:2]


async def _dispatch(
    hypercorn: Callable[[Any], Awaitable[None]],
    routes: Mapping[str, RawWebSocketRoute],
    config: Config,
    max_message_bytes: int,
    stream: Any,
) -> None:
    """One accepted connection: a raw route's WebSocket, or Hypercorn's as always."""
    tls = isinstance(stream, trio.SSLStream)
    try:
        if tls:
            with trio.fail_after(config.ssl_handshake_timeout):
                await stream.do_handshake()
            if stream.selected_alpn_protocol() not in (None, "http/1.1"):
                await hypercorn(stream)  # HTTP/2 over TLS: never a raw route
                return
        buffered = await read_head(stream, config.keep_alive_timeout)
    except HeadTooLarge:
        with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
        await trio.aclose_forcefully(stream)
        return
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
        await trio.aclose_forcefully(stream)
        return
    if not buffered:  # nothing sent within the keep-alive time, or closed at once
        await trio.aclose_forcefully(stream)
        return
    path = raw_route_path(buffered, routes)
    if path is None:
        await hypercorn(ReplayStream(stream, buffered))
        return
    if b"\r\n\r\n" not in buffered:  # the head stopped coming (HEAD_TIMEOUT_S) or closed
        log.warning("WS %s refused: the request head did not arrive whole", path)
        await trio.aclose_forcefully(stream)
        return
    try:
        client, server = _addresses(stream)
    except OSError:  # the client left already
        await trio.aclose_forcefully(stream)
        return
    scope: dict[str, Any] = {
        "type": "websocket", "path": path, "scheme": "wss" if tls else "ws",
        "client": client, "server": server, "headers": [],
    }
    try:
        await serve_raw_websocket(stream, buffered, routes[path], scope, max_message_bytes)
    except Exception:  # contained on purpose: one connection, not the shop (hypercorn_guard)
        log.warning("a %s connection failed; closed it", path, exc_info=True)
        await trio.aclose_forcefully(stream)


async def serve_public(
    app: Any,
    config: Config,
    listen_socket: Any,
    routes: Mapping[str, RawWebSocketRoute],
    *,
    max_message_bytes: int,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`hypercorn.trio.serve` on `listen_socket` (already listening), with `routes` taken
    off Hypercorn. Mirrors Hypercorn 0.18's `worker_serve`: the app's lifespan, the
    listeners, a graceful shutdown giving connections `config.graceful_timeout`."""
    wrapped: AppWrapper = wrap_app(app, config.wsgi_max_body_size, "asgi")
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            ssl_context: ssl.SSLContext | None = config.create_ssl_context()
            listener: trio.abc.Listener[Any] = trio.SocketListener(
                trio.socket.from_stdlib_socket(listen_socket)
            )
            scheme = "http"
            if ssl_context is not None:
                listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
                scheme = "https"
            address = repr_socket_addr(listen_socket.family, listen_socket.getsockname())
            bind = f"{scheme}://{address}"
            await config.log.info(f"Running on {bind} (CTRL + C to quit)")

            async def hypercorn(stream: Any) -> None:
                await TCPServer(
                    wrapped, config, context, ConnectionState(lifespan_state.copy()), stream
                )

            handler = partial(_dispatch, hypercorn, routes, config, max_message_bytes)
            task_status.started([bind])
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    nursery.start_soon(
                        partial(trio.serve_listeners, handler, [listener],
                                handler_nursery=server_nursery)
                    )
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, others = error.split((ShutdownError, KeyboardInterrupt))
                if others is not None:
                    raise others from None
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
