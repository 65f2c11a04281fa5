"""Ordering rules as pure functions: pricing, defaults, the staged drink, the cart, limits,
phone numbers. A refusal always leaves the cart exactly as it was."""

from __future__ import annotations

from importlib.resources import files

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boba_proto import ordering
from boba_proto.menu import Menu, parse_menu
from boba_proto.model import Drink, drink_to_json
from boba_proto.ordering import Cart, DrinkRequest


@pytest.fixture(scope="module")
def menu() -> Menu:
    text = files("boba_proto").joinpath("menu.toml").read_text("utf-8")
    return parse_menu(text, source="menu.toml")


def drink(menu: Menu, **fields: object) -> Drink:
    built = ordering.build_drink(menu, DrinkRequest(**fields), None)  # type: ignore[arg-type]
    assert isinstance(built, Drink), built
    return built


def cart_of(menu: Menu, n: int) -> Cart:
    return Cart(items=tuple(drink(menu, flavor="taro") for _ in range(n)))


def test_defaults_and_price_of_a_plain_drink(menu: Menu) -> None:
    assert drink(menu, flavor="Taro Milk Tea") == Drink(
        flavor="taro milk tea", toppings=(), addons=(), sweetness="50%", ice="regular ice",
        price_cents=550,
    )


@pytest.mark.parametrize(
    ("toppings", "addons", "cents"),
    [
        ((), (), 550),
        (("boba",), (), 625),  # the contract's example: $6.25
        (("boba", "egg pudding"), (), 700),
        (("vanilla cream",), ("matcha",), 675),
        (("boba", "egg pudding", "crystal agar boba", "vanilla cream"), ("matcha",), 900),
    ],
)
def test_prices_are_integer_cents(
    menu: Menu, toppings: tuple[str, ...], addons: tuple[str, ...], cents: int
) -> None:
    built = drink(menu, flavor="black milk tea", toppings=toppings, addons=addons)
    assert built.price_cents == cents


def test_repeated_toppings_count_once_in_the_callers_order(menu: Menu) -> None:
    built = drink(menu, flavor="taro", toppings=("pearls", "pudding", "tapioca", "boba"))
    assert built.toppings == ("boba", "egg pudding")
    assert built.price_cents == 700


REFUSALS = [
    (dict(toppings=("boba",)), "Which flavor would you like? We have taro milk tea and "
     "black milk tea."),
    (dict(flavor="mango"), 'Sorry, we don\'t have "mango". Our flavors are taro milk tea and '
     "black milk tea."),
    (dict(flavor="taro", toppings=("boba", "cheese foam")),
     "Sorry, \"cheese foam\" isn't one of our toppings. Our toppings are boba, egg pudding, "
     "crystal agar boba and vanilla cream."),
    (dict(flavor="taro", addons=("sprinkles",)),
     "Sorry, \"sprinkles\" isn't one of our add-ons. Our add-ons are matcha stencil on top."),
    (dict(flavor="taro", sweetness="60%"),
     "Sorry, \"60%\" isn't a sweetness we make. We do 0%, 25%, 50%, 75% or 100%."),
    (dict(flavor="taro", ice="hot"),
     "Sorry, \"hot\" isn't an ice level we do. We do no ice, less ice, regular ice or extra ice."),
    (dict(flavor="taro", toppings=("boba",), addons=("matcha",)),
     "The matcha stencil on top only comes with vanilla cream. Would you like vanilla cream "
     "added to the drink?"),
]


@pytest.mark.parametrize(("fields", "sentence"), REFUSALS)
def test_invalid_drinks_are_refused_with_a_sentence(
    menu: Menu, fields: dict[str, object], sentence: str
) -> None:
    cart = Cart()
    new, result = ordering.stage_drink(menu, cart, DrinkRequest(**fields))  # type: ignore[arg-type]
    assert result == {"ok": False, "error": sentence}
    assert new is cart


