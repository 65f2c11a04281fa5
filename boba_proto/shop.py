"""The shop's day as pure rules (CONTRACT §12): sold-out items, open hours, the wait time,
the name on the cup, and what `/voice` says when the shop is closed or paused.

Nothing here reads a clock or a file: every function that depends on the time takes the
moment (an aware `datetime`) and the shop's time zone (a `tzinfo` the runtime resolved
with `zoneinfo` at start), so day boundaries, closed days and DST changes are tested with
any instant one likes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final

import msgspec

__all__ = [
    "DAYS",
    "Availability",
    "DayHours",
    "Hours",
    "ItemKind",
    "Opening",
    "PrepTimes",
    "ShopStatus",
    "closed_message",
    "first_name",
    "next_opening",
    "open_at",
    "order_waits",
    "parse_day_hours",
    "today_hours",
    "validate_name",
    "wait_minutes",
]

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""`[hours]` keys, in `date.weekday()` order."""

DAY_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                    "Sunday")


# --- sold out ----------------------------------------------------------------------------


class ItemKind(enum.Enum):
    """What staff can mark sold out; the value is the `/api/menu/{kind}/…` path part."""

    FLAVORS = "flavors"
    TOPPINGS = "toppings"
    ADDONS = "addons"


class Availability(msgspec.Struct, frozen=True, kw_only=True):
    """The canonical names staff marked sold out, per kind; everything else is available."""

    flavors: frozenset[str] = frozenset()
    toppings: frozenset[str] = frozenset()
    addons: frozenset[str] = frozenset()

    def sold_out(self, kind: ItemKind) -> frozenset[str]:
        return {
            ItemKind.FLAVORS: self.flavors,
            ItemKind.TOPPINGS: self.toppings,
            ItemKind.ADDONS: self.addons,
        }[kind]

    def all_sold_out(self) -> list[str]:
        """Every sold-out name, flavors first, each kind in name order (for `sold_out`)."""
        return [*sorted(self.flavors), *sorted(self.toppings), *sorted(self.addons)]

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]]) -> Availability:
        """From stored `(kind, name)` rows of unavailable items; unknown kinds are skipped."""
        by_kind: dict[str, set[str]] = {k.value: set() for k in ItemKind}
        for kind, name in pairs:
            if kind in by_kind:
                by_kind[kind].add(name)
        return cls(
            flavors=frozenset(by_kind["flavors"]),
            toppings=frozenset(by_kind["toppings"]),
            addons=frozenset(by_kind["addons"]),
        )


# --- open hours --------------------------------------------------------------------------


class DayHours(msgspec.Struct, frozen=True):
    """One day's opening, minutes after local midnight; `close <= open` ends after midnight."""

    open: int
    close: int

    def text(self) -> str:
        return f"{_hhmm(self.open)}-{_hhmm(self.close)}"

    @property
    def overnight(self) -> bool:
        return self.close <= self.open


class Hours(msgspec.Struct, frozen=True, kw_only=True):
    """The menu's `[hours]` table: a time zone name and up to one range per weekday."""

    timezone: str
    days: dict[str, DayHours] = msgspec.field(default_factory=dict)  # "mon" -> hours

    def on(self, day: date) -> DayHours | None:
        return self.days.get(DAYS[day.weekday()])


_RANGE: Final = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_day_hours(text: str) -> DayHours | str:
    """`"10:00-21:00"` -> DayHours, or a sentence saying what is wrong with it.

    `24:00` is allowed as a closing time; a closing time at or before the opening time
    means the shop closes after midnight ("18:00-02:00").
    """
    m = _RANGE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        return f"{text!r} is not an opening like \"10:00-21:00\""
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59:
        return f"{text!r}: the opening time is not a time of day"
    if h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        return f"{text!r}: the closing time is not a time of day"
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        return f"{text!r}: the shop opens and closes at the same time"
    return DayHours(start, end)


