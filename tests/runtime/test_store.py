"""The SQLite order store: lifecycle, numbers, events, outbox bookkeeping (CONTRACT §4, §7, §8)."""

from __future__ import annotations

import json
import random
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import trio

from boba_proto.model import Drink, OrderDraft, OrderStatus
from boba_runtime.store.order_store import (
    MIGRATIONS,
    OrderConflict,
    OrderNotFound,
    OrderNumbersExhausted,
    OrderStore,
    StoreConfigError,
    StoreConnection,
    StoreUnavailable,
    run_ready_expiry,
    sqlite_path_from_url,
)

TARO = Drink(
    flavor="taro milk tea",
    toppings=("boba",),
    sweetness="50%",
    ice="regular ice",
    price_cents=625,
)
BLACK = Drink(
    flavor="black milk tea",
    toppings=("vanilla cream",),
    addons=("matcha stencil on top",),
    sweetness="0%",
    ice="no ice",
    price_cents=675,
)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 7, 5, 11, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def draft(phone: str = "+14155551234", *items: Drink) -> OrderDraft:
    drinks = items or (TARO,)
    return OrderDraft(
        phone=phone,
        items=drinks,
        total_cents=sum(d.price_cents for d in drinks),
        call_sid="CA" + "1" * 32,
    )


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


async def event_payloads(store: OrderStore, after: int = 0) -> list[dict[str, str]]:
    return [json.loads(e.data) for e in await store.events_after(after)]


# --- lifecycle ---------------------------------------------------------------------------


async def test_commit_creates_order_outbox_row_and_event_together(store: OrderStore) -> None:
    order = await store.commit_order(draft("+14155551234", TARO, BLACK))

    assert len(order.order_number) == 4 and order.order_number.isdigit()
    assert order.status is OrderStatus.RECEIVED
    assert order.items == (TARO, BLACK)
    assert order.total_cents == 1300
    assert order.created_at == "2026-11-25T07:05:11Z"
    assert order.ready_at is None
    assert (order.sms_received, order.sms_ready) == ("queued", None)
    assert order.call_sid == "CA" + "1" * 32

    [message] = await store.due_sms()
    assert message.order_number == order.order_number
    assert message.kind == "received"
    assert message.to == "+14155551234"
    assert message.body == (
        f"Thanks for your order! Your order number is {order.order_number}. "
        "It should be ready in about 5 minutes. "  # CONTRACT §12: the wait
        "We'll text you when it's ready for pickup."
    )
    assert message.attempts == 0 and message.first_attempt_at is None

    events = await store.events_after(0)
    assert [e.data for e in events] == [
        f'{{"type":"order_created","order_number":"{order.order_number}","status":"received"}}'
    ]
    assert await store.get_order(order.order_number) == order


async def test_ready_then_picked_up(store: OrderStore, clock: FakeClock) -> None:
    order = await store.commit_order(draft())
    number = order.order_number
    clock.advance(minutes=4)

    ready, changed = await store.mark_ready(number)
    assert changed
    assert ready.status is OrderStatus.READY
    assert ready.ready_at == "2026-11-25T07:09:11Z"
    assert ready.sms_ready == "queued"
    bodies = [m.body for m in await store.due_sms() if m.kind == "ready"]
    assert bodies == [f"Your boba order #{number} is now ready for pickup!"]

    again, changed_again = await store.mark_ready(number)
    assert not changed_again
    assert again == ready
    assert len(await store.due_sms()) == 2  # no second "ready" SMS

    done = await store.mark_picked_up(number)
    assert done.status is OrderStatus.PICKED_UP
    assert [p["status"] for p in await event_payloads(store)] == ["received", "ready", "picked_up"]
    assert [p["type"] for p in await event_payloads(store)] == [
        "order_created",
        "order_status_changed",
        "order_status_changed",
    ]


async def test_cancel_only_from_received_and_sends_nothing(store: OrderStore) -> None:
    order = await store.commit_order(draft())
    cancelled = await store.cancel(order.order_number)
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.sms_ready is None
    assert [m.kind for m in await store.due_sms()] == ["received"]

    with pytest.raises(OrderConflict, match="cancelled"):
        await store.mark_ready(order.order_number)
    with pytest.raises(OrderConflict):
        await store.cancel(order.order_number)

    other = await store.commit_order(draft())
    await store.mark_ready(other.order_number)
    with pytest.raises(OrderConflict, match="only a received order can be cancelled"):
        await store.cancel(other.order_number)


