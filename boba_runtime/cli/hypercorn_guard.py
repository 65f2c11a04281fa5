"""One client connection failing inside Hypercorn must not stop the shop.

Hypercorn's trio worker runs every connection as a task of one `trio.serve_listeners`
nursery, so an exception escaping a connection ends the whole server: every call in
progress, the event streams, the SMS worker. Hypercorn 0.18 has such an exception that
any client can trigger: HTTP/2 DATA for a stream whose response already ended (a 413 sent
while the body is still arriving) raises `KeyError` in `H2Protocol._handle_events`
(pgjones/hypercorn#329; fixes proposed in #312/#334/#365, unreleased). HTTP/2 is reachable
even without TLS (prior knowledge, `Upgrade: h2c`), so one `curl --http2-prior-knowledge`
with a large body stopped `boba serve`.

`guard_connections()` wraps Hypercorn's per-connection `TCPServer.run`: an `Exception`
escaping one connection is logged and ends that connection only (its socket is closed by
Hypercorn's own `finally`). Cancellation and other `BaseException`s pass through untouched.

It also shields Hypercorn's connection close (`TCPServer._close`: `send_eof` + `aclose`).
When a response ends a connection (`Connection: close`, HTTP/1.0, a body left unread),
Hypercorn closes the socket from inside the app's task, which quart-trio is cancelling at
that moment: `send_eof` raised `Cancelled` and the socket was never closed. The client
then waited for an end that never came (a `Connection: close` request hung until it gave
up), and a graceful shutdown waited its whole grace period for such connections.

Applied once per process; calling it again is harmless. The wrapped method is private, so
pyproject.toml bounds Hypercorn to versions where it exists, and `guard_connections`
fails loudly (and `tests/runtime/test_hypercorn_guard.py` with it) if it is gone.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.trio import tcp_server

log = logging.getLogger("boba.serve")

_MARK = "_boba_guarded"


def guard_connections() -> None:
    """Make Hypercorn's trio `TCPServer.run` contain its own failures (idempotent)."""
    server_class: Any = getattr(tcp_server, "TCPServer", None)
    original: Callable[[Any], Awaitable[None]] | None = getattr(server_class, "run", None)
    if original is None or not inspect.iscoroutinefunction(original):
        # A private API: pyproject.toml bounds Hypercorn to versions where it exists.
        raise RuntimeError(
            "hypercorn.trio.tcp_server.TCPServer.run (async) is gone in this Hypercorn "
            "version; boba_runtime.cli.hypercorn_guard needs updating"
        )
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    async def run(self: Any) -> None:
        try:
            await original(self)
        except Exception:  # contained on purpose: one connection, not the shop
            log.warning("a client connection failed inside the HTTP server; closed it",
                        exc_info=True)

    setattr(run, _MARK, True)
    server_class.run = run

    original_close: Callable[[Any], Awaitable[None]] = server_class._close

    @functools.wraps(original_close)
    async def close(self: Any) -> None:
        with trio.CancelScope(shield=True):  # two quick socket calls; never blocks
            await original_close(self)

    server_class._close = close
