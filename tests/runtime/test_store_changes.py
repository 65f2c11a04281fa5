"""One "store changed" signal: every commit that adds event or outbox rows fires the
store's `changes`, and the event feed and the SMS worker both wake on it (their polling
is only the fallback for other processes, so it is set to a minute here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from boba_proto.model import Drink, OrderDraft, OrderStatus
from boba_runtime.store.feed import EventFeed
from boba_runtime.store.order_store import ACTIVE_SQL, OrderConflict, OrderStore
from boba_runtime.store.sms import LogSender, SmsWorker

DRAFT = OrderDraft(
    phone="+14155551234",
    items=(Drink(flavor="taro milk tea", sweetness="50%", ice="regular ice", price_cents=550),),
    total_cents=550,
)
NEVER = 60.0  # a poll interval no test waits for


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 7, 5, 11, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[OrderStore]:
    async with await OrderStore.open(
        f"sqlite:///{tmp_path / 'orders.db'}", clock=FakeClock()
    ) as opened:
        yield opened


def test_the_sql_status_list_comes_from_the_core() -> None:
    assert ACTIVE_SQL == "('received', 'ready')"


async def test_every_commit_that_adds_rows_fires_once_and_refusals_do_not(
    store: OrderStore,
) -> None:
    async def fires(action: Callable[[], Awaitable[object]]) -> bool:
        taken = store.changes.next_change()
        await action()
        return taken.is_set()

    first = await store.commit_order(DRAFT)
    second = await store.commit_order(DRAFT)
    number, other = first.order_number, second.order_number
    assert await fires(lambda: store.commit_order(DRAFT))
    assert await fires(lambda: store.mark_ready(number))
    assert not await fires(lambda: store.mark_ready(number))  # idempotent: nothing written
    assert await fires(lambda: store.mark_picked_up(number))
    assert await fires(lambda: store.cancel(other))
    taken = store.changes.next_change()
    with pytest.raises(OrderConflict):
        await store.cancel(other)
    assert not taken.is_set()
    assert not await fires(lambda: store.expire_ready(older_than=timedelta(0)))  # none ready
    third = await store.commit_order(DRAFT)
    await store.mark_ready(third.order_number)
    assert await fires(lambda: store.expire_ready(older_than=timedelta(0)))
    expired = await store.get_order(third.order_number)
    assert expired is not None and expired.status is OrderStatus.PICKED_UP


async def test_the_event_feed_hears_every_kind_of_commit_without_being_told(
    store: OrderStore,
) -> None:
    feed = EventFeed(store, poll_interval=NEVER, changes=store.changes)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        subscription = feed.subscribe(None)
        order = await store.commit_order(DRAFT)
        await store.mark_ready(order.order_number)
        await store.mark_picked_up(order.order_number)
        seen = []
        with trio.fail_after(5):
            while len(seen) < 3:
                event = await subscription.next_event(NEVER)
                assert event is not None
                seen.append(event.data)
        assert [s.split('"status":')[1] for s in seen] == [
            '"received"}', '"ready"}', '"picked_up"}',
        ]
        subscription.close()
        nursery.cancel_scope.cancel()


async def test_the_sms_worker_sends_at_once_on_the_same_signal(store: OrderStore) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(SmsWorker(store, LogSender(), poll_interval=NEVER).run)
        order = await store.commit_order(DRAFT)
        await store.mark_ready(order.order_number)
        with trio.fail_after(5):
            while True:
                current = await store.get_order(order.order_number)
                assert current is not None
                if (current.sms_received, current.sms_ready) == ("sent", "sent"):
                    break
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