def test_stage_confirm_and_the_cart(menu: Menu) -> None:
    cart, result = ordering.stage_drink(
        menu, Cart(), DrinkRequest(flavor="taro", toppings=("boba",), sweetness="25%")
    )
    assert result["staged"] is True and result["ok"] is True
    assert result["pending_item"] == {
        "flavor": "taro milk tea", "toppings": ["boba"], "addons": [], "sweetness": "25%",
        "ice": "regular ice", "price": 6.25,
    }
    assert cart.items == () and cart.pending is not None
    cart, result = ordering.update_pending(menu, cart, DrinkRequest(ice="no ice"))
    assert result["pending_item"]["ice"] == "no ice"  # type: ignore[index]
    assert result["pending_item"]["sweetness"] == "25%"  # type: ignore[index]
    cart, result = ordering.confirm_pending(menu, cart)
    assert result["cart_count"] == 1 and cart.pending is None
    summary = ordering.cart_summary(cart)
    assert summary == {"ok": True, "items": [result["item"]], "count": 1, "total": 6.25,
                       "pending_item": None}


def test_a_second_drink_is_not_staged_over_an_unconfirmed_one(menu: Menu) -> None:
    cart, _ = ordering.stage_drink(menu, Cart(), DrinkRequest(flavor="taro"))
    again, result = ordering.stage_drink(menu, cart, DrinkRequest(flavor="black"))
    assert again is cart
    assert result == {
        "ok": False,
        "error": "There's still a taro milk tea, 50% sweet, regular ice waiting for your OK. "
        "Should I add that one to the order first?",
    }


def test_nothing_staged(menu: Menu) -> None:
    sentence = "There's no drink waiting for confirmation. What would you like to order?"
    assert ordering.confirm_pending(menu, Cart())[1] == {"ok": False, "error": sentence}
    assert ordering.update_pending(menu, Cart(), DrinkRequest(ice="no ice"))[1] == {
        "ok": False, "error": sentence,
    }
    assert ordering.clear_pending(Cart()) == (Cart(), {"ok": True, "cleared": True})


def test_the_drink_limit_counts_confirmed_drinks(menu: Menu) -> None:
    nine = cart_of(menu, 9)
    cart, result = ordering.stage_drink(menu, nine, DrinkRequest(flavor="taro"))
    cart, result = ordering.confirm_pending(menu, cart)
    assert result["cart_count"] == 10
    sentence = "An order can have at most 10 drinks, and this one already has 10."
    assert ordering.stage_drink(menu, cart, DrinkRequest(flavor="taro")) == (
        cart, {"ok": False, "error": sentence},
    )
    # A drink staged before the cart filled up cannot be confirmed past the limit.
    full_with_pending = Cart(items=cart.items, pending=drink(menu, flavor="black"))
    assert ordering.confirm_pending(menu, full_with_pending) == (
        full_with_pending, {"ok": False, "error": sentence},
    )


def test_modify_keeps_fields_not_given_and_reprices(menu: Menu) -> None:
    cart = Cart(items=(drink(menu, flavor="taro", toppings=("vanilla cream",),
                             addons=("matcha",), ice="less ice"),))
    cart2, result = ordering.modify_item(
        menu, cart, 0, DrinkRequest(flavor="black", toppings=("vanilla cream", "boba"))
    )
    assert result["item"] == {
        "flavor": "black milk tea", "toppings": ["vanilla cream", "boba"],
        "addons": ["matcha stencil on top"], "sweetness": "50%", "ice": "less ice",
        "price": 7.50,
    }
    # Removing the cream the matcha stencil needs is refused, and nothing changes.
    same, refused = ordering.modify_item(menu, cart2, 0, DrinkRequest(toppings=()))
    assert same is cart2 and refused["ok"] is False


