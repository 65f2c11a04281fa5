"""BOBA_RETENTION_DAYS (CONTRACT §13) with an injected clock, on SQLite and PostgreSQL:
old phone numbers, names on orders, transcripts and recordings go; orders, calls and the
report's counts stay; newer data is untouched; the pass runs at start and again every
interval."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import trio

from boba_proto.model import OrderDraft
from boba_runtime.call.records import CallRecordWriter, Line, LineKind, Outcome
from boba_runtime.config.settings import SettingsError, load_settings
from boba_runtime.store.order_store import OrderStore
from boba_runtime.store.records import daily_report, get_call
from boba_runtime.store.retention import RETENTION_INTERVAL_S, retention_pass, run_retention
from tests.helpers.server import running_server
from tests.helpers.stores import any_db_url  # noqa: F401
from tests.runtime.test_store import TARO, FakeClock
from tests.runtime.test_store_pg import pg_server  # noqa: F401

OLD_PHONE, NEW_PHONE = "+14155550101", "+14155550102"
OLD_SID, NEW_SID = "CA" + "1" * 32, "CA" + "2" * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(any_db_url: str, clock: FakeClock) -> AsyncIterator[OrderStore]:  # noqa: F811
    async with await OrderStore.open(any_db_url, clock=clock, rng=random.Random(9)) as opened:
        yield opened


async def a_call_with_an_order(
    store: OrderStore, clock: FakeClock, when: datetime, sid: str, phone: str,
    name: str | None = None,
) -> str:
    clock.now = when
    writer = CallRecordWriter(store, clock=clock)
    writer.open_call(sid, caller=phone)
    writer.add_line(sid, Line(seq=1, offset_ms=300, kind=LineKind.TEXT, role="assistant",
                              content="Hey! What would you like?"))
    writer.add_line(sid, Line(seq=2, offset_ms=4000, kind=LineKind.FUNCTION,
                              name="save_phone_number", arguments=f'{{"phone":"{phone}"}}',
                              result='{"ok":true}'))
    order = await store.commit_order(
        OrderDraft(phone=phone, items=(TARO,), total_cents=TARO.price_cents, call_sid=sid,
                   name=name)
    )
    writer.close_call(sid, outcome=Outcome.ORDERED, order_number=order.order_number,
                      greeted_ms=300, ordered_ms=20_300)
    await writer.flush()
    return order.order_number


def recording(directory: Path, stamp: str, sid: str) -> Path:
    path = directory / f"{stamp}-{sid}.jsonl"
    path.write_text('{"header": true}\n')
    return path


async def test_old_personal_data_goes_and_the_counts_stay(
    store: OrderStore, clock: FakeClock, tmp_path: Path
) -> None:
    records = tmp_path / "recordings"
    records.mkdir()
    old_file = recording(records, "20261001T100000Z", OLD_SID)
    new_file = recording(records, "20261120T100000Z", NEW_SID)
    stranger = records / "notes.txt"
    stranger.write_text("not a recording")
    old_number = await a_call_with_an_order(
        store, clock, datetime(2026, 10, 1, 10, 0, tzinfo=UTC), OLD_SID, OLD_PHONE, "Mina"
    )
    new_number = await a_call_with_an_order(
        store, clock, datetime(2026, 11, 20, 10, 0, tzinfo=UTC), NEW_SID, NEW_PHONE, "Jo"
    )
    utc = ZoneInfo("UTC")
    before = await daily_report(store, date(2026, 10, 1), utc)

    clock.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # cutoff: 2026-10-26 12:00
    erased = await retention_pass(store, days=30, record_dir=str(records))
    assert erased is not None
    assert (erased.orders, erased.sms, erased.calls, erased.transcript_lines) == (1, 1, 1, 2)
    assert erased.recordings == (str(old_file),)
    assert not old_file.exists() and new_file.exists() and stranger.exists()

    old_order = await store.get_order(old_number)
    assert old_order is not None and old_order.phone == ""
    assert old_order.name is None  # the name on the cup is personal data too (§12, §13)
    assert old_order.items == (TARO,) and old_order.total_cents == TARO.price_cents
    old_call = await get_call(store, OLD_SID)
    assert old_call is not None
    assert old_call.call.caller == "" and old_call.call.erased and old_call.transcript == []
    assert old_call.call.outcome == "ordered" and old_call.call.order_number == old_number
    sms = await store.read(
        lambda conn: [tuple(r) for r in conn.execute("SELECT to_phone FROM sms_outbox")]
    )
    assert sorted(sms) == [("",), (NEW_PHONE,)]

    new_order = await store.get_order(new_number)
    assert new_order is not None and new_order.phone == NEW_PHONE and new_order.name == "Jo"
    new_call = await get_call(store, NEW_SID)
    assert new_call is not None and new_call.call.caller == NEW_PHONE
    assert len(new_call.transcript) == 2 and not new_call.call.erased

    after = await daily_report(store, date(2026, 10, 1), utc)
    assert after == before  # every figure of the old day survives
    assert after.orders == 1 and after.median_seconds_to_order == 20.0

    again = await retention_pass(store, days=30, record_dir=str(records))
    assert again is not None
    assert (again.orders, again.sms, again.calls, again.recordings) == (0, 0, 0, ())


async def test_a_call_still_on_the_line_is_not_touched(
    store: OrderStore, clock: FakeClock
) -> None:
    clock.now = datetime(2026, 10, 1, 10, 0, tzinfo=UTC)
    writer = CallRecordWriter(store, clock=clock)
    writer.open_call(OLD_SID, caller=OLD_PHONE)
    await writer.flush()
    clock.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    await retention_pass(store, days=30, record_dir=None)
    detail = await get_call(store, OLD_SID)
    assert detail is not None and detail.call.caller == OLD_PHONE


async def test_the_task_runs_at_start_and_then_every_interval(
    store: OrderStore, clock: FakeClock
) -> None:
    assert RETENTION_INTERVAL_S == 3600.0  # hourly in production
    old = datetime(2026, 10, 1, 10, 0, tzinfo=UTC)
    first = await a_call_with_an_order(store, clock, old, OLD_SID, OLD_PHONE)
    clock.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_retention(
                store, days=30, record_dir=None, interval=0.05, task_status=task_status
            )
        )
        order = await store.get_order(first)
        assert order is not None and order.phone == ""  # erased before `started`
        second = await a_call_with_an_order(store, clock, old, NEW_SID, NEW_PHONE)
        clock.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        with trio.fail_after(5):
            while (found := await store.get_order(second)) is not None and found.phone:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


async def test_the_server_erases_at_start(tmp_path: Path, any_db_url: str) -> None:  # noqa: F811
    clock = FakeClock()
    store = await OrderStore.open(any_db_url, clock=clock, rng=random.Random(9))
    try:
        old = await a_call_with_an_order(
            store, clock, datetime(2026, 11, 1, 10, 0, tzinfo=UTC), OLD_SID, OLD_PHONE
        )
        clock.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        env = {"BOBA_DATABASE": any_db_url, "BOBA_RETENTION_DAYS": "7"}
        async with running_server(tmp_path, env, store=store) as server:
            order = await server.services.store.get_order(old)
            assert order is not None and order.phone == ""
    finally:
        await store.aclose()


def test_the_setting() -> None:
    assert load_settings({}, {}, None).retention_days == 30
    assert load_settings({}, {"BOBA_RETENTION_DAYS": "7"}, None).retention_days == 7
    for bad in ("0", "-3", "soon", "1.5"):
        with pytest.raises(SettingsError, match="BOBA_RETENTION_DAYS"):
            load_settings({}, {"BOBA_RETENTION_DAYS": bad}, None)
