"""CONTRACT §12 rules in the core: open hours on an injected clock (day boundaries, closed
days, DST), the wait, the name on the cup, sold-out refusals, and transfer_to_staff."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from boba_proto import ordering, tools
from boba_proto.errors import MenuError
from boba_proto.menu import Menu, parse_menu
from boba_proto.model import CommitOrder, Order, OrderCommitted, OrderStatus
from boba_proto.shop import (
    Availability,
    DayHours,
    Hours,
    PrepTimes,
    ShopStatus,
    closed_message,
    first_name,
    order_waits,
    parse_day_hours,
    validate_name,
    wait_minutes,
)
from boba_runtime.config.hours import next_opening, open_at, today_hours

LA = ZoneInfo("America/Los_Angeles")
BUILTIN = files("boba_proto").joinpath("menu.toml").read_text("utf-8")
MENU = parse_menu(BUILTIN, source="menu.toml")

# Mon-Fri 10-21, Sat 09-01 (past midnight), Sunday closed.
HOURS = Hours(timezone="America/Los_Angeles", days={
    "mon": DayHours(600, 1260), "tue": DayHours(600, 1260), "wed": DayHours(600, 1260),
    "thu": DayHours(600, 1260), "fri": DayHours(600, 1260), "sat": DayHours(540, 60),
})


def la(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LA)


# --- open hours ----------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "is_open"), [
    (la(2026, 11, 30, 9, 59), False),  # Monday, a minute before opening
    (la(2026, 11, 30, 10, 0), True),  # opening minute
    (la(2026, 11, 30, 20, 59), True),
    (la(2026, 11, 30, 21, 0), False),  # closing minute: closed
    (la(2026, 12, 5, 23, 30), True),  # Saturday night
    (la(2026, 12, 6, 0, 30), True),  # Sunday 00:30: Saturday's opening runs to 01:00
    (la(2026, 12, 6, 1, 0), False),
    (la(2026, 12, 6, 12, 0), False),  # Sunday: absent = closed
])
def test_open_at_day_boundaries(moment: datetime, is_open: bool) -> None:
    assert open_at(HOURS, LA, moment.astimezone(UTC)) is is_open


def test_no_hours_table_is_always_open() -> None:
    assert open_at(None, None, datetime(2026, 12, 6, 3, tzinfo=UTC))
    assert MENU.hours is None
    assert today_hours(None, None, datetime(2026, 12, 6, tzinfo=UTC)) is None
    assert next_opening(None, None, datetime(2026, 12, 6, tzinfo=UTC)) is None


def test_the_local_day_decides_today_not_utc() -> None:
    # Monday 17:00 in LA is already Tuesday 01:00 UTC.
    moment = la(2026, 11, 30, 17).astimezone(UTC)
    assert moment.weekday() == 1
    assert today_hours(HOURS, LA, moment) == "10:00-21:00"
    sunday = la(2026, 12, 6, 17).astimezone(UTC)  # Monday UTC, Sunday in LA
    assert today_hours(HOURS, LA, sunday) is None


def test_next_opening_today_tomorrow_and_across_a_closed_day() -> None:
    early = next_opening(HOURS, LA, la(2026, 11, 30, 7).astimezone(UTC))
    assert early is not None and early.spoken == "today at 10 AM"
    assert early.at == la(2026, 11, 30, 10)
    late = next_opening(HOURS, LA, la(2026, 11, 30, 22).astimezone(UTC))
    assert late is not None and late.spoken == "tomorrow at 10 AM"
    # Sunday is closed: from Saturday's close the next opening is Monday.
    sunday = next_opening(HOURS, LA, la(2026, 12, 6, 2).astimezone(UTC))
    assert sunday is not None and sunday.spoken == "tomorrow at 10 AM"
    assert sunday.at == la(2026, 12, 7, 10)
    only_monday = Hours(timezone="America/Los_Angeles", days={"mon": DayHours(570, 900)})
    week = next_opening(only_monday, LA, la(2026, 12, 1, 12).astimezone(UTC))
    assert week is not None and week.spoken == "on Monday at 9:30 AM"
    assert week.at == la(2026, 12, 7, 9, 30)
    assert next_opening(Hours(timezone="UTC"), LA, la(2026, 12, 1, 12)) is None


def test_dst_changes_keep_local_opening_times() -> None:
    # 2026-03-08: clocks go 02:00 -> 03:00 in LA; 2026-11-01: 02:00 -> 01:00.
    spring = next_opening(HOURS, LA, datetime(2026, 3, 8, 12, tzinfo=UTC))  # Sunday 05:00 PDT
    assert spring is not None and spring.at.astimezone(UTC) == datetime(2026, 3, 9, 17, tzinfo=UTC)
    assert spring.spoken == "tomorrow at 10 AM"  # 10:00 PDT = 17:00 UTC
    friday_before = la(2026, 3, 6, 10).astimezone(UTC)
    assert friday_before == datetime(2026, 3, 6, 18, tzinfo=UTC)  # 10:00 PST = 18:00 UTC
    assert open_at(HOURS, LA, datetime(2026, 3, 9, 17, 0, tzinfo=UTC))
    assert not open_at(HOURS, LA, datetime(2026, 3, 9, 16, 59, tzinfo=UTC))
    # Autumn: Monday 2 November opens at 10:00 PST = 18:00 UTC.
    assert not open_at(HOURS, LA, datetime(2026, 11, 2, 17, 30, tzinfo=UTC))
    assert open_at(HOURS, LA, datetime(2026, 11, 2, 18, 0, tzinfo=UTC))
    # An opening inside the spring-forward gap starts at the first real minute after it.
    night = Hours(timezone="America/Los_Angeles", days={"sun": DayHours(150, 600)})
    gap = next_opening(night, LA, datetime(2026, 3, 8, 8, tzinfo=UTC))  # Sun 00:00 PST
    assert gap is not None and gap.at.astimezone(UTC) == datetime(2026, 3, 8, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("10:00-21:00", DayHours(600, 1260)),
    (" 9:30 - 17:45 ", DayHours(570, 1065)),
    ("18:00-02:00", DayHours(1080, 120)),
    ("00:00-24:00", DayHours(0, 1440)),
])
def test_day_hours_parse(text: str, expected: DayHours) -> None:
    assert parse_day_hours(text) == expected


@pytest.mark.parametrize("text", ["10-21", "25:00-26:00", "10:00-24:30", "10:60-11:00",
                                  "10:00-10:00", "closed", ""])
def test_day_hours_refuse_what_is_not_a_range(text: str) -> None:
    assert isinstance(parse_day_hours(text), str)


def test_all_day_opening_is_open_at_midnight() -> None:
    always = Hours(timezone="UTC", days={"mon": DayHours(0, 1440)})
    assert open_at(always, UTC, datetime(2026, 11, 30, 0, 0, tzinfo=UTC))
    assert open_at(always, UTC, datetime(2026, 11, 30, 23, 59, tzinfo=UTC))
    assert not open_at(always, UTC, datetime(2026, 12, 1, 0, 0, tzinfo=UTC))


def hours_menu(table: str, zone_exists: Any = None) -> Menu:
    return parse_menu(BUILTIN + "\n" + table, source="shop.toml", zone_exists=zone_exists)


def test_hours_table_parses() -> None:
    menu = hours_menu('[hours]\ntimezone = "America/Los_Angeles"\nmon = "10:00-21:00"\n'
                      'sat = "09:00-01:00"\n', zone_exists=lambda name: True)
    assert menu.hours == Hours(timezone="America/Los_Angeles",
                               days={"mon": DayHours(600, 1260), "sat": DayHours(540, 60)})


def test_hours_errors_name_the_file_and_line() -> None:
    lines = BUILTIN.count("\n") + 1  # the table starts on the line after the built-in text
    with pytest.raises(MenuError) as bad_range:
        hours_menu('[hours]\ntimezone = "UTC"\nmon = "10:00-21:00"\ntue = "ten to nine"\n')
    assert str(bad_range.value).startswith(f"shop.toml:{lines + 4}: hours.tue: ")
    with pytest.raises(MenuError) as bad_day:
        hours_menu('[hours]\ntimezone = "UTC"\nmonday = "10:00-21:00"\n')
    assert str(bad_day.value).startswith(f"shop.toml:{lines + 3}: hours.monday: unknown key")
    with pytest.raises(MenuError) as bad_zone:
        hours_menu('[hours]\ntimezone = "Mars/Olympus"\n', zone_exists=lambda name: False)
    assert str(bad_zone.value).startswith(f"shop.toml:{lines + 2}: hours.timezone: ")
    assert "Mars/Olympus" in str(bad_zone.value)
    with pytest.raises(MenuError) as no_zone:
        hours_menu('[hours]\nmon = "10:00-21:00"\n')
    assert str(no_zone.value).startswith(f"shop.toml:{lines + 1}: hours: needs a timezone")


def test_prep_minutes_come_from_the_menu() -> None:
    assert MENU.prep == PrepTimes(per_drink=3, minimum=5)
    menu = parse_menu("prep_minutes_per_drink = 4\nprep_minutes_min = 2\n" + BUILTIN,
                      source="m.toml")
    assert menu.prep == PrepTimes(per_drink=4, minimum=2)


def test_closed_and_paused_messages() -> None:
    opening = next_opening(HOURS, LA, la(2026, 11, 30, 22).astimezone(UTC))
    closed = closed_message(ShopStatus.CLOSED, opening, "Deepgram BobaRista")
    assert "closed" in closed and "tomorrow at 10 AM" in closed
    paused = closed_message(ShopStatus.PAUSED, None, "Deepgram BobaRista")
    assert "not taking phone orders right now" in paused


# --- the wait ------------------------------------------------------------------------------


def test_wait_minutes_per_contract() -> None:
    prep = PrepTimes()
    assert wait_minutes(prep, 0) == 5  # at least the minimum
    assert wait_minutes(prep, 1) == 5
    assert wait_minutes(prep, 4) == 12
    assert order_waits(prep, [("0001", 2), ("0002", 3), ("0003", 1)]) == {
        "0001": 5, "0002": 6, "0003": 15}


# --- the name on the cup ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "name"), [
    ("Ana", "Ana"), ("  Mary  Jane ", "Mary Jane"), ("O'Brien", "O'Brien"),
    ("Jean-Luc", "Jean-Luc"), ("Zoë", "Zoë"), ("O\u2019Neil", "O'Neil"), ("x" * 30, "x" * 30),
])
def test_names_that_go_on_a_cup(text: str, name: str) -> None:
    assert validate_name(text) == name


@pytest.mark.parametrize("text", ["", "   ", "x" * 31, "R2D2", "Ana!", "<b>", "-Ana", "a_b"])
def test_names_refused(text: str) -> None:
    assert validate_name(text) is None


def test_first_name_for_the_tv() -> None:
    assert first_name("Mary Jane") == "Mary"
    assert first_name(None) is None


# --- functions ---------------------------------------------------------------------------------

SOLD_OUT = Availability(flavors=frozenset({"taro milk tea"}), toppings=frozenset({"egg pudding"}))


def dispatch(state: tools.ToolState, name: str, args: dict[str, Any]) -> tuple[Any, Any]:
    return tools.dispatch(MENU, state, name, json.dumps(args), request_id="fc")


def test_sold_out_items_are_refused_by_name() -> None:
    state = tools.initial_state("+14155550100", availability=SOLD_OUT)
    after, outcome = dispatch(state, "add_to_cart", {"flavor": "taro"})
    assert outcome.result == {"ok": False, "error": "Sorry, the taro milk tea is sold out right "
                              "now. We still have black milk tea, if you'd like one of those."}
    assert after == state
    after, outcome = dispatch(state, "add_to_cart",
                              {"flavor": "black milk tea", "toppings": ["pudding"]})
    assert not outcome.result["ok"] and "egg pudding is sold out" in outcome.result["error"]
    state, outcome = dispatch(state, "add_to_cart", {"flavor": "black milk tea"})
    assert outcome.result["ok"]
    after, outcome = dispatch(state, "update_pending_item", {"toppings": ["egg pudding"]})
    assert not outcome.result["ok"] and "egg pudding" in outcome.result["error"]
    assert after == state


def test_a_drink_already_in_the_cart_stays_valid() -> None:
    state = tools.initial_state("+14155550100")
    for name, args in [("add_to_cart", {"flavor": "taro", "toppings": ["pudding"]}),
                       ("confirm_pending_to_cart", {})]:
        state, _ = dispatch(state, name, args)
    state = tools.ToolState(**{**{f: getattr(state, f) for f in state.__struct_fields__},
                               "availability": SOLD_OUT})
    state, outcome = dispatch(state, "modify_cart_item", {"index": 0, "ice": "less ice"})
    assert outcome.result["ok"] and outcome.result["item"]["flavor"] == "taro milk tea"
    assert outcome.result["item"]["toppings"] == ["egg pudding"]
    # Switching another drink's flavor to a sold-out one is refused.
    _, outcome = dispatch(state, "modify_cart_item", {"index": 0, "flavor": "black milk tea"})
    assert outcome.result["ok"]
    state, _ = dispatch(state, "modify_cart_item", {"index": 0, "flavor": "black milk tea"})
    _, outcome = dispatch(state, "modify_cart_item", {"index": 0, "flavor": "taro"})
    assert not outcome.result["ok"] and "taro milk tea is sold out" in outcome.result["error"]
    state, outcome = dispatch(state, "save_phone_number", {"phone": "415 555 2671"})
    _, outcome = dispatch(state, "checkout_order", {})
    assert isinstance(outcome, tools.ToolEffect)  # the cart's drink still checks out


def test_menu_summary_lists_only_what_is_available() -> None:
    state = tools.initial_state(None, availability=SOLD_OUT)
    _, outcome = dispatch(state, "menu_summary", {})
    result = outcome.result
    assert result["flavors"] == ["black milk tea"]
    assert "egg pudding" not in result["toppings"] and "boba" in result["toppings"]
    assert result["sold_out"] == ["taro milk tea", "egg pudding"]
    assert "Sold out right now: taro milk tea and egg pudding." in result["summary"]
    assert ordering.menu_summary(MENU)["sold_out"] == []


def test_name_on_save_phone_and_checkout() -> None:
    state = tools.initial_state(None)
    state, _ = dispatch(state, "add_to_cart", {"flavor": "taro"})
    _, outcome = dispatch(state, "save_phone_number", {"phone": "4155552671", "name": "R2D2"})
    assert outcome.result == {"ok": False, "error": tools.NAME_REFUSAL}
    saved, outcome = dispatch(state, "save_phone_number", {"phone": "4155552671",
                                                            "name": " Ana  Lucia"})
    assert outcome.result == {"ok": True, "phone": "+14155552671", "name": "Ana Lucia"}
    after, outcome = dispatch(saved, "checkout_order", {"name": "Bo"})
    assert isinstance(outcome, tools.ToolEffect) and isinstance(outcome.effect, CommitOrder)
    draft = outcome.effect.draft
    assert draft.name == "Bo" and (draft.prep_minutes_per_drink, draft.prep_minutes_min) == (3, 5)
    order = Order(order_number="4782", status=OrderStatus.RECEIVED, phone=draft.phone,
                  items=draft.items, total_cents=draft.total_cents,
                  created_at="2026-11-25T07:05:11Z", name="Bo", ready_in_minutes=8)
    _, result = tools.complete_effect(MENU, after, "checkout_order",
                                      OrderCommitted(request_id="fc", order=order))
    assert result["ready_in_minutes"] == 8 and result["name"] == "Bo"
    _, bad = dispatch(saved, "checkout_order", {"name": "x" * 31})
    assert bad.result == {"ok": False, "error": tools.NAME_REFUSAL}


def test_transfer_only_when_enabled() -> None:
    off = tools.initial_state(None)
    _, outcome = dispatch(off, "transfer_to_staff", {})
    assert isinstance(outcome, tools.ToolReply) and not outcome.result["ok"]
    on = tools.initial_state(None, transfer_enabled=True)
    _, outcome = dispatch(on, "transfer_to_staff", {})
    assert outcome == tools.ToolTransfer({"ok": True, "transferring": True})


# --- how the agent speaks (the prompt) ------------------------------------------------------


def test_prompt_tells_digits_anything_else_total_and_wait() -> None:
    from boba_proto.menu import build_prompt

    prompt = build_prompt(MENU)
    assert "digit by digit" in prompt and '"4, 7, 8, 2"' in prompt
    assert '"Anything else?"' in prompt
    steps = prompt[prompt.index("HOW TO TAKE AN ORDER"):prompt.index("OTHER REQUESTS")]
    # "Anything else?" is asked before checkout_order is called.
    assert steps.index("Anything else?") < steps.index("checkout_order")
    checkout = steps[steps.index("call \ncheckout_order".replace(" \n", " ")):]
    assert "the total" in checkout and "ready_in_minutes" in checkout
    assert "first name for the cup" in prompt
    assert "sold out" in prompt


# --- properties over any instant --------------------------------------------------------------

from datetime import timedelta  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_DAY_HOURS = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 1439), st.integers(1, 1440)).filter(lambda r: r[0] != r[1] % 1440
                                                                  or r[1] == 1440),
)


@settings(max_examples=300, deadline=None)
@given(
    week=st.lists(_DAY_HOURS, min_size=7, max_size=7),
    moment=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(UTC)),
    zone=st.sampled_from([LA, ZoneInfo("Europe/Berlin"), ZoneInfo("Australia/Lord_Howe"), UTC]),
)
def test_the_next_opening_is_open_and_the_minute_before_it_is_not(
    week: list[tuple[int, int] | None], moment: datetime, zone: Any
) -> None:
    days = {d: DayHours(r[0], r[1]) for d, r in zip(
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), week, strict=True) if r is not None}
    hours = Hours(timezone="x", days=days)
    opening = next_opening(hours, zone, moment)
    if not days:
        assert opening is None and not open_at(hours, zone, moment)
        return
    assert opening is not None and opening.at > moment
    assert open_at(hours, zone, opening.at)
    assert opening.at - moment <= timedelta(days=8)
    if not open_at(hours, zone, moment):
        # Closed now: nothing in between is open (checked at the minute before it).
        before = opening.at - timedelta(minutes=1)
        assert before <= moment or not open_at(hours, zone, before)
