"""CONTRACT §12 in the store: sold-out items and the pause switch are stored (they survive
a reopen), each change is one SSE event in the same transaction, and a commit records the
name on the cup and the wait, which the "received" SMS tells. `test_shop_store_pg.py`
runs these again on PostgreSQL."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path

import pytest
import trio

from boba_proto.menu import parse_menu
from boba_proto.model import OrderDraft
from boba_proto.shop import Availability, ItemKind, ShopStatus
from boba_runtime.store.feed import EventFeed
from boba_runtime.store.order_store import OrderStore
from boba_runtime.store.shop import ShopState, ShopStore, canonical_item
from tests.runtime.test_store import BLACK, TARO, FakeClock

MENU = parse_menu(files("boba_proto").joinpath("menu.toml").read_text("utf-8"), source="m")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/orders.sqlite3"


@pytest.fixture
async def store(db_url: str, clock: FakeClock) -> AsyncIterator[OrderStore]:
    async with await OrderStore.open(db_url, clock=clock, rng=random.Random(7)) as opened:
        yield opened


async def test_sold_out_is_stored_announced_and_survives_reopen(
    store: OrderStore, db_url: str
) -> None:
    shop = ShopStore(store)
    assert await shop.availability() == Availability()
    assert await shop.set_available(ItemKind.FLAVORS, "taro milk tea", False) is True
    assert await shop.set_available(ItemKind.FLAVORS, "taro milk tea", False) is False  # no-op
    assert await shop.set_available(ItemKind.TOPPINGS, "boba", False) is True
    events = [json.loads(e.data) for e in await store.events_after(0)]
    assert events == [{"type": "menu_changed"}, {"type": "menu_changed"}]
    async with await OrderStore.open(db_url) as reopened:
        again = await ShopStore(reopened).availability()
    assert again == Availability(flavors=frozenset({"taro milk tea"}),
                                 toppings=frozenset({"boba"}))
    assert await shop.set_available(ItemKind.FLAVORS, "taro milk tea", True) is True
    assert await shop.availability() == Availability(toppings=frozenset({"boba"}))


async def test_pause_switch_is_stored_and_announced(store: OrderStore, db_url: str) -> None:
    shop = ShopStore(store)
    assert await shop.taking_orders() is True
    assert await shop.set_taking_orders(True) is False  # already taking orders
    assert await shop.set_taking_orders(False) is True
    async with await OrderStore.open(db_url) as reopened:
        assert await ShopStore(reopened).taking_orders() is False
    assert await shop.set_taking_orders(True) is True
    events = [json.loads(e.data) for e in await store.events_after(0)]
    assert events == [{"type": "shop_changed", "taking_orders": False},
                      {"type": "shop_changed", "taking_orders": True}]


async def test_commit_records_name_and_wait_and_the_sms_tells_it(store: OrderStore) -> None:
    def order_of(n: int, name: str | None = None) -> OrderDraft:
        items = (TARO, BLACK, TARO, BLACK)[:n]
        return OrderDraft(phone="+14155551234", items=items,
                          total_cents=sum(d.price_cents for d in items), name=name)

    first = await store.commit_order(order_of(2, "Ana"))
    assert (first.name, first.ready_in_minutes) == ("Ana", 5)  # nothing ahead: the minimum
    second = await store.commit_order(order_of(3))
    assert (second.name, second.ready_in_minutes) == (None, 6)  # 2 drinks ahead x 3 min
    third = await store.commit_order(order_of(1))
    assert third.ready_in_minutes == 15  # 5 drinks ahead
    bodies = {m.order_number: m.body for m in await store.due_sms()}
    assert bodies[third.order_number] == (
        f"Thanks for your order! Your order number is {third.order_number}. It should be "
        "ready in about 15 minutes. We'll text you when it's ready for pickup.")
    assert (await store.get_order(first.order_number)) == first
    # Orders done leave the queue: the waits shrink.
    shop = ShopStore(store)
    assert await shop.received_queue() == [(first.order_number, 2), (second.order_number, 3),
                                           (third.order_number, 1)]
    await store.mark_ready(first.order_number)
    assert await shop.received_queue() == [(second.order_number, 3), (third.order_number, 1)]


async def test_shop_state_follows_the_event_feed(store: OrderStore) -> None:
    """A change written by another instance (here: straight to the store) reaches this
    process's ShopState through the feed, as calls in progress rely on."""
    shop = ShopStore(store)
    feed = EventFeed(store, poll_interval=0.05)
    state = ShopState(shop, MENU, None)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        await nursery.start(state.run, feed)
        assert state.availability == Availability() and state.taking_orders
        await shop.set_available(ItemKind.ADDONS, "matcha stencil on top", False)
        await shop.set_taking_orders(False)
        with trio.fail_after(5):
            while state.taking_orders or not state.availability.addons:
                await trio.sleep(0.02)
        assert state.availability.addons == frozenset({"matcha stencil on top"})
        assert state.status(store.clock()) is ShopStatus.PAUSED
        view = await state.view(store.clock())
        assert view.to_json() == {"open_now": True, "taking_orders": False, "today": None,
                                  "wait_minutes": 5, "waits": {}, "next_opening": None}
        nursery.cancel_scope.cancel()


def test_canonical_item_takes_exact_names_only() -> None:
    assert canonical_item(MENU, ItemKind.FLAVORS, "Taro  Milk Tea") == "taro milk tea"
    assert canonical_item(MENU, ItemKind.FLAVORS, "taro") is None  # an alias, not the item
    assert canonical_item(MENU, ItemKind.TOPPINGS, "taro milk tea") is None
