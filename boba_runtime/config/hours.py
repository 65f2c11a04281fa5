"""When the shop is open, in real instants (CONTRACT §12): the menu's `[hours]` (pure data
in `boba_proto.shop`) against an aware moment and the shop's `zoneinfo` time zone.

Date and time-zone arithmetic lives here, in the runtime, because the core handles no dates
(DESIGN §1); every function still takes the moment, so day boundaries, closed days and DST
changes are tested with any instant one likes.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

import msgspec

from boba_proto.shop import DAY_NAMES, DayHours, Hours

__all__ = ["Opening", "next_opening", "open_at", "today_hours"]


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
        today = hours.on(day.weekday())
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
    today = hours.on(now.astimezone(zone).weekday())
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
        found = hours.on(day.weekday())
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
