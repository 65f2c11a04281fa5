"""The store's backend-independent tests, again on PostgreSQL (a throwaway local cluster).

Skipped when the PostgreSQL server binaries (`initdb`, `pg_ctl`) or psycopg are missing;
set `BOBA_TEST_POSTGRES_URL=postgresql://user@host/db` to use an existing server instead
(each test gets its own fresh database on it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

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

psycopg = pytest.importorskip("psycopg")

from boba_runtime.store.order_store import PG_MIGRATIONS, OrderStore, StoreUnavailable  # noqa: E402


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A base URL (no database name) of a PostgreSQL server that takes CREATE DATABASE."""
    existing = os.environ.get("BOBA_TEST_POSTGRES_URL")
    if existing:
        yield existing.rsplit("/", 1)[0]
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Not under pytest's tmp dir: as root that is mode 700, out of the postgres user's reach.
    root = Path(tempfile.mkdtemp(prefix="boba-pg-"))
    data, port = root / "data", _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -F"
    try:
        subprocess.run(
            [
                *as_user,
                initdb,
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "boba",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                *as_user,
                pg_ctl,
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, LookupError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not start a throwaway PostgreSQL: {exc} {detail.decode()[-300:]}")
    try:
        yield f"postgresql://boba@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


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


async def test_reconnects_after_the_server_drops_the_connection(db_url: str) -> None:
    async with await OrderStore.open(db_url) as opened:
        pid = opened._db.conn.raw.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable):
            await opened.ping()  # the operation that finds the connection dead fails ...
        await opened.ping()  # ... and the next one reconnects
        assert await opened.last_event_id() == 0


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
