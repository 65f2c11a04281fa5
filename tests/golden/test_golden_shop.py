"""Golden answers of `/voice` when no agent takes the call (CONTRACT §12): the TwiML for a
closed shop (with the next opening, across a closed day and a DST change) and for a
paused one, at fixed instants. A closed-hours call never reaches the core, so its golden
is this TwiML rather than a recorded session; `tests/web/test_shop_day.py` checks the same
path through the real server, with no agent connection."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from zoneinfo import ZoneInfo

import pytest

from boba_proto.menu import parse_menu
from boba_proto.shop import ShopStatus
from boba_runtime.config.hours import open_at
from boba_runtime.store.shop import zone_exists
from boba_web.shop_routes import closed_twiml

MENU = parse_menu(
    files("boba_proto").joinpath("menu.toml").read_text("utf-8")
    + '\n[hours]\ntimezone = "America/Los_Angeles"\nmon = "10:00-21:00"\ntue = "10:00-21:00"\n'
    'wed = "10:00-21:00"\nthu = "10:00-21:00"\nfri = "10:00-22:30"\nsat = "09:00-22:30"\n',
    source="menu.toml", zone_exists=zone_exists,
)
LA = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize(("name", "moment"), [
    ("before_opening_monday", datetime(2026, 11, 30, 15, 0, tzinfo=UTC)),  # 07:00 PST
    ("after_closing_friday", datetime(2026, 12, 5, 7, 0, tzinfo=UTC)),  # Fri 23:00 PST
    ("sunday_closed_all_day", datetime(2026, 12, 6, 20, 0, tzinfo=UTC)),
    ("saturday_night_before_dst", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # Sat 23:00 PST
])
def test_closed_call_twiml(name: str, moment: datetime, snapshot: object) -> None:
    assert not open_at(MENU.hours, LA, moment)
    twiml = closed_twiml(MENU, LA, ShopStatus.CLOSED, moment)
    assert "<Connect" not in twiml and twiml.endswith("<Hangup/></Response>")
    assert twiml == snapshot


def test_paused_call_twiml(snapshot: object) -> None:
    twiml = closed_twiml(MENU, LA, ShopStatus.PAUSED, datetime(2026, 11, 30, 20, tzinfo=UTC))
    assert "not taking phone orders right now" in twiml
    assert twiml == snapshot
