"""Shared helpers for the shop-floor tests: a real store and Services in a temp dir, order
drafts, a Hypercorn server on 127.0.0.1, and a TCP proxy that can cut connections."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from boba_proto.model import Drink, OrderDraft
from boba_runtime.config.secrets import Secrets
from boba_runtime.config.settings import load_settings
from boba_runtime.services import Services, open_services
from boba_runtime.store.order_store import OrderStore
from boba_web.app import create_app

STAFF_PASSWORD = "correct horse battery staple"
SECRET_KEY = b"k" * 32


def make_draft(*, toppings: tuple[str, ...] = ("boba",), phone: str = "+14155550100") -> OrderDraft:
    price = 550 + 75 * len(toppings)
    drink = Drink(
        flavor="taro milk tea",
        toppings=toppings,
        sweetness="50%",
        ice="regular ice",
        price_cents=price,
    )
    return OrderDraft(phone=phone, items=(drink,), total_cents=price)


@asynccontextmanager
async def shop_services(tmp_path: Path, **options: Any) -> AsyncIterator[Services]:
    """Services over a fresh SQLite store, with a known staff password and key."""
    settings = load_settings(
        {
            "BOBA_DATABASE": f"sqlite:///{tmp_path / 'boba.sqlite3'}",
            "BOBA_DATA_DIR": str(tmp_path / "data"),
        },
        {},
        dotenv_path=None,
    )
    secrets = Secrets(
        staff_password=STAFF_PASSWORD,
        secret_key=SECRET_KEY,
        password_file=None,
        password_created=False,
    )
    options.setdefault("poll_interval", 0.05)
    # seeded order numbers: the screenshots in docs/ stay the same from run to run
    store = await OrderStore.open(settings.database, rng=random.Random(4782))
    try:
        async with open_services(settings, secrets=secrets, store=store, **options) as services:
            yield services
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


@asynccontextmanager
async def running_server(services: Services) -> AsyncIterator[str]:
    """The whole app under Hypercorn (trio worker) on a free loopback port; its base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    app = create_app(services)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda task_status: serve(app, config, task_status=task_status)  # type: ignore[arg-type]
        )
        try:
            yield binds[0]
        finally:
            nursery.cancel_scope.cancel()


class CuttableProxy:
    """A TCP relay in front of the server: `cut()` drops every connection and refuses new
    ones until `restore()`, like Wi-Fi failing under a TV. Records each request head."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.request_heads: list[bytes] = []
        self._open = True
        self._connections: set[trio.CancelScope] = set()

    def cut(self) -> None:
        self._open = False
        for scope in list(self._connections):
            scope.cancel()

    def restore(self) -> None:
        self._open = True

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream, log: bool) -> None:
        first = True
        while True:
            data = await source.receive_some(65536)
            if not data:
                await sink.send_eof()
                return
            if log and first:
                self.request_heads.append(data.split(b"\r\n\r\n", 1)[0])
            first = data.endswith(b"\r\n\r\n") if log else False
            await sink.send_all(data)

    async def _handle(self, client: trio.SocketStream) -> None:
        if not self._open:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self._connections.add(scope)
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                async with client, upstream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, upstream, True)
                    nursery.start_soon(self._pipe, upstream, client, False)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self._connections.discard(scope)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)
