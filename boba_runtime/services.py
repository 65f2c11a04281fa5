"""Everything a request or a call needs, built once from Settings and handed down.

No module-level state anywhere: the composition root (`boba_web.app`) gets this value
and builds the app and the calls' shared `CallDeps` from it. To add a service, add a
field and build it in `open_services`.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from boba_proto.errors import MenuError
from boba_proto.menu import Menu, function_specs, parse_menu
from boba_runtime.call.records import CallRecordWriter
from boba_runtime.call.registry import CallRegistry
from boba_runtime.config.auth import CredentialLimiter
from boba_runtime.config.secrets import Secrets, load_secrets
from boba_runtime.config.settings import Settings, SettingsError
from boba_runtime.metrics import Metrics
from boba_runtime.store.feed import (
    DEFAULT_PING_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    NOTIFIED_POLL_INTERVAL,
    EventFeed,
)
from boba_runtime.store.order_store import OrderStore, StoreError, utc_now
from boba_runtime.store.shop import ShopState, ShopStore, shop_zone, zone_exists


@dataclass(frozen=True, kw_only=True)
class Services:
    settings: Settings
    menu: Menu
    store: OrderStore
    feed: EventFeed  # the order-event feed behind SSE (not a call's `CallEvent`s)
    staff_password: str
    secret_key: bytes
    started_at: datetime
    password_file: Path | None = None
    clock: Callable[[], datetime] = utc_now
    sse_ping_interval: float = DEFAULT_PING_INTERVAL
    metrics: Metrics
    calls: CallRegistry
    credential_limiter: CredentialLimiter = field(default_factory=CredentialLimiter)
    """Wrong staff passwords of this process, by every means (CONTRACT §3)."""
    call_records: CallRecordWriter | None = None  # None: calls are not kept
    shop: ShopState  # sold-out items and the pause switch (CONTRACT §12)

    def __repr__(self) -> str:
        return f"Services(settings={self.settings!r}, started_at={self.started_at!r}, ***)"


def load_menu(settings: Settings) -> Menu:
    """`BOBA_MENU` or the built-in menu; any problem is a SettingsError naming BOBA_MENU."""
    try:
        if settings.menu is not None:
            source = settings.menu
            text = Path(source).read_text(encoding="utf-8")
        else:
            resource = importlib.resources.files("boba_proto").joinpath("menu.toml")
            source = "built-in menu.toml"
            text = resource.read_text(encoding="utf-8")
        return parse_menu(text, source=source, zone_exists=zone_exists)
    except (OSError, UnicodeDecodeError, MenuError) as error:
        raise SettingsError("BOBA_MENU", str(error).replace("\n", " ")) from None


def new_metrics(menu: Menu) -> Metrics:
    """This process's `Metrics`, its function label bounded to the menu's functions."""
    return Metrics(function_names=[spec.name for spec in function_specs(menu, transfer=True)])


async def start_call_records(nursery: trio.Nursery, store: OrderStore) -> CallRecordWriter:
    """This process's call-record writer (CONTRACT §13), running in `nursery`."""
    writer = CallRecordWriter(store, clock=store.clock)
    await nursery.start(writer.run)
    return writer


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    secrets: Secrets | None = None,
    menu: Menu | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    sse_ping_interval: float = DEFAULT_PING_INTERVAL,
    client_buffer: int | None = None,
    store: OrderStore | None = None,
) -> AsyncIterator[Services]:
    """Open the store, start the event feed, yield Services; close all on exit.

    `store` lets a test hand in an already open store (it is then not closed here).
    """
    if menu is None:
        menu = load_menu(settings)
    if secrets is None:
        secrets = await trio.to_thread.run_sync(load_secrets, settings)
    own_store = store is None
    if store is None:
        try:
            store = await OrderStore.open(settings.database)
        except StoreError as error:  # a URL this build cannot use, a path it cannot open
            raise SettingsError("BOBA_DATABASE", str(error)) from None
    if store.dialect == "postgresql" and poll_interval == DEFAULT_POLL_INTERVAL:
        poll_interval = NOTIFIED_POLL_INTERVAL  # NOTIFY wakes the feed; the poll is a net
    try:
        async with trio.open_nursery() as nursery:
            feed_options: dict[str, Any] = {
                "poll_interval": poll_interval, "changes": store.changes,
            }
            if client_buffer is not None:
                feed_options["client_buffer"] = client_buffer
            feed = EventFeed(store, **feed_options)
            await nursery.start(feed.run)
            call_records = await start_call_records(nursery, store)
            shop = ShopState(ShopStore(store), menu, shop_zone(menu))
            await nursery.start(shop.run, feed)
            yield Services(
                settings=settings,
                menu=menu,
                store=store,
                feed=feed,
                staff_password=secrets.staff_password,
                secret_key=secrets.secret_key,
                started_at=utc_now(),
                password_file=secrets.password_file,
                sse_ping_interval=sse_ping_interval,
                metrics=new_metrics(menu),
                calls=CallRegistry(max_calls=settings.max_calls, secret_key=secrets.secret_key),
                call_records=call_records,
                shop=shop,
            )
            nursery.cancel_scope.cancel()
    finally:
        if own_store:
            with trio.CancelScope(shield=True):
                await store.aclose()