def test_set_sweetness_ice_defaults_to_the_last_drink(menu: Menu) -> None:
    cart = Cart(items=(drink(menu, flavor="taro"), drink(menu, flavor="black")))
    new, result = ordering.set_sweetness_ice(menu, cart, None, "no sugar", None)
    assert new.items[0] == cart.items[0]
    assert new.items[1].sweetness == "0%" and new.items[1].flavor == "black milk tea"
    assert result == {"ok": True, "item": drink_to_json(new.items[1])}
    new, result = ordering.set_sweetness_ice(menu, cart, 0, None, "light ice")
    assert new.items[0].ice == "less ice"
    assert ordering.set_sweetness_ice(menu, cart, 0, None, None)[1] == {
        "ok": False, "error": "What sweetness or ice level would you like?",
    }
    assert ordering.set_sweetness_ice(menu, Cart(), None, "0%", None)[1] == {
        "ok": False, "error": "There are no drinks in the order yet.",
    }


def test_remove_and_bad_indexes(menu: Menu) -> None:
    cart = Cart(items=(drink(menu, flavor="taro"), drink(menu, flavor="black")))
    new, result = ordering.remove_item(cart, 0)
    assert new.items == cart.items[1:]
    assert result == {"ok": True, "removed": drink_to_json(cart.items[0]),
                      "cart_count": 1}
    for index in (2, -1, 99):
        assert ordering.remove_item(cart, index) == (
            cart, {"ok": False, "error": "I can't find that drink: the order has 2 drinks."},
        )
    assert ordering.remove_item(Cart(), 0)[1]["error"] == "There are no drinks in the order yet."


PHONES = [
    ("415 555 2671", "+14155552671"),
    ("(415) 555-2671", "+14155552671"),
    ("4 1 5 5 5 5 2 6 7 1", "+14155552671"),  # keyed in
    ("+1 415-555-2671", "+14155552671"),
    ("1-415-555-2671", "+14155552671"),
    ("+44 20 7946 0958", "+442079460958"),
    ("555 2671", None),  # no area code
    ("123", None),
    ("415 555 26711234", None),
    ("call me maybe", None),
    ("", None),
    ("+1 000 000 0000", None),
    ("4" * 100, None),
]


@pytest.mark.parametrize(("text", "e164"), PHONES)
def test_phone_numbers_become_e164_or_are_refused(text: str, e164: str | None) -> None:
    assert ordering.normalize_phone(text) == e164
    cart = Cart()
    new, result = ordering.save_phone(cart, text)
    if e164 is None:
        assert new is cart
        assert result == {"ok": False, "error": ordering.INVALID_PHONE}
    else:
        assert new.phone == e164 and result == {"ok": True, "phone": e164}


def test_menu_summary_has_exactly_the_contract_keys(menu: Menu) -> None:
    result = ordering.menu_summary(menu)
    assert set(result) == {"ok", "summary", "flavors", "toppings", "addons", "sweetness",
                           "ice", "prices", "sold_out"}  # CONTRACT §12 adds `sold_out`
    assert result["sold_out"] == []
    assert result["prices"] == {"drink": 5.5, "topping": 0.75, "addon": 0.5}
    assert isinstance(result["summary"], str)
    assert "taro milk tea" in result["summary"] and "only with vanilla cream" in result["summary"]


@given(
    toppings=st.lists(st.sampled_from(["boba", "egg pudding", "crystal agar boba",
                                       "vanilla cream"]), max_size=6),
    matcha=st.booleans(),
)
def test_price_is_base_plus_extras(toppings: list[str], matcha: bool) -> None:
    text = files("boba_proto").joinpath("menu.toml").read_text("utf-8")
    menu = parse_menu(text, source="menu.toml")
    if matcha:
        toppings = [*toppings, "vanilla cream"]
    built = ordering.build_drink(
        menu,
        DrinkRequest(flavor="taro", toppings=tuple(toppings),
                     addons=("matcha",) if matcha else ()),
        None,
    )
    assert isinstance(built, Drink)
    assert built.price_cents == 550 + 75 * len(set(toppings)) + (50 if matcha else 0)