def _at(day: date, minutes: int, zone: tzinfo) -> datetime:
    """The instant of `minutes` after local midnight of `day` (a DST gap moves it forward)."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minutes)
    # Normalised through UTC: a wall time inside a spring-forward gap (02:30 on the day
    # clocks jump from 02:00 to 03:00) becomes the real instant 03:30.
    return naive.replace(tzinfo=zone).astimezone(zone)


def _span(day: date, hours: DayHours, zone: tzinfo) -> tuple[datetime, datetime]:
    start = _at(day, hours.open, zone)
    end_day = day + timedelta(days=1) if hours.overnight or hours.close == 24 * 60 else day
    end_minutes = hours.close if hours.close != 24 * 60 else 0
    end = _at(end_day, end_minutes, zone)
    return start, end


def open_at(hours: Hours | None, zone: tzinfo | None, now: datetime) -> bool:
    """Whether the shop is open at `now` (aware); no `[hours]` = always open."""
    if hours is None or zone is None:
        return True
    local = now.astimezone(zone)
    for back in (0, 1):  # yesterday's opening may run past midnight
        day = local.date() - timedelta(days=back)
        today = hours.on(day)
        if today is None:
            continue
        start, end = _span(day, today, zone)
        if start <= now < end:
            return True
    return False


def today_hours(hours: Hours | None, zone: tzinfo | None, now: datetime) -> str | None:
    """Today's opening as `"10:00-21:00"` in the shop's local day; None when closed today
    (or when there is no `[hours]` table: then `GET /api/shop` says "always open")."""
    if hours is None or zone is None:
        return None
    today = hours.on(now.astimezone(zone).date())
    return today.text() if today is not None else None


class Opening(msgspec.Struct, frozen=True, kw_only=True):
    """When the shop next opens: the instant and how to say it."""

    at: datetime
    spoken: str  # "today at 10 AM", "tomorrow at 10 AM", "on Monday at 10 AM"


def _spoken_time(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    suffix = "AM" if moment.hour < 12 else "PM"
    return f"{hour} {suffix}" if moment.minute == 0 else f"{hour}:{moment.minute:02d} {suffix}"


def next_opening(hours: Hours | None, zone: tzinfo | None, now: datetime) -> Opening | None:
    """The next opening strictly after `now`, up to a week ahead; None when there is none
    (no `[hours]`, or no day is open)."""
    if hours is None or zone is None:
        return None
    local_today = now.astimezone(zone).date()
    for ahead in range(0, 8):
        day = local_today + timedelta(days=ahead)
        found = hours.on(day)
        if found is None:
            continue
        start, _ = _span(day, found, zone)
        if start <= now:
            continue
        local = start.astimezone(zone)
        if ahead == 0:
            when = "today"
        elif ahead == 1:
            when = "tomorrow"
        else:
            when = f"on {DAY_NAMES[day.weekday()]}"
        return Opening(at=start, spoken=f"{when} at {_spoken_time(local)}")
    return None


class ShopStatus(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"  # outside the open hours
    PAUSED = "paused"  # staff switched phone orders off


def closed_message(status: ShopStatus, opening: Opening | None, shop_name: str) -> str:
    """What `/voice` says, without an agent, when the shop cannot take the call."""
    if status is ShopStatus.PAUSED:
        return (
            f"Thanks for calling {shop_name}. We're not taking phone orders right now. "
            "Please call back a little later, or visit us in the shop."
        )
    when = f" We open again {opening.spoken}." if opening is not None else ""
    return f"Thanks for calling {shop_name}. We're closed right now.{when} Goodbye!"


# --- the wait ----------------------------------------------------------------------------


class PrepTimes(msgspec.Struct, frozen=True, kw_only=True):
    """The menu's `prep_minutes_per_drink` and `prep_minutes_min`."""

    per_drink: int = 3
    minimum: int = 5


def wait_minutes(prep: PrepTimes, drinks_ahead: int) -> int:
    """CONTRACT §12: per-drink minutes × drinks in `received` orders ahead, at least the
    minimum."""
    return max(prep.minimum, prep.per_drink * max(drinks_ahead, 0))


def order_waits(prep: PrepTimes, received: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Each received order's wait, from `(order_number, drinks)` oldest first: the drinks
    of the orders ahead of it (so it shrinks as those are done)."""
    waits: dict[str, int] = {}
    ahead = 0
    for number, drinks in received:
        waits[number] = wait_minutes(prep, ahead)
        ahead += drinks
    return waits


# --- the name on the cup -----------------------------------------------------------------

MAX_NAME_CHARS: Final = 30
_NAME: Final = re.compile(r"[^\W\d_]+(?:[ '\-\u2019][^\W\d_]*)*")

NAME_REFUSAL: Final = (
    "I can only write a first name on the cup, in letters, up to 30 characters. "
    "What name should I put on it?"
)


def validate_name(text: str) -> str | None:
    """The name as it goes on the cup (spaces collapsed), or None when it is not one:
    1 to 30 characters of letters, spaces, `'` and `-`, starting with a letter."""
    if not isinstance(text, str):
        return None
    name = " ".join(text.split()).replace("\u2019", "'")
    if not name or len(name) > MAX_NAME_CHARS or _NAME.fullmatch(name) is None:
        return None
    return name


def first_name(name: str | None) -> str | None:
    """What the TV shows: the first word of the name."""
    if not name:
        return None
    return name.split()[0]
