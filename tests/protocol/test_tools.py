"""The agent's functions (CONTRACT §5): a table of natural requests and their exact results,
the checkout and look-up effects, and fuzzing of the dispatcher with arbitrary JSON."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boba_proto import tools
from boba_proto.errors import LocalProtocolError
from boba_proto.menu import FUNCTIONS, Menu, parse_menu
from boba_proto.model import (
    CommitOrder,
    EffectFailed,
    LookupOrders,
    Order,
    OrderCommitted,
    OrdersFound,
    OrderStatus,
)
from boba_proto.ordering import INVALID_PHONE, menu_summary
from boba_proto.tools import ToolEffect, ToolEndCall, ToolReply, ToolState


def load_menu() -> Menu:
    text = files("boba_proto").joinpath("menu.toml").read_text("utf-8")
    return parse_menu(text, source="menu.toml")


MENU = load_menu()
CALLER = "+14155550100"

RESULT_KEYS = {
    "menu_summary": {"summary", "flavors", "toppings", "addons", "sweetness", "ice", "prices",
                     "sold_out"},
    "add_to_cart": {"staged", "pending_item"},
    "update_pending_item": {"pending_item"},
    "confirm_pending_to_cart": {"item", "cart_count"},
    "clear_pending_item": {"cleared"},
    "get_cart": {"items", "count", "total", "pending_item"},
    "remove_from_cart": {"removed", "cart_count"},
    "modify_cart_item": {"item"},
    "set_sweetness_ice": {"item"},
    "save_phone_number": {"phone"},
    "checkout_order": {"order_number", "items", "total", "phone"},
    "order_status": {"orders"},
    "order_is_placed": {"placed", "order_number"},
    "end_call": {"ending"},
    "transfer_to_staff": {"transferring"},
}
OPTIONAL_KEYS = {  # CONTRACT §12: present when a name was given / the store told the wait
    "save_phone_number": {"name"},
    "checkout_order": {"name", "ready_in_minutes"},
}


def item(flavor: str, toppings: list[str] = [], addons: list[str] = [],  # noqa: B006
         sweetness: str = "50%", ice: str = "regular ice", price: float = 5.5) -> dict[str, Any]:
    return {"flavor": flavor, "toppings": toppings, "addons": addons, "sweetness": sweetness,
            "ice": ice, "price": price}


TARO_BOBA = item("taro milk tea", ["boba"], price=6.25)
BLACK_FANCY = item("black milk tea", ["vanilla cream"], ["matcha stencil on top"], "50%",
                   "less ice", 6.75)

Call = tuple[str, Any]  # (function name, arguments as a dict or a raw string)


def run(calls: list[Call], state: ToolState | None = None) -> tuple[ToolState, Any]:
    """Dispatch each call in turn; returns the last state and outcome."""
    state = state if state is not None else tools.initial_state(CALLER, call_sid="CA1")
    outcome: Any = None
    for n, (name, args) in enumerate(calls):
        raw = args if isinstance(args, str) else json.dumps(args)
        state, outcome = tools.dispatch(MENU, state, name, raw, request_id=f"fc_{n}")
    return state, outcome


STAGED: list[Call] = [("add_to_cart", {"flavor": "taro", "toppings": ["tapioca"]})]
ONE: list[Call] = [*STAGED, ("confirm_pending_to_cart", {})]
PHONE: list[Call] = [("save_phone_number", {"phone": "(415) 555-2671"})]


def refused(sentence: str) -> dict[str, Any]:
    return {"ok": False, "error": sentence}


UNREADABLE = "Sorry, something went wrong on my side. Could you say that again?"

TABLE: list[tuple[str, list[Call], Call, dict[str, Any]]] = [
    # (id, earlier calls, the call, its exact result)
    ("menu", [], ("menu_summary", {}), menu_summary(MENU)),
    ("add with aliases", [], ("add_to_cart", {"flavor": "Taro", "toppings": ["tapioca"]}),
     {"ok": True, "staged": True, "pending_item": TARO_BOBA}),
    ("add every field", [],
     ("add_to_cart", {"flavor": "black milk tea", "toppings": ["foam"], "addons": ["matcha"],
                      "sweetness": "half sweet", "ice": "light ice"}),
     {"ok": True, "staged": True, "pending_item": BLACK_FANCY}),
    ("add pudding agar crystal", [],
     ("add_to_cart", {"flavor": "taro", "toppings": ["pudding", "agar"], "sweetness": "no sugar",
                      "ice": "no ice"}),
     {"ok": True, "staged": True, "pending_item": item(
         "taro milk tea", ["egg pudding", "crystal agar boba"], [], "0%", "no ice", 7.0)}),
    ("add off menu", [], ("add_to_cart", {"flavor": "mango green tea"}),
     refused('Sorry, we don\'t have "mango green tea". Our flavors are taro milk tea and black '
             "milk tea.")),
    ("add off-menu topping", [], ("add_to_cart", {"flavor": "taro", "toppings": ["cheese foam"]}),
     refused('Sorry, "cheese foam" isn\'t one of our toppings. Our toppings are boba, egg '
             "pudding, crystal agar boba and vanilla cream.")),
    ("add matcha without cream", [],
     ("add_to_cart", {"flavor": "taro", "addons": ["matcha stencil on top"]}),
     refused("The matcha stencil on top only comes with vanilla cream. Would you like vanilla "
             "cream added to the drink?")),
    ("add without flavor", [], ("add_to_cart", {"toppings": ["boba"]}),
     refused("I need the flavor for that.")),
    ("add over a staged drink", STAGED, ("add_to_cart", {"flavor": "black"}),
     refused("There's still a taro milk tea with boba, 50% sweet, regular ice waiting for your "
             "OK. Should I add that one to the order first?")),
    ("add past the limit", ONE * 10, ("add_to_cart", {"flavor": "black"}),
     refused("An order can have at most 10 drinks, and this one already has 10.")),
    ("update staged", STAGED, ("update_pending_item", {"sweetness": "75%", "toppings": []}),
     {"ok": True, "pending_item": item("taro milk tea", [], [], "75%")}),
    ("update nothing staged", [], ("update_pending_item", {"ice": "no ice"}),
     refused("There's no drink waiting for confirmation. What would you like to order?")),
    ("confirm", STAGED, ("confirm_pending_to_cart", {}),
     {"ok": True, "item": TARO_BOBA, "cart_count": 1}),
    ("confirm nothing", [], ("confirm_pending_to_cart", {}),
     refused("There's no drink waiting for confirmation. What would you like to order?")),
    ("clear", STAGED, ("clear_pending_item", {}), {"ok": True, "cleared": True}),
    ("empty cart", [], ("get_cart", {}),
     {"ok": True, "items": [], "count": 0, "total": 0.0, "pending_item": None}),
    ("cart and staged", [*ONE, *ONE, *STAGED], ("get_cart", {}),
     {"ok": True, "items": [TARO_BOBA, TARO_BOBA], "count": 2, "total": 12.5,
      "pending_item": TARO_BOBA}),
    ("remove", ONE, ("remove_from_cart", {"index": 0}),
     {"ok": True, "removed": TARO_BOBA, "cart_count": 0}),
    ("remove float index", ONE, ("remove_from_cart", {"index": 0.0}),
     {"ok": True, "removed": TARO_BOBA, "cart_count": 0}),
    ("remove out of range", ONE, ("remove_from_cart", {"index": 1}),
     refused("I can't find that drink: the order has 1 drink.")),
    ("remove from empty", [], ("remove_from_cart", {"index": 0}),
     refused("There are no drinks in the order yet.")),
    ("remove no index", ONE, ("remove_from_cart", {}),
     refused("I need the drink's position for that.")),
    ("remove string index", ONE, ("remove_from_cart", {"index": "first"}),
     refused("Which drink do you mean? Tell me its place in the order.")),
    ("modify", ONE, ("modify_cart_item", {"index": 0, "ice": "extra ice", "toppings": ["egg"]}),
     {"ok": True, "item": item("taro milk tea", ["egg pudding"], [], "50%", "extra ice", 6.25)}),
    ("sweetness of last", [*ONE, ("add_to_cart", {"flavor": "black"}),
                           ("confirm_pending_to_cart", {})],
     ("set_sweetness_ice", {"sweetness": "25%"}),
     {"ok": True, "item": item("black milk tea", [], [], "25%")}),
    ("ice by index", ONE, ("set_sweetness_ice", {"index": 0, "ice": "less"}),
     {"ok": True, "item": item("taro milk tea", ["boba"], [], "50%", "less ice", 6.25)}),
    ("sweetness off menu", ONE, ("set_sweetness_ice", {"sweetness": "extra sweet"}),
     refused('Sorry, "extra sweet" isn\'t a sweetness we make. We do 0%, 25%, 50%, 75% or '
             "100%.")),
    ("save phone", [], ("save_phone_number", {"phone": "415.555.2671"}),
     {"ok": True, "phone": "+14155552671"}),
    ("save bad phone", [], ("save_phone_number", {"phone": "555 1234"}), refused(INVALID_PHONE)),
    ("checkout empty", PHONE, ("checkout_order", {}),
     refused("There's nothing in the order yet. What would you like to drink?")),
    ("checkout no phone", ONE, ("checkout_order", {}),
     refused("What phone number should we text when your order is ready?")),
    ("checkout bad phone", ONE, ("checkout_order", {"phone": "12"}), refused(INVALID_PHONE)),
    ("not placed", [], ("order_is_placed", {}),
     {"ok": True, "placed": False, "order_number": None}),
    ("status bad number", [], ("order_status", {"order_number": "47"}),
     refused("Order numbers have four digits. Which number was it?")),
    ("unknown function", [], ("make_coffee", {}), refused("Sorry, I can't do that on this line.")),
    ("arguments not JSON", [], ("add_to_cart", "{flavor: taro"), refused(UNREADABLE)),
    ("arguments not an object", [], ("get_cart", "[1, 2]"), refused(UNREADABLE)),
    ("empty arguments string", [], ("get_cart", ""),
     {"ok": True, "items": [], "count": 0, "total": 0.0, "pending_item": None}),
    ("toppings as a string", [], ("add_to_cart", {"flavor": "taro", "toppings": "boba"}),
     refused("I didn't get the toppings. Could you say them again?")),
    ("flavor as a number", [], ("add_to_cart", {"flavor": 3}),
     refused("I didn't get the flavor. Could you say it again?")),
    ("null flavor", [], ("add_to_cart", {"flavor": None}),
     refused("I didn't get the flavor. Could you say it again?")),
    ("null in toppings", [], ("add_to_cart", {"flavor": "taro", "toppings": [None]}),
     refused("I didn't get the toppings. Could you say it again?")),
    ("huge flavor", [], ("add_to_cart", {"flavor": "taro " * 30}),
     refused("That flavor is too long for me. Could you say it more briefly?")),
    ("too many toppings", [], ("add_to_cart", {"flavor": "taro", "toppings": ["boba"] * 21}),
     refused("That's more toppings than one drink can take.")),
    ("extra keys ignored", [], ("add_to_cart", {"flavor": "taro", "size": "large",
                                                "toppings": ["boba"]}),
     {"ok": True, "staged": True, "pending_item": TARO_BOBA}),
]


@pytest.mark.parametrize(("setup", "call", "expected"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_function_table(setup: list[Call], call: Call, expected: dict[str, Any]) -> None:
    before, _ = run(setup)
    after, outcome = run([call], before)
    assert isinstance(outcome, ToolReply)
    assert outcome.result == expected
    if expected["ok"]:
        assert set(outcome.result) == {"ok"} | RESULT_KEYS[call[0]]
    else:
        assert after == before  # a refusal changes nothing
    msgspec.json.encode(outcome.result)  # JSON-able


def test_every_function_is_in_the_table() -> None:
    assert {row[2][0] for row in TABLE} | {"end_call", "transfer_to_staff"} >= set(RESULT_KEYS)
    assert [fn.name for fn in FUNCTIONS] == list(RESULT_KEYS)


def test_end_call_asks_to_hang_up() -> None:
    _, outcome = run([*ONE, ("end_call", {})])
    assert outcome == ToolEndCall({"ok": True, "ending": True})


# --- checkout ----------------------------------------------------------------------------


def committed(effect: CommitOrder, number: str = "4782") -> OrderCommitted:
    d = effect.draft
    order = Order(order_number=number, status=OrderStatus.RECEIVED, phone=d.phone,
                  items=d.items, total_cents=d.total_cents, created_at="2026-11-25T07:05:11Z",
                  call_sid=d.call_sid)
    return OrderCommitted(request_id=effect.request_id, order=order)


def test_checkout_confirms_the_staged_drink_and_commits_once() -> None:
    state, outcome = run([*ONE, *STAGED, ("checkout_order", {"phone": "415 555 2671"})])
    assert isinstance(outcome, ToolEffect)
    effect = outcome.effect
    assert isinstance(effect, CommitOrder)
    assert effect.request_id == "fc_3"
    assert effect.draft.phone == "+14155552671"
    assert len(effect.draft.items) == 2 and effect.draft.total_cents == 1250
    assert effect.draft.call_sid == "CA1"
    assert state.checkout_pending and state.cart.pending is not None  # not changed until commit

    # While the commit is in flight: no second order, no changes, no hang-up.
    busy = refused("One moment, I'm placing your order right now.")
    for call in [("checkout_order", {}), ("add_to_cart", {"flavor": "taro"}),
                 ("remove_from_cart", {"index": 0}), ("end_call", {})]:
        again, outcome = run([call], state)
        assert outcome == ToolReply(busy) and again == state
    assert run([("get_cart", {})], state)[1].result["count"] == 1

    state, result = tools.complete_effect(MENU, state, "checkout_order", committed(effect))
    expected = {"ok": True, "order_number": "4782", "items": [TARO_BOBA, TARO_BOBA],
                "total": 12.5, "phone": "+14155552671"}
    assert result == expected
    assert not state.checkout_pending and state.placed_order is not None
    assert state.cart.pending is None and state.cart.phone == "+14155552671"

    # A second checkout answers the same order at once, without a new effect.
    again, outcome = run([("checkout_order", {})], state)
    assert outcome == ToolReply(expected) and again == state
    assert run([("order_is_placed", {})], state)[1] == ToolReply(
        {"ok": True, "placed": True, "order_number": "4782"})
    # The placed order cannot be changed any more.
    for call in [("add_to_cart", {"flavor": "taro"}), ("save_phone_number", {"phone": CALLER})]:
        after, outcome = run([call], state)
        assert after == state
        assert outcome == ToolReply(refused(
            "Your order number 4782 is already placed, so I can't change it on this call."))


def test_checkout_uses_the_saved_phone() -> None:
    _, outcome = run([*ONE, *PHONE, ("checkout_order", {})])
    assert isinstance(outcome, ToolEffect)
    assert isinstance(outcome.effect, CommitOrder)
    assert outcome.effect.draft.phone == "+14155552671"


def test_a_failed_commit_keeps_the_cart_and_can_be_retried() -> None:
    before, _ = run([*ONE, *STAGED, *PHONE])
    state, outcome = run([("checkout_order", {})], before)
    failure = EffectFailed(request_id=outcome.effect.request_id, reason="store down")
    state, result = tools.complete_effect(MENU, state, "checkout_order", failure)
    assert result == refused(
        "I couldn't place the order just now. Your drinks are still here; shall I try again?")
    assert state == before
    state, outcome = run([("checkout_order", {})], state)
    assert isinstance(outcome, ToolEffect)


def test_misrouted_effect_results_are_our_fault() -> None:
    state, outcome = run([*ONE, *PHONE, ("checkout_order", {})])
    effect = outcome.effect
    with pytest.raises(LocalProtocolError):
        tools.complete_effect(MENU, state, "checkout_order",
                              EffectFailed(request_id="other", reason="x"))
    with pytest.raises(LocalProtocolError):
        tools.complete_effect(MENU, state, "checkout_order",
                              OrdersFound(request_id=effect.request_id, orders=()))
    with pytest.raises(LocalProtocolError):
        tools.complete_effect(MENU, state, "get_cart", committed(effect))
    with pytest.raises(LocalProtocolError):
        tools.complete_effect(MENU, ToolState(), "order_status",
                              OrdersFound(request_id="fc_0", orders=()))


# --- order status ------------------------------------------------------------------------


def order(number: str, phone: str, status: OrderStatus = OrderStatus.READY) -> Order:
    state, _ = run(ONE)
    return Order(order_number=number, status=status, phone=phone, items=state.cart.items,
                 total_cents=state.cart.total_cents, created_at="2026-11-25T07:05:11Z")


def test_order_status_looks_up_the_callers_and_saved_numbers_only() -> None:
    state, outcome = run([*PHONE, ("order_status", {"order_number": "#47 82"})])
    assert outcome == ToolEffect(LookupOrders(
        request_id="fc_1", phones=(CALLER, "+14155552671"), order_number="4782"))
    found = OrdersFound(request_id="fc_1", orders=(
        order("4782", CALLER), order("4782", "+12125550000"), order("1111", CALLER)))
    state, result = tools.complete_effect(MENU, state, "order_status", found)
    assert result == {"ok": True, "orders": [
        {"order_number": "4782", "status": "ready", "items": [TARO_BOBA], "total": 6.25}]}
    assert state.lookups == ()


def test_order_status_without_a_number_lists_this_callers_orders() -> None:
    state, outcome = run([("order_status", {})])
    assert outcome == ToolEffect(LookupOrders(request_id="fc_0", phones=(CALLER,)))
    found = OrdersFound(request_id="fc_0", orders=(
        order("1234", CALLER, OrderStatus.RECEIVED), order("9999", "+12125550000")))
    _, result = tools.complete_effect(MENU, state, "order_status", found)
    assert [o["order_number"] for o in result["orders"]] == ["1234"]  # type: ignore[index]
    assert result["orders"][0]["status"] == "received"  # type: ignore[index]


def test_order_status_failure_and_unknown_caller() -> None:
    state, _ = run([("order_status", {})])
    state, result = tools.complete_effect(
        MENU, state, "order_status", EffectFailed(request_id="fc_0", reason="timeout"))
    assert result == refused(
        "I couldn't look up your orders just now. Please try again in a minute.")
    anonymous = tools.initial_state("anonymous")
    assert anonymous.caller_phone is None
    assert run([("order_status", {})], anonymous)[1] == ToolReply(refused(
        "I can't see the number you're calling from. What phone number did you order with?"))


SAID = "+14155552671"  # what PHONE saves


def test_order_status_a_said_number_alone_reveals_nothing() -> None:
    """CONTRACT §5 (issue #13 point 2): a number the caller merely says matches only
    together with the order number of one of its orders."""
    anonymous = tools.initial_state("anonymous")
    state, outcome = run([*PHONE, ("order_status", {})], anonymous)
    assert isinstance(outcome, ToolReply) and outcome.result["ok"] is False
    assert "order number" in str(outcome.result["error"])
    assert state.lookups == ()
    # With a caller ID, the said number is not looked up without an order number.
    state, outcome = run([*PHONE, ("order_status", {})])
    assert outcome == ToolEffect(LookupOrders(request_id="fc_1", phones=(CALLER,)))
    # Whatever the store answers, the said number's orders stay out.
    found = OrdersFound(request_id="fc_1", orders=(order("1234", CALLER), order("4782", SAID)))
    _, result = tools.complete_effect(MENU, state, "order_status", found)
    assert [o["order_number"] for o in result["orders"]] == ["1234"]


def test_order_status_said_number_with_its_order_number_returns_that_order() -> None:
    anonymous = tools.initial_state("anonymous")
    state, outcome = run([*PHONE, ("order_status", {"order_number": "4782"})], anonymous)
    assert outcome == ToolEffect(LookupOrders(
        request_id="fc_1", phones=(SAID,), order_number="4782"))
    found = OrdersFound(request_id="fc_1", orders=(order("4782", SAID), order("1111", SAID)))
    _, result = tools.complete_effect(MENU, state, "order_status", found)
    assert [o["order_number"] for o in result["orders"]] == ["4782"]


def test_order_status_includes_the_order_placed_in_this_call() -> None:
    anonymous = tools.initial_state("anonymous")
    placed = order("4782", SAID, OrderStatus.RECEIVED)
    state = msgspec.structs.replace(anonymous, placed_order=placed)
    state, outcome = run([("order_status", {})], state)
    assert outcome == ToolEffect(LookupOrders(request_id="fc_0", phones=(SAID,)))
    found = OrdersFound(request_id="fc_0", orders=(placed, order("1111", SAID)))
    _, result = tools.complete_effect(MENU, state, "order_status", found)
    assert [o["order_number"] for o in result["orders"]] == ["4782"]


def test_initial_state_normalises_the_caller() -> None:
    assert tools.initial_state("+1 (415) 555-0100").caller_phone == CALLER
    assert tools.initial_state("client:browser").caller_phone is None
    assert tools.initial_state(None).caller_phone is None


# --- fuzzing -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=8,
)
HUGE = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(0, 3000))
NAMES = st.sampled_from(["taro", "boba", "foam", "matcha", "50%", "no ice", "black",
                         "4155552671", "4782", "nonsense", ""])
FIELD = (
    JSON | NAMES | HUGE | st.lists(NAMES, max_size=25) | st.lists(JSON, max_size=3)
    | st.integers(-3, 12)
)
ARGS = (
    st.fixed_dictionaries({}, optional={k: FIELD for k in (
        "flavor", "toppings", "addons", "sweetness", "ice", "index", "phone", "order_number",
        "extra")}).map(json.dumps)
    | JSON.map(json.dumps)
    | st.text(max_size=50)
    | HUGE
)
FUNCTION_NAMES = st.sampled_from(list(RESULT_KEYS)) | st.text(max_size=20)


def check_result(name: str, result: dict[str, Any]) -> None:
    msgspec.json.encode(result)
    assert result["ok"] in (True, False)
    if result["ok"]:
        required = {"ok"} | RESULT_KEYS[name]
        assert required <= set(result) <= required | OPTIONAL_KEYS.get(name, set())
    else:
        assert set(result) == {"ok", "error"}
        sentence = result["error"]
        assert isinstance(sentence, str) and sentence[:1].isupper()
        assert sentence.endswith((".", "?", "!")), sentence


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(calls=st.lists(st.tuples(FUNCTION_NAMES, ARGS), max_size=8), data=st.data())
def test_dispatch_never_raises_and_always_answers(
    calls: list[tuple[str, str]], data: st.DataObject
) -> None:
    start, _ = run(ONE)
    state = start
    for n, (name, arguments) in enumerate(calls):
        before = state
        state, outcome = tools.dispatch(MENU, state, name, arguments, request_id=f"fc_{n}")
        if isinstance(outcome, ToolEffect):
            assert name in ("checkout_order", "order_status")
            effect = outcome.effect
            if data.draw(st.booleans(), label="effect fails"):
                answer: Any = EffectFailed(request_id=effect.request_id, reason="fuzz")
            elif isinstance(effect, CommitOrder):
                answer = committed(effect, number=f"{n:04d}")
            else:
                answer = OrdersFound(request_id=effect.request_id, orders=(order("0001", CALLER),))
            state, result = tools.complete_effect(MENU, state, name, answer)
            check_result(name, result)
            continue
        assert isinstance(outcome, ToolReply | ToolEndCall)
        check_result(name if name in RESULT_KEYS else "", outcome.result)
        if not outcome.result["ok"]:
            assert state == before
        if isinstance(outcome, ToolEndCall):
            assert name == "end_call"
    # Money stays consistent whatever happened.
    assert state.cart.total_cents == sum(d.price_cents for d in state.cart.items)
    assert len(state.cart.items) <= MENU.max_drinks