async def test_conflicts_and_not_found(store: OrderStore) -> None:
    order = await store.commit_order(draft())
    with pytest.raises(OrderConflict, match="only a ready order can be picked up"):
        await store.mark_picked_up(order.order_number)
    await store.mark_ready(order.order_number)
    await store.mark_picked_up(order.order_number)
    with pytest.raises(OrderConflict, match="picked up"):
        await store.mark_ready(order.order_number)
    with pytest.raises(OrderConflict):
        await store.mark_picked_up(order.order_number)

    unknown = "0000" if order.order_number != "0000" else "0001"
    for action in (store.mark_ready, store.mark_picked_up, store.cancel):
        with pytest.raises(OrderNotFound):
            await action(unknown)
    assert await store.get_order(unknown) is None
    # a refused transition writes nothing
    assert [p["status"] for p in await event_payloads(store)] == ["received", "ready", "picked_up"]


async def test_expire_ready_after_the_expiry(store: OrderStore, clock: FakeClock) -> None:
    early = await store.commit_order(draft())
    late = await store.commit_order(draft())
    waiting = await store.commit_order(draft())
    await store.mark_ready(early.order_number)
    clock.advance(minutes=10)
    await store.mark_ready(late.order_number)
    clock.advance(minutes=21)  # early: ready 31 min, late: 21 min

    expired = await store.expire_ready(older_than=timedelta(minutes=30))
    assert [o.order_number for o in expired] == [early.order_number]
    assert expired[0].status is OrderStatus.PICKED_UP
    assert (await store.get_order(late.order_number)).status is OrderStatus.READY  # type: ignore[union-attr]
    assert (await store.get_order(waiting.order_number)).status is OrderStatus.RECEIVED  # type: ignore[union-attr]
    last = (await event_payloads(store))[-1]
    assert last == {
        "type": "order_status_changed",
        "order_number": early.order_number,
        "status": "picked_up",
    }
    assert await store.expire_ready(older_than=timedelta(minutes=30)) == []


# --- numbers -----------------------------------------------------------------------------


