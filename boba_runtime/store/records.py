"""Reading call records, the daily report, the orders CSV, retention and erasure (§13).

Every figure is computed by SQL in the store (SQLite or PostgreSQL); Python only chooses
the time bounds and shapes the answer. Times in the store are UTC text, so a local day
is a UTC range: `day_bounds` works it out from the shop's time zone (DST included), and
orders per hour are counted against the local hours' UTC bounds, so a day has 23, 24 or
25 hours as the clock on the shop's wall did.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import trio

from boba_runtime.store.order_store import (
    OrderStore,
    StoreConnection,
    format_precise_time,
    format_time,
    parse_time,
)

log = logging.getLogger(__name__)

OUTCOMES = (
    "ordered",
    "no_order",
    "transferred",
    "agent_failed",
    "busy",
    "closed",
    "caller_hung_up",
    "unknown",
)
IN_PROGRESS = "in_progress"
MAX_CALLS_LIMIT = 500
MAX_CSV_DAYS = 366

RECORDING_NAME = re.compile(r"^(\d{8}T\d{6}Z)-[A-Za-z0-9_-]+\.jsonl$")


# --- time ------------------------------------------------------------------------------------


def shop_zone(menu: Any) -> ZoneInfo:
    """The shop's time zone: the menu's (`timezone`, or its opening hours' `timezone`)
    when it has one, else UTC."""
    hours = getattr(menu, "hours", None)
    name = getattr(menu, "timezone", None) or getattr(hours, "timezone", None)
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r in the menu; reports use UTC", name)
        return ZoneInfo("UTC")


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the local `day` in UTC."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def local_hours(day: date, zone: ZoneInfo) -> list[tuple[str, datetime, datetime]]:
    """Each local hour of `day` as (label, UTC start, UTC end); DST days have 23 or 25."""
    start, end = day_bounds(day, zone)
    hours = []
    moment = start
    while moment < end:
        following = min(moment + timedelta(hours=1), end)
        label = moment.astimezone(zone).strftime("%H:%M")
        hours.append((label, moment, following))
        moment = following
    return hours


def _seconds_text(moment: datetime) -> str:
    return format_time(moment)


def _iso(text: str | None) -> str | None:
    """A stored precise time as ISO 8601 to the second with Z (the shape of §4)."""
    return None if text is None else format_time(parse_time(text))


# --- calls -----------------------------------------------------------------------------------


class TranscriptLine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    seq: int
    offset: float  # seconds from the start of the call
    kind: str  # "text" | "function"
    role: str | None = None
    content: str | None = None
    name: str | None = None
    arguments: str | None = None
    result: str | None = None


class CallSummary(msgspec.Struct, frozen=True, kw_only=True):
    call_sid: str
    source: str
    caller: str
    started_at: str
    ended_at: str | None
    duration_seconds: float | None
    outcome: str  # one of OUTCOMES, or "in_progress"
    order_number: str | None
    lines_dropped: int
    erased: bool


class CallDetail(msgspec.Struct, frozen=True, kw_only=True):
    call: CallSummary
    transcript: list[TranscriptLine]


_CALL_COLUMNS = (
    "call_sid, source, caller, started_at, ended_at, outcome, order_number, "
    "lines_dropped, erased_at"
)


def _summary(row: Sequence[Any]) -> CallSummary:
    started, ended = str(row[3]), row[4]
    duration = None
    if ended is not None:
        duration = round((parse_time(str(ended)) - parse_time(started)).total_seconds(), 1)
    return CallSummary(
        call_sid=str(row[0]),
        source=str(row[1]),
        caller=str(row[2]),
        started_at=format_time(parse_time(started)),
        ended_at=_iso(ended),
        duration_seconds=duration,
        outcome=str(row[5]) if row[5] is not None else IN_PROGRESS,
        order_number=row[6],
        lines_dropped=int(row[7]),
        erased=row[8] is not None,
    )


async def list_calls(
    store: OrderStore, *, limit: int, caller: str | None = None
) -> list[CallSummary]:
    """The newest calls first (only those from `caller` when given)."""

    def work(conn: StoreConnection) -> list[CallSummary]:
        where, params = ("WHERE caller = ? ", [caller]) if caller else ("", [])
        rows = conn.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls {where}ORDER BY started_at DESC, id DESC "
            "LIMIT ?",
            (*params, limit),
        )
        return [_summary(row) for row in rows]

    return await store.read(work)


async def get_call(store: OrderStore, call_sid: str) -> CallDetail | None:
    def work(conn: StoreConnection) -> CallDetail | None:
        row = conn.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_sid = ?", (call_sid,)
        ).fetchone()
        if row is None:
            return None
        lines = []
        for seq, offset_ms, kind, role, content, name, arguments, result in conn.execute(
            "SELECT seq, offset_ms, kind, role, content, name, arguments, result "
            "FROM call_lines WHERE call_sid = ? ORDER BY seq",
            (call_sid,),
        ):
            if kind == "text":
                lines.append(
                    TranscriptLine(
                        seq=int(seq), offset=offset_ms / 1000, kind=kind, role=role,
                        content=content,
                    )
                )
            else:
                lines.append(
                    TranscriptLine(
                        seq=int(seq), offset=offset_ms / 1000, kind=kind, name=name,
                        arguments=arguments, result=result,
                    )
                )
        return CallDetail(call=_summary(row), transcript=lines)

    return await store.read(work)


async def call_sid_for_order(store: OrderStore, order_number: str) -> str | None:
    """The call that placed an order (the active one with that number, else the latest)."""
    order = await store.get_order(order_number)
    if order is None or not order.call_sid:
        return None
    return order.call_sid


# --- the daily report --------------------------------------------------------------------------


class HourCount(msgspec.Struct, frozen=True, kw_only=True):
    hour: str  # local "HH:MM"
    orders: int


class DailyReport(msgspec.Struct, frozen=True, kw_only=True):
    date: str
    timezone: str
    start: str  # UTC bounds of the local day
    end: str
    orders: int  # committed and not cancelled
    cancelled: int
    revenue: float  # dollars, exact to the cent
    average_ticket: float | None
    drinks: int
    drinks_by_flavor: dict[str, int]
    drinks_by_topping: dict[str, int]
    calls: int
    calls_by_outcome: dict[str, int]
    ordered_share: float | None  # of all calls that day, the share that ordered
    median_seconds_to_order: float | None  # greeting to committed order
    orders_per_hour: list[HourCount]
    sms_by_result: dict[str, dict[str, int]]


def _drink_sql(dialect: str) -> tuple[str, str]:
    """(drinks by flavor, drinks by topping) for the store's dialect; both take the
    day's bounds twice-free: `created_at >= ? AND created_at < ?`."""
    if dialect == "postgresql":
        flavor = (
            "SELECT d.drink ->> 'flavor', count(*) FROM orders o "
            "CROSS JOIN LATERAL jsonb_array_elements(o.items::jsonb) AS d(drink) "
            "WHERE o.status <> 'cancelled' AND o.created_at >= ? AND o.created_at < ? "
            "GROUP BY 1"
        )
        topping = (
            "SELECT t.topping, count(*) FROM orders o "
            "CROSS JOIN LATERAL jsonb_array_elements(o.items::jsonb) AS d(drink) "
            "CROSS JOIN LATERAL jsonb_array_elements_text(d.drink -> 'toppings') AS t(topping) "
            "WHERE o.status <> 'cancelled' AND o.created_at >= ? AND o.created_at < ? "
            "GROUP BY 1"
        )
    else:
        flavor = (
            "SELECT json_extract(d.value, '$.flavor'), count(*) FROM orders o, "
            "json_each(o.items) d "
            "WHERE o.status <> 'cancelled' AND o.created_at >= ? AND o.created_at < ? "
            "GROUP BY 1"
        )
        topping = (
            "SELECT t.value, count(*) FROM orders o, json_each(o.items) d, "
            "json_each(d.value, '$.toppings') t "
            "WHERE o.status <> 'cancelled' AND o.created_at >= ? AND o.created_at < ? "
            "GROUP BY 1"
        )
    return flavor, topping


def _sorted_counts(rows: Any) -> dict[str, int]:
    counts = {str(name): int(n) for name, n in rows}
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


async def daily_report(store: OrderStore, day: date, zone: ZoneInfo) -> DailyReport:
    start, end = day_bounds(day, zone)
    lo, hi = _seconds_text(start), _seconds_text(end)  # orders: to the second
    call_lo, call_hi = format_precise_time(start), format_precise_time(end)  # calls: precise
    hours = local_hours(day, zone)
    flavor_sql, topping_sql = _drink_sql(store.dialect)

    def work(conn: StoreConnection) -> DailyReport:
        orders, revenue = conn.execute(
            "SELECT count(*), coalesce(sum(total_cents), 0) FROM orders "
            "WHERE status <> 'cancelled' AND created_at >= ? AND created_at < ?",
            (lo, hi),
        ).fetchone()
        orders, revenue = int(orders), int(revenue)
        cancelled = int(
            conn.execute(
                "SELECT count(*) FROM orders WHERE status = 'cancelled' "
                "AND created_at >= ? AND created_at < ?",
                (lo, hi),
            ).fetchone()[0]
        )
        by_flavor = _sorted_counts(conn.execute(flavor_sql, (lo, hi)))
        by_topping = _sorted_counts(conn.execute(topping_sql, (lo, hi)))
        by_outcome = {
            (str(outcome) if outcome is not None else IN_PROGRESS): int(n)
            for outcome, n in conn.execute(
                "SELECT outcome, count(*) FROM calls WHERE started_at >= ? AND started_at < ? "
                "GROUP BY outcome",
                (call_lo, call_hi),
            )
        }
        calls = sum(by_outcome.values())
        median = _median_to_order(conn, call_lo, call_hi)
        values = ", ".join(
            "(CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS TEXT))" for _ in hours
        )
        params: list[object] = []
        for index, (_label, h_start, h_end) in enumerate(hours):
            params += [index, _seconds_text(h_start), _seconds_text(h_end)]
        per_hour = {
            int(index): int(n)
            for index, n in conn.execute(
                f"SELECT b.column1, count(o.id) FROM (VALUES {values}) AS b "
                "LEFT JOIN orders o ON o.created_at >= b.column2 AND o.created_at < b.column3 "
                "AND o.status <> 'cancelled' GROUP BY b.column1",
                params,
            )
        }
        sms: dict[str, dict[str, int]] = {}
        for kind, state, n in conn.execute(
            "SELECT m.kind, m.state, count(*) FROM sms_outbox m "
            "JOIN orders o ON o.id = m.order_id "
            "WHERE o.created_at >= ? AND o.created_at < ? GROUP BY m.kind, m.state",
            (lo, hi),
        ):
            result = "queued" if state == "sending" else str(state)
            per_kind = sms.setdefault(str(kind), {})
            per_kind[result] = per_kind.get(result, 0) + int(n)
        return DailyReport(
            date=day.isoformat(),
            timezone=str(zone.key),
            start=format_time(start),
            end=format_time(end),
            orders=orders,
            cancelled=cancelled,
            revenue=revenue / 100,
            average_ticket=round(revenue / orders) / 100 if orders else None,
            drinks=sum(by_flavor.values()),
            drinks_by_flavor=by_flavor,
            drinks_by_topping=by_topping,
            calls=calls,
            calls_by_outcome={k: by_outcome[k] for k in sorted(by_outcome)},
            ordered_share=round(by_outcome.get("ordered", 0) / calls, 4) if calls else None,
            median_seconds_to_order=median,
            orders_per_hour=[
                HourCount(hour=label, orders=per_hour.get(index, 0))
                for index, (label, _s, _e) in enumerate(hours)
            ],
            sms_by_result=dict(sorted(sms.items())),
        )

    return await store.read(work)


def _median_to_order(conn: StoreConnection, lo: str, hi: str) -> float | None:
    """The median of (order committed - greeting) over the day's calls that ordered."""
    where = (
        "FROM calls WHERE started_at >= ? AND started_at < ? AND outcome = 'ordered' "
        "AND greeted_ms IS NOT NULL AND ordered_ms IS NOT NULL"
    )
    n = int(conn.execute(f"SELECT count(*) {where}", (lo, hi)).fetchone()[0])
    if n == 0:
        return None
    middle = [
        int(row[0])
        for row in conn.execute(
            f"SELECT ordered_ms - greeted_ms AS wait_ms {where} ORDER BY wait_ms "
            "LIMIT ? OFFSET ?",
            (lo, hi, 2 - n % 2, (n - 1) // 2),
        )
    ]
    return round(sum(middle) / len(middle) / 1000, 1)


# --- the orders CSV ----------------------------------------------------------------------------

CSV_HEADER = (
    "order_number", "created_at", "local_date", "status", "drink", "flavor", "toppings",
    "addons", "sweetness", "ice", "price", "order_total",
)


class _CsvDrink(msgspec.Struct, frozen=True, kw_only=True):
    flavor: str
    toppings: tuple[str, ...] = ()
    addons: tuple[str, ...] = ()
    sweetness: str = ""
    ice: str = ""
    price_cents: int = 0


_CSV_DRINKS = msgspec.json.Decoder(list[_CsvDrink])


async def orders_csv(store: OrderStore, first: date, last: date, zone: ZoneInfo) -> str:
    """One row per drink of the orders created on local days `first`..`last` (inclusive)."""
    lo = _seconds_text(day_bounds(first, zone)[0])
    hi = _seconds_text(day_bounds(last, zone)[1])

    def work(conn: StoreConnection) -> list[tuple[Any, ...]]:
        return list(
            conn.execute(
                "SELECT order_number, created_at, status, items, total_cents FROM orders "
                "WHERE created_at >= ? AND created_at < ? ORDER BY created_at, id",
                (lo, hi),
            )
        )

    rows = await store.read(work)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for number, created, status, items, total_cents in rows:
        local_date = parse_time(str(created)).astimezone(zone).date().isoformat()
        for index, drink in enumerate(_CSV_DRINKS.decode(items), start=1):
            writer.writerow(
                (
                    number, created, local_date, status, index, drink.flavor,
                    "; ".join(drink.toppings), "; ".join(drink.addons), drink.sweetness,
                    drink.ice, f"{drink.price_cents / 100:.2f}", f"{int(total_cents) / 100:.2f}",
                )
            )
    return out.getvalue()


# --- retention and erasure ------------------------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    """What one erasure removed."""

    orders: int = 0  # orders whose phone was blanked
    sms: int = 0  # outbox rows whose number was blanked
    calls: int = 0  # call records whose caller was blanked
    transcript_lines: int = 0
    recordings: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [
            f"{self.orders} order(s): phone number",
            f"{self.sms} SMS: phone number",
            f"{self.calls} call record(s): caller and transcript "
            f"({self.transcript_lines} line(s))",
            f"{len(self.recordings)} recording(s)",
        ]
        return "; ".join(parts)


def _erase_calls(conn: StoreConnection, sids: Sequence[str], stamp: str) -> tuple[int, int]:
    calls = lines = 0
    for sid in sids:
        lines += conn.execute("DELETE FROM call_lines WHERE call_sid = ?", (sid,)).rowcount
        calls += conn.execute(
            "UPDATE calls SET caller = '', erased_at = coalesce(erased_at, ?) "
            "WHERE call_sid = ?",
            (stamp, sid),
        ).rowcount
    return calls, lines


async def erase_older_than(store: OrderStore, cutoff: datetime) -> Erased:
    """Personal data of orders and ended calls started before `cutoff` (CONTRACT §13):
    phone numbers blanked, names on orders cleared, transcripts deleted; the rows and
    their counts stay."""
    order_cut, call_cut = format_time(cutoff), format_precise_time(cutoff)
    stamp = format_precise_time(store.clock())

    def work(conn: StoreConnection) -> Erased:
        sms = conn.execute(
            "UPDATE sms_outbox SET to_phone = '' WHERE to_phone <> '' AND order_id IN "
            "(SELECT id FROM orders WHERE created_at < ?)",
            (order_cut,),
        ).rowcount
        orders = conn.execute(  # the name on the cup is personal data too (§12, §13)
            "UPDATE orders SET phone = '', name = NULL "
            "WHERE (phone <> '' OR name IS NOT NULL) AND created_at < ?",
            (order_cut,),
        ).rowcount
        sids = [
            str(row[0])
            for row in conn.execute(
                "SELECT call_sid FROM calls WHERE started_at < ? AND outcome IS NOT NULL "
                "AND (erased_at IS NULL OR caller <> '' OR EXISTS "
                "(SELECT 1 FROM call_lines l WHERE l.call_sid = calls.call_sid))",
                (call_cut,),
            )
        ]
        calls, lines = _erase_calls(conn, sids, stamp)
        return Erased(orders=orders, sms=sms, calls=calls, transcript_lines=lines)

    return await store.write(work)


def _recording_start(name: str) -> datetime | None:
    match = RECORDING_NAME.match(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def delete_old_recordings(record_dir: str | Path, cutoff: datetime) -> tuple[str, ...]:
    """Session files in `BOBA_RECORD_DIR` whose call started before `cutoff` (blocking)."""
    directory = Path(record_dir)
    if not directory.is_dir():
        return ()
    deleted = []
    for path in sorted(directory.iterdir()):
        started = _recording_start(path.name)
        if started is not None and started < cutoff and path.is_file():
            path.unlink(missing_ok=True)
            deleted.append(str(path))
    return tuple(deleted)


async def apply_retention(
    store: OrderStore, *, days: int, record_dir: str | None
) -> Erased:
    """One pass of `BOBA_RETENTION_DAYS`: the store's personal data, then old recordings."""
    cutoff = store.clock() - timedelta(days=days)
    erased = await erase_older_than(store, cutoff)
    recordings: tuple[str, ...] = ()
    if record_dir:
        recordings = await trio.to_thread.run_sync(delete_old_recordings, record_dir, cutoff)
    return Erased(
        orders=erased.orders,
        sms=erased.sms,
        calls=erased.calls,
        transcript_lines=erased.transcript_lines,
        recordings=recordings,
    )


def phone_variants(phone: str) -> tuple[str, ...]:
    """How a number may be written in a transcript or a recording: E.164 and, for NANP
    numbers, the ten national digits."""
    variants = [phone]
    if phone.startswith("+1") and len(phone) == 12:
        variants.append(phone[2:])
    return tuple(variants)


@dataclass(frozen=True)
class ErasedPerson:
    """What `erase_phone` found and erased for one number."""

    erased: Erased
    order_numbers: tuple[str, ...]
    call_sids: tuple[str, ...]


async def erase_phone(store: OrderStore, phone: str) -> ErasedPerson:
    """Everything the store keeps about one number: its orders' numbers and names, SMS
    numbers, and the call records (caller, transcript) of calls from it, about its orders,
    or mentioning it."""
    stamp = format_precise_time(store.clock())
    variants = phone_variants(phone)

    def work(conn: StoreConnection) -> ErasedPerson:
        sids = {
            str(r[0]) for r in conn.execute("SELECT call_sid FROM calls WHERE caller = ?", (phone,))
        }
        sids |= {
            str(r[0])
            for r in conn.execute(
                "SELECT call_sid FROM orders WHERE phone = ? AND call_sid <> ''", (phone,)
            )
        }
        for variant in variants:
            pattern = f"%{variant}%"
            sids |= {
                str(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT call_sid FROM call_lines WHERE content LIKE ? "
                    "OR arguments LIKE ? OR result LIKE ?",
                    (pattern, pattern, pattern),
                )
            }
        numbers = tuple(
            str(r[0])
            for r in conn.execute(
                "SELECT order_number FROM orders WHERE phone = ? ORDER BY id", (phone,)
            )
        )
        sms = conn.execute(
            "UPDATE sms_outbox SET to_phone = '' WHERE to_phone = ?", (phone,)
        ).rowcount
        orders = conn.execute(  # with the name on the cup (§12, §13)
            "UPDATE orders SET phone = '', name = NULL WHERE phone = ?", (phone,)
        ).rowcount
        ordered = tuple(sorted(sids))
        calls, lines = _erase_calls(conn, ordered, stamp)
        return ErasedPerson(
            erased=Erased(orders=orders, sms=sms, calls=calls, transcript_lines=lines),
            order_numbers=numbers,
            call_sids=ordered,
        )

    return await store.write(work)


def delete_recordings_of(
    record_dir: str | Path, call_sids: Sequence[str], phone: str
) -> tuple[str, ...]:
    """Session files of those calls, and any other that mentions the number (blocking)."""
    directory = Path(record_dir)
    if not directory.is_dir():
        return ()
    wanted = set(call_sids)
    needles = [v.encode() for v in phone_variants(phone)]
    deleted = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or RECORDING_NAME.match(path.name) is None:
            continue
        sid = path.name[len("YYYYMMDDTHHMMSSZ-") : -len(".jsonl")]
        if sid in wanted or any(needle in path.read_bytes() for needle in needles):
            path.unlink(missing_ok=True)
            deleted.append(str(path))
    return tuple(deleted)
