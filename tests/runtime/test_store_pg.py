"""The store's backend-independent tests, again on PostgreSQL.

They use the server at `BOBA_TEST_POSTGRES_URL` (default
postgresql://postgres@127.0.0.1:5432/test, the server every development and CI machine
runs), each test in its own freshly created database, dropped afterwards. An unreachable
server skips them locally and fails them when `CI` is set: in CI they must run.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import trio

from boba_runtime.store.order_store import PG_MIGRATIONS, OrderStore, StoreUnavailable
from tests.conftest import in_ci

# The generic tests and fixtures, collected again here with this module's `db_url`.
from tests.runtime.test_store import (  # noqa: F401
    clock,
    store,
    test_cancel_only_from_received_and_sends_nothing,
    test_commit_creates_order_outbox_row_and_event_together,
    test_conflicts_and_not_found,
    test_counts_for_metrics,
    test_event_ids_increase_and_survive_reopen,
    test_expire_ready_after_the_expiry,
    test_failed_commit_leaves_neither_order_nor_outbox_row,
    test_list_orders_filters_newest_first,
    test_number_comes_from_the_injected_randomness_and_skips_active_ones,
    test_number_is_free_again_after_pickup_and_lookup_prefers_active,
    test_numbers_unique_under_concurrent_commits_from_two_connections,
    test_orders_for_phones,
    test_ready_expiry_task,
    test_sms_claim_once_and_sent_is_never_requeued,
    test_sms_retry_becomes_due_at_retry_at,
    test_stale_sending_becomes_unknown,
)

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def pg_server() -> str:
    """A base URL (no database name) of a PostgreSQL server that takes CREATE DATABASE."""
    url = os.environ.get("BOBA_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    try:
        with psycopg.connect(url, connect_timeout=5) as probe:
            probe.execute("SELECT 1")
    except psycopg.Error as error:
        message = f"PostgreSQL at {url} is unreachable: {error}".strip()
        if in_ci():
            pytest.fail(f"{message} (CI must run the PostgreSQL tests)", pytrace=False)
        pytest.skip(message)
    return url.rsplit("/", 1)[0]


@pytest.fixture
def db_url(pg_server: str) -> Iterator[str]:
    name = "boba_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"{pg_server}/{name}"
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(f"{pg_server}/postgres", autocommit=True) as admin,
    ):
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def test_migrations_on_postgres(db_url: str) -> None:
    async with await OrderStore.open(db_url) as first:
        assert await first.schema_version() == len(PG_MIGRATIONS)
    async with await OrderStore.open(db_url) as again:
        assert await again.schema_version() == len(PG_MIGRATIONS)


def _kill_backends(db_url: str) -> int:
    """pg_terminate_backend of every connection to the test's database but this one."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


async def test_reconnects_after_the_server_drops_every_connection(db_url: str) -> None:
    async with await OrderStore.open(db_url) as opened:
        await opened.ping()
        with trio.fail_after(10):
            while not opened.listening:
                await trio.sleep(0.01)
        assert await trio.to_thread.run_sync(_kill_backends, db_url) >= 2  # pool + listener
        with contextlib.suppress(StoreUnavailable):
            await opened.ping()  # a dead connection is replaced, or this one call fails ...
        await opened.ping()  # ... and the next one works, without reopening the store
        assert await opened.last_event_id() == 0
        with trio.fail_after(10):  # the listener is back too
            while not opened.listening:
                await trio.sleep(0.05)


async def test_two_instances_hand_out_commit_ordered_event_ids(db_url: str) -> None:
    async with (
        await OrderStore.open(db_url) as a,
        await OrderStore.open(db_url) as b,
        trio.open_nursery() as nursery,
    ):
        seen: list[int] = []

        async def tail() -> None:
            last = 0
            while len(seen) < 60:
                for event in await a.events_after(last):
                    seen.append(event.id)
                    last = event.id
                await trio.sleep(0)

        nursery.start_soon(tail)
        for i in range(60):
            await (a if i % 2 else b).commit_order(_draft())
    assert seen == list(range(1, 61))  # no gaps, none out of order, as a tailing reader saw


def _draft() -> object:
    from boba_proto.model import Drink, OrderDraft

    return OrderDraft(
        phone="+14155551234",
        items=(Drink(flavor="taro milk tea", sweetness="50%", ice="regular ice", price_cents=550),),
        total_cents=550,
    )


async def test_two_instances_send_each_sms_once(db_url: str) -> None:
    from boba_runtime.store.sms import Sent, run_sms_worker

    sent: list[str] = []

    class CountingSender:
        name = "counting"

        async def send(self, to: str, body: str) -> Sent:
            sent.append(body)
            await trio.sleep(0.01)
            return Sent(provider_sid=None)

    async with (
        await OrderStore.open(db_url) as a,
        await OrderStore.open(db_url) as b,
        trio.open_nursery() as nursery,
    ):
        for instance in (a, b):
            await nursery.start(
                lambda task_status, s=instance: run_sms_worker(
                    s, CountingSender(), poll_interval=0.01, task_status=task_status
                )
            )
        orders = [await (a if i % 2 else b).commit_order(_draft()) for i in range(20)]
        with trio.fail_after(10):
            while len(await a.due_sms()) or len(sent) < 20:
                await trio.sleep(0.02)
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert sorted(sent) == sorted(set(sent))
    assert len(sent) == len(orders)
