"""The shop's day as pure rules (CONTRACT §12): sold-out items, open hours, the wait time,
the name on the cup, and what `/voice` says when the shop is closed or paused.

Nothing here reads a clock or a file, nor handles dates: which instant the shop opens or
closes (day boundaries, closed days, DST) is computed in `boba_runtime.config.hours` from an
injected moment; the core keeps the hours as data (minutes after local midnight per
weekday) and the sentences.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Final, Protocol

import msgspec

__all__ = [
    "DAYS",
    "Availability",
    "DayHours",
    "Hours",
    "ItemKind",
    "PrepTimes",
    "ShopStatus",
    "SpokenOpening",
    "closed_message",
    "first_name",
    "order_waits",
    "parse_day_hours",
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

    def on(self, weekday: int) -> DayHours | None:
        """The hours of a weekday, 0 = Monday (`date.weekday()`); None when closed."""
        return self.days.get(DAYS[weekday])


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


class ShopStatus(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"  # outside the open hours
    PAUSED = "paused"  # staff switched phone orders off


class SpokenOpening(Protocol):
    """The next opening as said aloud ("tomorrow at 10 AM"): computed from the clock and the
    time zone by the runtime (`boba_runtime.config.hours`), since the core reads neither."""

    @property
    def spoken(self) -> str: ...


def closed_message(status: ShopStatus, opening: SpokenOpening | None, shop_name: str) -> str:
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
