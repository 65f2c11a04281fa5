"""The daily report and the orders CSV (CONTRACT §13), computed by SQL on SQLite and on
PostgreSQL: a seeded day of orders and calls, every figure checked."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from boba_proto.model import Drink, OrderDraft
from boba_runtime.call.records import CallRecordWriter, Outcome
from boba_runtime.store.order_store import OrderStore
from boba_runtime.store.records import (
    daily_report,
    day_bounds,
    local_hours,
    orders_csv,
    shop_zone,
)
from tests.helpers.stores import any_db_url  # noqa: F401
from tests.runtime.test_store import BLACK, TARO, FakeClock
from tests.runtime.test_store_pg import pg_server  # noqa: F401

UTC_ZONE = ZoneInfo("UTC")
DAY = date(2026, 11, 25)
PLAIN_BLACK = Drink(flavor="black milk tea", sweetness="50%", ice="regular ice", price_cents=550)
TARO_PUDDING = Drink(
    flavor="taro milk tea", toppings=("boba", "egg pudding"), sweetness="25%", ice="less ice",
    price_cents=700,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(any_db_url: str, clock: FakeClock) -> AsyncIterator[OrderStore]:  # noqa: F811
    async with await OrderStore.open(any_db_url, clock=clock, rng=random.Random(5)) as opened:
        yield opened


async def order_at(
    store: OrderStore, clock: FakeClock, when: datetime, *drinks: Drink, phone: str = "+14155551234"
) -> str:
    clock.now = when
    order = await store.commit_order(
        OrderDraft(phone=phone, items=drinks, total_cents=sum(d.price_cents for d in drinks))
    )
    return order.order_number


async def call_at(
    writer: CallRecordWriter,
    clock: FakeClock,
    when: datetime,
    sid_digit: str,
    outcome: Outcome,
    *,
    greeted_ms: int | None = None,
    ordered_ms: int | None = None,
    order_number: str | None = None,
) -> None:
    clock.now = when
    sid = "CA" + sid_digit * 32
    writer.open_call(sid, caller="+14155550100")
    writer.close_call(
        sid, outcome=outcome, greeted_ms=greeted_ms, ordered_ms=ordered_ms,
        order_number=order_number,
    )
    await writer.flush()


def at(hour: int, minute: int, second: int = 0, day: int = 25) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


async def seed_day(store: OrderStore, clock: FakeClock) -> dict[str, str]:
    numbers = {
        "before": await order_at(store, clock, at(23, 59, 59, day=24), TARO),
        "first": await order_at(store, clock, at(7, 5), TARO),
        "second": await order_at(store, clock, at(7, 40), TARO, BLACK),
        "cancelled": await order_at(store, clock, at(12, 10), PLAIN_BLACK),
        "third": await order_at(store, clock, at(13, 30), TARO_PUDDING),
        "after": await order_at(store, clock, at(0, 0, 0, day=26), BLACK),
    }
    clock.now = at(13, 45)
    await store.cancel(numbers["cancelled"])
    await store.mark_ready(numbers["first"])
    # SMS results: two received texts sent, one failed, one still queued; one ready queued.
    for message in await store.due_sms(limit=50):
        if message.order_number in (numbers["first"], numbers["second"]):
            result = "sent" if message.kind == "received" else None
        elif message.order_number == numbers["third"]:
            result = "failed:30007"
        else:
            result = None
        if result is not None:
            assert await store.mark_sms_sending(message.id)
            assert await store.mark_sms_result(message.id, result)

    writer = CallRecordWriter(store, clock=clock)
    await call_at(writer, clock, at(23, 0, day=24), "0", Outcome.ORDERED,
                  greeted_ms=100, ordered_ms=9000, order_number=numbers["before"])
    await call_at(writer, clock, at(7, 4), "1", Outcome.ORDERED,
                  greeted_ms=400, ordered_ms=30_400, order_number=numbers["first"])
    await call_at(writer, clock, at(7, 39), "2", Outcome.ORDERED,
                  greeted_ms=500, ordered_ms=60_500, order_number=numbers["second"])
    await call_at(writer, clock, at(13, 29), "3", Outcome.ORDERED,
                  greeted_ms=0, ordered_ms=45_000, order_number=numbers["third"])
    await call_at(writer, clock, at(9, 0), "4", Outcome.CALLER_HUNG_UP, greeted_ms=300)
    await call_at(writer, clock, at(9, 1), "5", Outcome.BUSY)
    await call_at(writer, clock, at(18, 0), "6", Outcome.AGENT_FAILED)
    return numbers


async def test_every_figure_of_a_seeded_day(store: OrderStore, clock: FakeClock) -> None:
    await seed_day(store, clock)
    report = await daily_report(store, DAY, UTC_ZONE)

    assert (report.date, report.timezone) == ("2026-11-25", "UTC")
    assert (report.start, report.end) == ("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z")
    assert report.orders == 3 and report.cancelled == 1
    assert report.revenue == 26.25  # 6.25 + (6.25 + 6.75) + 7.00
    assert report.average_ticket == 8.75
    assert report.drinks == 4
    assert report.drinks_by_flavor == {"taro milk tea": 3, "black milk tea": 1}
    assert report.drinks_by_topping == {"boba": 3, "egg pudding": 1, "vanilla cream": 1}
    assert report.calls == 6
    assert report.calls_by_outcome == {
        "agent_failed": 1, "busy": 1, "caller_hung_up": 1, "ordered": 3,
    }
    assert report.ordered_share == 0.5
    assert report.median_seconds_to_order == 45.0  # of 30, 45 and 60 s
    assert len(report.orders_per_hour) == 24
    per_hour = {h.hour: h.orders for h in report.orders_per_hour}
    assert per_hour["07:00"] == 2 and per_hour["13:00"] == 1 and per_hour["12:00"] == 0
    assert sum(per_hour.values()) == 3
    assert report.sms_by_result == {
        "ready": {"queued": 1},
        "received": {"failed:30007": 1, "queued": 1, "sent": 2},
    }


async def test_an_even_number_of_waits_has_the_mean_of_the_middle_two_as_median(
    store: OrderStore, clock: FakeClock
) -> None:
    writer = CallRecordWriter(store, clock=clock)
    for digit, wait_ms in (("1", 10_000), ("2", 20_000), ("3", 40_000), ("4", 90_000)):
        await call_at(writer, clock, at(10, 0), digit, Outcome.ORDERED,
                      greeted_ms=1000, ordered_ms=1000 + wait_ms)
    report = await daily_report(store, DAY, UTC_ZONE)
    assert report.median_seconds_to_order == 30.0


async def test_an_empty_day(store: OrderStore) -> None:
    report = await daily_report(store, DAY, UTC_ZONE)
    assert (report.orders, report.revenue, report.average_ticket) == (0, 0.0, None)
    assert (report.calls, report.ordered_share, report.median_seconds_to_order) == (0, None, None)
    assert report.drinks_by_flavor == {} and report.sms_by_result == {}
    assert [h.orders for h in report.orders_per_hour] == [0] * 24


async def test_the_local_day_follows_the_shops_time_zone(
    store: OrderStore, clock: FakeClock
) -> None:
    """In Los Angeles (UTC-8 in November) 07:05 UTC on the 25th is 23:05 on the 24th."""
    await seed_day(store, clock)
    zone = ZoneInfo("America/Los_Angeles")
    the_24th = await daily_report(store, date(2026, 11, 24), zone)
    assert the_24th.start == "2026-11-24T08:00:00Z"
    # 23:59:59 UTC on the 24th (15:59 local), 07:05 and 07:40 UTC on the 25th (23:05, 23:40)
    assert the_24th.orders == 3
    assert {h.hour: h.orders for h in the_24th.orders_per_hour}["23:00"] == 2
    the_25th = await daily_report(store, DAY, zone)
    assert the_25th.orders == 2  # 13:30 UTC and 00:00 UTC on the 26th (16:00 on the 25th)


def test_a_dst_day_has_23_or_25_hours() -> None:
    zone = ZoneInfo("America/Los_Angeles")
    spring = local_hours(date(2026, 3, 8), zone)
    autumn = local_hours(date(2026, 11, 1), zone)
    assert len(spring) == 23 and len(autumn) == 25
    assert [label for label, _, _ in autumn[:3]] == ["00:00", "01:00", "01:00"]
    assert day_bounds(date(2026, 3, 8), zone)[0] == datetime(2026, 3, 8, 8, tzinfo=UTC)


def test_the_shop_zone_comes_from_the_menu_else_utc() -> None:
    class WithZone:
        timezone = "Asia/Taipei"

    class Without:
        pass

    class Wrong:
        timezone = "Mars/Olympus"

    class WithHours:
        hours = WithZone()

    assert shop_zone(WithZone()).key == "Asia/Taipei"
    assert shop_zone(WithHours()).key == "Asia/Taipei"
    assert shop_zone(Without()).key == "UTC"
    assert shop_zone(Wrong()).key == "UTC"


async def test_the_csv_has_one_row_per_drink(store: OrderStore, clock: FakeClock) -> None:
    numbers = await seed_day(store, clock)
    text = await orders_csv(store, DAY, DAY, UTC_ZONE)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["order_number"], r["drink"], r["flavor"]) for r in rows] == [
        (numbers["first"], "1", "taro milk tea"),
        (numbers["second"], "1", "taro milk tea"),
        (numbers["second"], "2", "black milk tea"),
        (numbers["cancelled"], "1", "black milk tea"),
        (numbers["third"], "1", "taro milk tea"),
    ]
    second_black = rows[2]
    assert second_black["toppings"] == "vanilla cream"
    assert second_black["addons"] == "matcha stencil on top"
    assert (second_black["price"], second_black["order_total"]) == ("6.75", "13.00")
    assert rows[3]["status"] == "cancelled"
    assert rows[4]["toppings"] == "boba; egg pudding"
    assert rows[0]["created_at"] == "2026-11-25T07:05:00Z"
    assert "phone" not in rows[0]
    three_days = await orders_csv(store, date(2026, 11, 24), date(2026, 11, 26), UTC_ZONE)
    assert len(list(csv.DictReader(io.StringIO(three_days)))) == 7
