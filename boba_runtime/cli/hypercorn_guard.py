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
Applied once per process; calling it again is harmless.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.trio import tcp_server

log = logging.getLogger("boba.serve")

_MARK = "_boba_guarded"


def guard_connections() -> None:
    """Make Hypercorn's trio `TCPServer.run` contain its own failures (idempotent)."""
    server_class: Any = tcp_server.TCPServer
    original: Callable[[Any], Awaitable[None]] = server_class.run
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
