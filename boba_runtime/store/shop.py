"""The shop's day in the store, and this process's live view of it (CONTRACT §12).

`ShopStore` keeps what staff switch during the day in the order database, so it survives
restarts and every instance sharing the database sees the same: sold-out items
(`menu_availability`) and the pause switch (`shop_settings`). Each change writes its SSE
event (`{"type": "menu_changed"}`, `{"type": "shop_changed"}`) in the same transaction.

`ShopState` is one process's cached copy, refreshed whenever the event feed carries one
of those events (at once for changes made here, within the feed's poll interval for
changes made by another instance). Calls read it before each function call, so a call in
progress sees a change at its next function call without a store round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import trio

from boba_proto.menu import Menu
from boba_proto.shop import (
    Availability,
    ItemKind,
    ShopStatus,
    order_waits,
    wait_minutes,
)
from boba_runtime.config.hours import next_opening, open_at, today_hours
from boba_runtime.store.order_store import (
    OrderStore,
    StoreError,
    add_event_row,
    format_precise_time,
    received_drinks,
)

if TYPE_CHECKING:
    from boba_runtime.store.feed import EventFeed, FeedEvent
    from boba_runtime.store.order_store import _Conn, _Db

log = logging.getLogger(__name__)

TAKING_ORDERS = "taking_orders"
SHOP_EVENTS = frozenset({"menu_changed", "shop_changed"})
REFRESH_BACKOFF = 1.0

_ENCODER = msgspec.json.Encoder()


class _EventType(msgspec.Struct):
    type: str = ""


_EVENT_TYPE = msgspec.json.Decoder(_EventType)


def _add_event(conn: _Conn, now: str, data: dict[str, object]) -> None:
    """An SSE event row, its id handed out in commit order (`order_store.add_event_row`)."""
    add_event_row(conn, now, _ENCODER.encode(data).decode())


class ShopStore:
    """Sold-out items and the pause switch, stored next to the orders."""

    def __init__(self, store: OrderStore) -> None:
        self.store = store

    async def availability(self) -> Availability:
        def read(db: _Db) -> Availability:
            rows = db.conn.execute(
                "SELECT kind, name FROM menu_availability WHERE available = 0"
            )
            return Availability.from_pairs([(str(k), str(n)) for k, n in rows])

        return await self.store.run_in_db(read)

    async def set_available(self, kind: ItemKind, name: str, available: bool) -> bool:
        """Mark one canonical item (un)available; True when that changed something (and
        `menu_changed` went out with it)."""
        now = format_precise_time(self.store.clock())

        def write(db: _Db) -> bool:
            def work(conn: _Conn) -> bool:
                # The event-id lock first: staff switches on two instances then read and
                # write one after the other (this table is written by nothing else).
                conn.lock_event_ids()
                row = conn.execute(
                    "SELECT available FROM menu_availability WHERE kind = ? AND name = ?",
                    (kind.value, name),
                ).fetchone()
                was_available = row is None or bool(row[0])
                if was_available == available:
                    return False
                if row is None:
                    conn.execute(
                        "INSERT INTO menu_availability (kind, name, available, updated_at) "
                        "VALUES (?, ?, ?, ?)",
                        (kind.value, name, int(available), now),
                    )
                else:
                    conn.execute(
                        "UPDATE menu_availability SET available = ?, updated_at = ? "
                        "WHERE kind = ? AND name = ?",
                        (int(available), now, kind.value, name),
                    )
                _add_event(conn, now, {"type": "menu_changed"})
                return True

            return db._write(work)

        changed = await self.store.run_in_db(write)
        if changed:
            self.store.changes.fire()  # the feed reads the new event at once
        return changed

    async def taking_orders(self) -> bool:
        def read(db: _Db) -> bool:
            row = db.conn.execute(
                "SELECT value FROM shop_settings WHERE key = ?", (TAKING_ORDERS,)
            ).fetchone()
            return row is None or row[0] == "true"

        return await self.store.run_in_db(read)

    async def set_taking_orders(self, taking: bool) -> bool:
        """The pause switch; True when it changed (and `shop_changed` went out)."""
        now = format_precise_time(self.store.clock())
        value = "true" if taking else "false"

        def write(db: _Db) -> bool:
            def work(conn: _Conn) -> bool:
                conn.lock_event_ids()  # as in `set_available`
                row = conn.execute(
                    "SELECT value FROM shop_settings WHERE key = ?", (TAKING_ORDERS,)
                ).fetchone()
                if (row is None and taking) or (row is not None and row[0] == value):
                    return False
                if row is None:
                    conn.execute(
                        "INSERT INTO shop_settings (key, value, updated_at) VALUES (?, ?, ?)",
                        (TAKING_ORDERS, value, now),
                    )
                else:
                    conn.execute(
                        "UPDATE shop_settings SET value = ?, updated_at = ? WHERE key = ?",
                        (value, now, TAKING_ORDERS),
                    )
                _add_event(conn, now, {"type": "shop_changed", "taking_orders": taking})
                return True

            return db._write(work)

        changed = await self.store.run_in_db(write)
        if changed:
            self.store.changes.fire()
        return changed

    async def received_queue(self) -> list[tuple[str, int]]:
        """`(order_number, drinks)` of the received orders, oldest first."""

        def read(db: _Db) -> list[tuple[str, int]]:
            return received_drinks(db.conn)

        return await self.store.run_in_db(read)


@dataclass(frozen=True, kw_only=True)
class ShopView:
    """`GET /api/shop`: what anyone may know about the shop right now."""

    open_now: bool
    taking_orders: bool
    today: str | None
    wait_minutes: int
    waits: dict[str, int]
    next_opening: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "open_now": self.open_now,
            "taking_orders": self.taking_orders,
            "today": self.today,
            "wait_minutes": self.wait_minutes,
            "waits": self.waits,
            "next_opening": self.next_opening,
        }


class ShopState:
    """This process's view of sold-out items and the pause switch, kept fresh from the
    event feed; plus the menu's hours in the shop's time zone."""

    def __init__(self, shop: ShopStore, menu: Menu, zone: tzinfo | None) -> None:
        self.shop = shop
        self.menu = menu
        self.zone = zone
        self.availability = Availability()
        self.taking_orders = True

    async def refresh(self) -> None:
        """Read both from the store now (after a change here, and on every shop event)."""
        self.availability = await self.shop.availability()
        self.taking_orders = await self.shop.taking_orders()

    def status(self, now: datetime) -> ShopStatus:
        """Whether `/voice` may connect a call: hours first, then the pause switch."""
        if not open_at(self.menu.hours, self.zone, now):
            return ShopStatus.CLOSED
        if not self.taking_orders:
            return ShopStatus.PAUSED
        return ShopStatus.OPEN

    async def view(self, now: datetime) -> ShopView:
        queue = await self.shop.received_queue()
        opening = next_opening(self.menu.hours, self.zone, now)
        return ShopView(
            open_now=open_at(self.menu.hours, self.zone, now),
            taking_orders=self.taking_orders,
            today=today_hours(self.menu.hours, self.zone, now),
            wait_minutes=wait_minutes(self.menu.prep, sum(d for _, d in queue)),
            waits=order_waits(self.menu.prep, queue),
            next_opening=opening.at.isoformat() if opening is not None else None,
        )

    async def run(
        self, feed: EventFeed, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Until cancelled: refresh on every shop event the feed sees (a store error is
        retried after a pause). Started once the first read was tried."""
        changed = trio.Event()

        def on_event(event: FeedEvent) -> None:
            if _is_shop_event(event.data):
                changed.set()

        feed.watch(on_event)
        changed.set()  # the first refresh
        started = False
        while True:
            await changed.wait()
            changed = trio.Event()
            try:
                await self.refresh()
            except StoreError as error:
                log.warning("shop state: could not read the store: %s", error)
                changed.set()  # try again after a pause
                await trio.sleep(REFRESH_BACKOFF)
            if not started:
                task_status.started()
                started = True


def _is_shop_event(data: str) -> bool:
    try:
        return _EVENT_TYPE.decode(data).type in SHOP_EVENTS
    except msgspec.DecodeError:
        return False


def canonical_item(menu: Menu, kind: ItemKind, text: str) -> str | None:
    """The canonical name `text` is among `kind` (case and spacing aside), else None.

    Exact names only, not aliases: staff switch the item the console shows."""
    names: Sequence[str] = {
        ItemKind.FLAVORS: menu.flavors,
        ItemKind.TOPPINGS: menu.toppings,
        ItemKind.ADDONS: menu.addons,
    }[kind]
    wanted = " ".join(text.lower().split())
    return wanted if wanted in names else None


def zone_exists(name: str) -> bool:
    """For `parse_menu`: whether the standard library knows the time zone `name`."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def shop_zone(menu: Menu) -> tzinfo | None:
    """The menu's `[hours]` time zone (checked by `parse_menu` at start), or None."""
    return ZoneInfo(menu.hours.timezone) if menu.hours is not None else None