class ScriptedRandom(random.Random):
    """Draws the given values first, then behaves like a seeded Random."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(1)
        self.values = list(values)

    def randrange(self, *args: int, **kwargs: int) -> int:  # type: ignore[override]
        return self.values.pop(0) if self.values else super().randrange(*args, **kwargs)


async def test_number_comes_from_the_injected_randomness_and_skips_active_ones(
    db_url: str, clock: FakeClock
) -> None:
    rng = ScriptedRandom([4782, 4782, 4782, 31])
    async with await OrderStore.open(db_url, clock=clock, rng=rng) as store:
        first = await store.commit_order(draft())
        second = await store.commit_order(draft())
        assert (first.order_number, second.order_number) == ("4782", "0031")


async def test_number_is_free_again_after_pickup_and_lookup_prefers_active(
    db_url: str, clock: FakeClock
) -> None:
    rng = ScriptedRandom([1234, 1234, 1234])
    async with await OrderStore.open(db_url, clock=clock, rng=rng) as store:
        old = await store.commit_order(draft("+14155550001"))
        await store.cancel("1234")
        assert (await store.get_order("1234")) == await store.get_order(old.order_number)
        reused = await store.commit_order(draft("+14155550002"))
        assert reused.order_number == "1234"
        assert (await store.get_order("1234")).phone == "+14155550002"  # type: ignore[union-attr]
        await store.mark_ready("1234")
        await store.mark_picked_up("1234")
        third = await store.commit_order(draft("+14155550003"))
        await store.cancel(third.order_number)
        # none active: the most recent order that had the number
        assert (await store.get_order("1234")).phone == "+14155550003"  # type: ignore[union-attr]


def fill_active_numbers(path: str, numbers: range) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO orders (order_number, status, phone, items, total_cents, created_at) "
            "VALUES (?, 'received', '+14155551234', '[]', 0, '2026-11-25T07:00:00Z')",
            [(f"{n:04d}",) for n in numbers],
        )
    conn.close()


async def test_last_free_number_is_found_and_a_full_shop_is_a_clear_error(
    db_url: str, clock: FakeClock
) -> None:
    async with await OrderStore.open(db_url, clock=clock, rng=random.Random(3)) as store:
        fill_active_numbers(sqlite_path_from_url(db_url), range(1, 10_000))
        last = await store.commit_order(draft())
        assert last.order_number == "0000"
        with pytest.raises(OrderNumbersExhausted, match="10,000"):
            await store.commit_order(draft())
        assert len(await store.due_sms(limit=100)) == 1  # the refused commit left nothing


def test_schema_refuses_two_active_orders_with_one_number(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    trio.run(_open_and_close, url)
    path = sqlite_path_from_url(url)
    fill_active_numbers(path, range(5, 6))
    with pytest.raises(sqlite3.IntegrityError):
        fill_active_numbers(path, range(5, 6))
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE orders SET status = 'picked_up'")
    conn.close()
    fill_active_numbers(path, range(5, 6))  # fine once the first one is no longer active


async def _open_and_close(url: str) -> None:
    store = await OrderStore.open(url)
    await store.aclose()


async def test_numbers_unique_under_concurrent_commits_from_two_connections(
    db_url: str,
) -> None:
    # Two stores = two connections, as two `--workers` processes would have.
    async with (
        await OrderStore.open(db_url) as a,
        await OrderStore.open(db_url) as b,
    ):
        numbers: list[str] = []

        async def commit(store: OrderStore) -> None:
            numbers.append((await store.commit_order(draft())).order_number)

        async with trio.open_nursery() as nursery:
            for i in range(120):
                nursery.start_soon(commit, a if i % 2 else b)
        assert len(numbers) == 120
        assert len(set(numbers)) == 120
        events = await a.events_after(0)
        assert [e.id for e in events] == sorted(e.id for e in events)
        assert len({e.id for e in events}) == 120
        created = {json.loads(e.data)["order_number"] for e in events}
        assert created == set(numbers)


# --- events ------------------------------------------------------------------------------


async def test_event_ids_increase_and_survive_reopen(db_url: str, clock: FakeClock) -> None:
    async with await OrderStore.open(db_url, clock=clock) as store:
        assert await store.last_event_id() == 0
        order = await store.commit_order(draft())
        await store.mark_ready(order.order_number)
        await store.mark_picked_up(order.order_number)
        events = await store.events_after(0)
        ids = [e.id for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert await store.last_event_id() == ids[-1]
        assert [e.id for e in await store.events_after(ids[0])] == ids[1:]
        assert [e.id for e in await store.events_after(0, limit=2)] == ids[:2]
        assert await store.events_after(ids[-1]) == []
    async with await OrderStore.open(db_url, clock=clock) as reopened:
        assert await reopened.events_after(0) == events
        await reopened.commit_order(draft())
        assert await reopened.last_event_id() > ids[-1]


# --- queries -----------------------------------------------------------------------------


async def test_list_orders_filters_newest_first(store: OrderStore) -> None:
    a = await store.commit_order(draft())
    b = await store.commit_order(draft())
    c = await store.commit_order(draft())
    d = await store.commit_order(draft())
    await store.mark_ready(b.order_number)
    await store.cancel(c.order_number)
    await store.mark_ready(d.order_number)
    await store.mark_picked_up(d.order_number)

    def numbers(orders: list[object]) -> list[str]:
        return [o.order_number for o in orders]  # type: ignore[attr-defined]

    assert numbers(await store.list_orders()) == [b.order_number, a.order_number]
    assert numbers(await store.list_orders(status="ready")) == [b.order_number]
    everything = [d.order_number, c.order_number, b.order_number, a.order_number]
    assert numbers(await store.list_orders(status="all")) == everything
    assert numbers(await store.list_orders(status="all", limit=2)) == everything[:2]
    with pytest.raises(ValueError, match="status"):
        await store.list_orders(status="bogus")


async def test_orders_for_phones(store: OrderStore) -> None:
    mine = await store.commit_order(draft("+14155550001"))
    saved = await store.commit_order(draft("+14155550002"))
    await store.commit_order(draft("+14155550003"))

    found = await store.orders_for_phones(["+14155550001", "+14155550002"])
    assert [o.order_number for o in found] == [saved.order_number, mine.order_number]
    only = await store.orders_for_phones(["+14155550001"], order_number=mine.order_number)
    assert [o.order_number for o in only] == [mine.order_number]
    assert await store.orders_for_phones(["+14155550001"], order_number=saved.order_number) == []
    assert await store.orders_for_phones([]) == []
    assert len(await store.orders_for_phones(["+14155550001", "+14155550002"], limit=1)) == 1


# --- SMS outbox bookkeeping --------------------------------------------------------------


async def test_sms_claim_once_and_sent_is_never_requeued(
    store: OrderStore, clock: FakeClock
) -> None:
    order = await store.commit_order(draft())
    [message] = await store.due_sms()

    assert await store.mark_sms_sending(message.id)
    assert not await store.mark_sms_sending(message.id)  # a second worker loses the claim
    assert await store.due_sms() == []
    assert (await store.get_order(order.order_number)).sms_received == "queued"  # type: ignore[union-attr]

    assert await store.mark_sms_result(message.id, "sent", provider_sid="SM123")
    assert (await store.get_order(order.order_number)).sms_received == "sent"  # type: ignore[union-attr]
    row = await store.sms_row(message.id)
    assert row is not None and row["provider_sid"] == "SM123" and row["attempts"] == 1

    assert not await store.mark_sms_result(message.id, "queued", retry_at=clock())
    assert not await store.mark_sms_result(message.id, "failed:21211")
    assert not await store.mark_sms_sending(message.id)
    assert await store.due_sms() == []
    assert (await store.sms_row(message.id))["state"] == "sent"  # type: ignore[index]


async def test_sms_retry_becomes_due_at_retry_at(store: OrderStore, clock: FakeClock) -> None:
    await store.commit_order(draft())
    [message] = await store.due_sms()
    await store.mark_sms_sending(message.id)
    await store.mark_sms_result(message.id, "queued", retry_at=clock() + timedelta(seconds=2))
    assert await store.due_sms() == []
    clock.advance(seconds=2)
    [again] = await store.due_sms()
    assert again.attempts == 1
    assert again.first_attempt_at == "2026-11-25T07:05:11.000000Z"
    with pytest.raises(ValueError):
        await store.mark_sms_result(message.id, "queued")
    with pytest.raises(ValueError):
        await store.mark_sms_result(message.id, "delivered")


async def test_stale_sending_becomes_unknown(store: OrderStore, clock: FakeClock) -> None:
    order = await store.commit_order(draft())
    [message] = await store.due_sms()
    await store.mark_sms_sending(message.id)
    assert await store.mark_stale_sending_unknown(older_than=timedelta(seconds=60)) == []
    clock.advance(seconds=61)
    assert (
        await store.mark_stale_sending_unknown(
            older_than=timedelta(seconds=60), exclude=[message.id]
        )
        == []
    )
    assert await store.mark_stale_sending_unknown(older_than=timedelta(seconds=60)) == [message.id]
    assert (await store.get_order(order.order_number)).sms_received == "unknown"  # type: ignore[union-attr]
    assert await store.due_sms() == []


async def test_claim_due_sms_takes_each_message_once_and_names_the_claimer(
    db_url: str, clock: FakeClock
) -> None:
    async with (
        await OrderStore.open(db_url, clock=clock) as a,
        await OrderStore.open(db_url, clock=clock) as b,
    ):
        for _ in range(5):
            await a.commit_order(draft())
        first = await a.claim_due_sms(limit=3)
        rest = await b.claim_due_sms(limit=10)
        assert len(first) == 3 and len(rest) == 2
        assert {m.id for m in first}.isdisjoint({m.id for m in rest})
        assert await a.claim_due_sms() == [] and await a.due_sms() == []
        # The message as it was before this attempt (what the worker's retry rule reads).
        assert first[0].attempts == 0 and first[0].first_attempt_at is None
        row = await a.sms_row(rest[0].id)
        assert row is not None
        assert row["state"] == "sending" and row["attempts"] == 1
        assert row["claimed_by"] == b.instance_id != a.instance_id
        assert row["claimed_at"] == "2026-11-25T07:05:11.000000Z"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


async def test_a_claim_of_a_dead_process_on_this_host_becomes_unknown_at_once(
    store: OrderStore, clock: FakeClock
) -> None:
    """CONTRACT §8: it may have been sent, so `unknown`; never sent again. No waiting for
    the claim to age when its process on this host is known to be gone."""
    order = await store.commit_order(draft())
    [message] = await store.claim_due_sms()
    dead = f"{socket.gethostname()}:{_dead_pid()}:0badc0de"

    def claimed_by_the_dead(conn: StoreConnection) -> None:
        conn.execute("UPDATE sms_outbox SET claimed_by = ? WHERE id = ?", (dead, message.id))

    await store.write(claimed_by_the_dead)
    assert await store.mark_stale_sending_unknown(older_than=timedelta(hours=1)) == [message.id]
    assert (await store.get_order(order.order_number)).sms_received == "unknown"  # type: ignore[union-attr]
    assert await store.claim_due_sms() == []
    # A live claimer (this process, another store object) is left alone until it ages.
    second = await store.commit_order(draft())
    [claimed] = await store.claim_due_sms()
    assert await store.mark_stale_sending_unknown(older_than=timedelta(hours=1)) == []
    clock.advance(hours=1, seconds=1)
    assert await store.mark_stale_sending_unknown(older_than=timedelta(hours=1)) == [claimed.id]
    assert (await store.get_order(second.order_number)).sms_received == "unknown"  # type: ignore[union-attr]


async def test_call_outcome_is_kept_until_it_expires(store: OrderStore, clock: FakeClock) -> None:
    sid = "CA" + "5" * 32
    assert await store.call_outcome(sid) is None
    await store.save_call_outcome(sid, "failed", expires_at=clock() + timedelta(minutes=10))
    assert await store.call_outcome(sid) == "failed"
    await store.save_call_outcome(sid, "transfer", expires_at=clock() + timedelta(minutes=10))
    assert await store.call_outcome(sid) == "transfer"  # the latest word
    clock.advance(minutes=10)
    assert await store.call_outcome(sid) is None


async def test_conditional_transitions_racing_from_two_stores(db_url: str) -> None:
    """Staff on two instances press different buttons for the same orders at once: each
    order ends in one state, with one event and one SMS per change actually made."""
    async with (
        await OrderStore.open(db_url) as a,
        await OrderStore.open(db_url) as b,
    ):
        orders = [await a.commit_order(draft()) for _ in range(12)]
        outcomes: dict[str, list[str]] = {o.order_number: [] for o in orders}

        async def press(store: OrderStore, number: str, action: str) -> None:
            try:
                if action == "ready":
                    _, changed = await store.mark_ready(number)
                    outcomes[number].append("ready" if changed else "ready-again")
                else:
                    await store.cancel(number)
                    outcomes[number].append("cancelled")
            except OrderConflict:
                outcomes[number].append("conflict")

        async with trio.open_nursery() as nursery:
            for i, order in enumerate(orders):
                number = order.order_number
                if i % 2:  # both ready: one changes it, the other is told it is done
                    nursery.start_soon(press, a, number, "ready")
                    nursery.start_soon(press, b, number, "ready")
                else:  # ready against cancel: exactly one wins
                    nursery.start_soon(press, a, number, "ready")
                    nursery.start_soon(press, b, number, "cancel")
        events = [json.loads(e.data) for e in await a.events_after(0, limit=1000)]
        ready_sms = [m for m in await a.due_sms(limit=100) if m.kind == "ready"]
        for i, order in enumerate(orders):
            seen = sorted(outcomes[order.order_number])
            final = await b.get_order(order.order_number)
            assert final is not None
            changes = [e for e in events if e.get("order_number") == order.order_number]
            if i % 2:
                assert seen == ["ready", "ready-again"]
                assert final.status is OrderStatus.READY
            else:
                assert seen in (["conflict", "ready"], ["cancelled", "conflict"])
                won = OrderStatus.READY if "ready" in seen else OrderStatus.CANCELLED
                assert final.status is won
            assert len(changes) == 2  # created + the one change made
        assert len(ready_sms) == 6 + sum("ready" in outcomes[o.order_number] for o in orders[::2])


# --- atomicity, configuration, failures --------------------------------------------------


async def test_failed_commit_leaves_neither_order_nor_outbox_row(
    store: OrderStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from boba_runtime.store import order_store as store_module

    database_error = store._db.conn.unavailable_errors[0]

    def broken_event(*args: object) -> None:
        raise database_error("disk I/O error (simulated)")

    monkeypatch.setattr(store_module._Db, "_add_event", staticmethod(broken_event))
    with pytest.raises(StoreUnavailable, match="disk I/O error"):
        await store.commit_order(draft())
    monkeypatch.undo()
    assert await store.list_orders(status="all") == []
    assert await store.due_sms() == []
    assert await store.events_after(0) == []
    assert (await store.commit_order(draft())).status is OrderStatus.RECEIVED


async def test_locked_database_is_unavailable_not_a_hang(db_url: str) -> None:
    async with await OrderStore.open(db_url, busy_timeout=0.2) as store:
        await store.ping()
        blocker = sqlite3.connect(sqlite_path_from_url(db_url), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with trio.fail_after(3), pytest.raises(StoreUnavailable, match="does not answer"):
                await store.commit_order(draft())
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await store.commit_order(draft())
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.ping()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/boba", "sqlite:///"),
        ("sqlite:///", "sqlite:///"),
        ("./boba.sqlite3", "sqlite:///"),
    ],
)
async def test_unsupported_database_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message) as info:
        await OrderStore.open(url)
    assert "secret" not in str(info.value)


async def test_unreachable_postgres_is_unavailable_without_the_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StoreUnavailable, match="cannot open the order database") as info:
        await OrderStore.open("postgresql://boba:secret@127.0.0.1:1/boba", busy_timeout=1)
    assert "secret" not in str(info.value)
    assert "boba:***@127.0.0.1:1" in str(info.value)


def test_url_forms() -> None:
    assert sqlite_path_from_url("sqlite:///./boba.sqlite3") == "./boba.sqlite3"
    assert sqlite_path_from_url("sqlite:///data/boba.sqlite3") == "data/boba.sqlite3"
    assert sqlite_path_from_url("sqlite:////var/lib/boba.sqlite3") == "/var/lib/boba.sqlite3"


async def test_migrations_run_once_and_newer_schema_is_refused(db_url: str, tmp_path: Path) -> None:
    nested = f"sqlite:///{tmp_path}/new/dir/orders.sqlite3"
    async with await OrderStore.open(nested) as store:
        assert await store.schema_version() == len(MIGRATIONS)
    async with await OrderStore.open(nested) as store:
        assert await store.schema_version() == len(MIGRATIONS)
    path = sqlite_path_from_url(nested)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, '2030-01-01T00:00:00Z')")
    conn.close()
    with pytest.raises(StoreConfigError, match="newer than this build"):
        await OrderStore.open(nested)


async def test_connection_settings_are_durable(store: OrderStore) -> None:
    db = store._db
    assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_stored_items_round_trip_exactly() -> None:
    encoded = msgspec.json.encode((BLACK,))
    assert msgspec.json.decode(encoded, type=tuple[Drink, ...]) == (BLACK,)


async def test_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="cannot open the order database"):
        await OrderStore.open(f"sqlite:///{tmp_path}/a-file/orders.sqlite3")


async def test_ready_expiry_task(store: OrderStore, clock: FakeClock) -> None:
    order = await store.commit_order(draft())
    await store.mark_ready(order.order_number)
    clock.advance(minutes=31)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_ready_expiry(
                store, after=timedelta(minutes=30), interval=0.01, task_status=task_status
            )
        )
        with trio.fail_after(2):
            while (await store.get_order(order.order_number)).status is not OrderStatus.PICKED_UP:  # type: ignore[union-attr]
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_counts_for_metrics(store: OrderStore) -> None:
    a = await store.commit_order(draft())
    b = await store.commit_order(draft())
    await store.commit_order(draft())
    await store.mark_ready(a.order_number)
    await store.cancel(b.order_number)
    [first, *_] = await store.due_sms()
    await store.mark_sms_sending(first.id)
    await store.mark_sms_result(first.id, "failed:21211")
    assert await store.count_orders_by_status() == {"received": 1, "ready": 1, "cancelled": 1}
    assert await store.count_sms_by_result() == {
        ("received", "failed:21211"): 1,
        ("received", "queued"): 2,
        ("ready", "queued"): 1,
    }
