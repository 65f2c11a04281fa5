"""Drinks, the staged drink, the cart: validation and pricing as pure functions.

Every operation takes the current :class:`Cart` and a request and returns the next cart and
a JSON-able result dict. A rule violation is a result with ``ok: False`` and ``error``, a
sentence the agent can read to the caller, and the cart comes back unchanged; nothing here
raises for a caller's mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Final

import msgspec
import phonenumbers

from boba_proto.menu import Menu
from boba_proto.model import Drink, cents_to_dollars, drink_to_json, format_dollars
from boba_proto.shop import Availability

__all__ = [
    "Cart",
    "DrinkRequest",
    "Result",
    "cart_summary",
    "clear_pending",
    "confirm_pending",
    "describe_drink",
    "menu_summary",
    "modify_item",
    "normalize_phone",
    "refuse",
    "remove_item",
    "save_phone",
    "set_sweetness_ice",
    "sms_region_problem",
    "spoken_list",
    "stage_drink",
    "update_pending",
]

Result = dict[str, object]

PHONE_REGION: Final = "US"
MAX_PHONE_TEXT: Final = 40


class Cart(msgspec.Struct, frozen=True, kw_only=True):
    """One call's order in progress: confirmed drinks, the staged drink, the saved phone."""

    items: tuple[Drink, ...] = ()
    pending: Drink | None = None
    phone: str | None = None  # E.164, only ever set from a validated number
    name: str | None = None  # the first name for the cup, only ever set once validated

    @property
    def total_cents(self) -> int:
        return sum(d.price_cents for d in self.items)


class DrinkRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the caller asked for, in their words; None means "not mentioned, keep it"."""

    flavor: str | None = None
    toppings: tuple[str, ...] | None = None
    addons: tuple[str, ...] | None = None
    sweetness: str | None = None
    ice: str | None = None


def refuse(sentence: str) -> Result:
    return {"ok": False, "error": sentence}


def spoken_list(names: tuple[str, ...] | list[str], conjunction: str = "and") -> str:
    """ "a", "a and b", "a, b and c": how a list sounds when read out."""
    if not names:
        return "nothing"
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def describe_drink(drink: Drink) -> str:
    """A short spoken description, for sentences that mention a drink."""
    extras = [*drink.toppings, *drink.addons]
    with_part = f" with {spoken_list(extras)}" if extras else ""
    return f"{drink.flavor}{with_part}, {drink.sweetness} sweet, {drink.ice}"


def _quoted(text: str) -> str:
    return '"' + " ".join(text.split())[:60] + '"'


# --- building a drink --------------------------------------------------------------------


NO_AVAILABILITY: Final = Availability()


def _available(names: tuple[str, ...], sold_out: frozenset[str]) -> tuple[str, ...]:
    return tuple(n for n in names if n not in sold_out)


def _sold_out_sentence(name: str, others: tuple[str, ...], noun: str) -> str:
    """"Sorry, the taro milk tea is sold out right now. We still have black milk tea." """
    rest = f" We still have {spoken_list(others)}, if you'd like {noun}." if others else ""
    return f"Sorry, the {name} is sold out right now.{rest}"


def build_drink(
    menu: Menu,
    request: DrinkRequest,
    base: Drink | None,
    availability: Availability = NO_AVAILABILITY,
) -> Drink | str:
    """`base` with the fields `request` gives, validated and priced; or a refusal sentence.

    A flavor, topping or add-on the request names that is sold out (`availability`) is
    refused, naming it (CONTRACT §12); what `base` already has stays valid.
    """
    if request.flavor is not None:
        flavor = menu.match_flavor(request.flavor)
        if flavor is None:
            return (
                f"Sorry, we don't have {_quoted(request.flavor)}. "
                f"Our flavors are {spoken_list(_available(menu.flavors, availability.flavors))}."
            )
        if flavor in availability.flavors and (base is None or base.flavor != flavor):
            others = _available(menu.flavors, availability.flavors)
            return _sold_out_sentence(flavor, others, "one of those")
    elif base is not None:
        flavor = base.flavor
    else:
        return f"Which flavor would you like? We have {spoken_list(menu.flavors)}."

    toppings = _extras(
        request.toppings, base.toppings if base is not None else (), menu.match_topping,
        menu.toppings, "toppings",
    )
    if isinstance(toppings, str):
        return toppings
    addons = _extras(
        request.addons, base.addons if base is not None else (), menu.match_addon,
        menu.addons, "add-ons",
    )
    if isinstance(addons, str):
        return addons
    had = (*base.toppings, *base.addons) if base is not None else ()
    for names, sold_out, all_names, noun in (
        (toppings, availability.toppings, menu.toppings, "another topping"),
        (addons, availability.addons, menu.addons, "another add-on"),
    ):
        for name in names:
            if name in sold_out and name not in had:
                return _sold_out_sentence(name, _available(all_names, sold_out), noun)

    sweetness = base.sweetness if base is not None else menu.default_sweetness
    if request.sweetness is not None:
        found = menu.match_sweetness(request.sweetness)
        if found is None:
            return (
                f"Sorry, {_quoted(request.sweetness)} isn't a sweetness we make. "
                f"We do {spoken_list(menu.sweetness_levels, 'or')}."
            )
        sweetness = found

    ice = base.ice if base is not None else menu.default_ice
    if request.ice is not None:
        found = menu.match_ice(request.ice)
        if found is None:
            return (
                f"Sorry, {_quoted(request.ice)} isn't an ice level we do. "
                f"We do {spoken_list(menu.ice_levels, 'or')}."
            )
        ice = found

    for addon in addons:
        needed = menu.addon_requires.get(addon)
        if needed is not None and needed not in toppings:
            return (
                f"The {addon} only comes with {needed}. "
                f"Would you like {needed} added to the drink?"
            )
    return Drink(
        flavor=flavor,
        toppings=toppings,
        addons=addons,
        sweetness=sweetness,
        ice=ice,
        price_cents=menu.drink_price(len(toppings), len(addons)),
    )


def _extras(
    said: tuple[str, ...] | None,
    current: tuple[str, ...],
    match: Callable[[str], str | None],
    available: tuple[str, ...],
    noun: str,
) -> tuple[str, ...] | str:
    """The toppings or add-ons a drink gets (`current` when none were said), or a refusal
    sentence naming the first one not on the menu."""
    if said is None:
        return current
    matched = _match_all(said, match)
    if not isinstance(matched, str):
        return matched
    have = (
        f"Our {noun} are {spoken_list(available)}." if available else f"We don't have any {noun}."
    )
    return f"Sorry, {_quoted(matched)} isn't one of our {noun}. {have}"


def _match_all(
    texts: tuple[str, ...], match: Callable[[str], str | None]
) -> tuple[str, ...] | str:
    """Canonical names in the caller's order without repeats, or the first text not matched."""
    out: list[str] = []
    for text in texts:
        name = match(text)
        if name is None:
            return text
        if name not in out:
            out.append(name)
    return tuple(out)


# --- the staged drink --------------------------------------------------------------------


def _full(menu: Menu, cart: Cart) -> str | None:
    if len(cart.items) >= menu.max_drinks:
        return (
            f"An order can have at most {menu.max_drinks} drinks, and this one already has "
            f"{len(cart.items)}."
        )
    return None


def stage_drink(
    menu: Menu, cart: Cart, request: DrinkRequest, availability: Availability = NO_AVAILABILITY
) -> tuple[Cart, Result]:
    """add_to_cart: stage one drink for the caller to confirm; it is not in the cart yet."""
    if cart.pending is not None:
        return cart, refuse(
            f"There's still a {describe_drink(cart.pending)} waiting for your OK. "
            "Should I add that one to the order first?"
        )
    if (full := _full(menu, cart)) is not None:
        return cart, refuse(full)
    drink = build_drink(menu, request, None, availability)
    if isinstance(drink, str):
        return cart, refuse(drink)
    return (
        msgspec.structs.replace(cart, pending=drink),
        {"ok": True, "staged": True, "pending_item": drink_to_json(drink)},
    )


_NOTHING_STAGED: Final = "There's no drink waiting for confirmation. What would you like to order?"


def update_pending(
    menu: Menu, cart: Cart, request: DrinkRequest, availability: Availability = NO_AVAILABILITY
) -> tuple[Cart, Result]:
    if cart.pending is None:
        return cart, refuse(_NOTHING_STAGED)
    drink = build_drink(menu, request, cart.pending, availability)
    if isinstance(drink, str):
        return cart, refuse(drink)
    return msgspec.structs.replace(cart, pending=drink), {
        "ok": True,
        "pending_item": drink_to_json(drink),
    }


def confirm_pending(menu: Menu, cart: Cart) -> tuple[Cart, Result]:
    if cart.pending is None:
        return cart, refuse(_NOTHING_STAGED)
    if (full := _full(menu, cart)) is not None:
        return cart, refuse(full)
    drink = cart.pending
    new = msgspec.structs.replace(cart, items=(*cart.items, drink), pending=None)
    return new, {"ok": True, "item": drink_to_json(drink), "cart_count": len(new.items)}


def clear_pending(cart: Cart) -> tuple[Cart, Result]:
    """Idempotent: clearing when nothing is staged is not the caller's mistake."""
    return msgspec.structs.replace(cart, pending=None), {"ok": True, "cleared": True}


# --- the cart ----------------------------------------------------------------------------


def cart_summary(cart: Cart) -> Result:
    return {
        "ok": True,
        "items": [drink_to_json(d) for d in cart.items],
        "count": len(cart.items),
        "total": cents_to_dollars(cart.total_cents),
        "pending_item": drink_to_json(cart.pending) if cart.pending is not None else None,
    }


def _check_index(cart: Cart, index: int) -> str | None:
    if not cart.items:
        return "There are no drinks in the order yet."
    if not 0 <= index < len(cart.items):
        count = len(cart.items)
        drinks = "drink" if count == 1 else "drinks"
        return f"I can't find that drink: the order has {count} {drinks}."
    return None


def remove_item(cart: Cart, index: int) -> tuple[Cart, Result]:
    if (problem := _check_index(cart, index)) is not None:
        return cart, refuse(problem)
    removed = cart.items[index]
    new = msgspec.structs.replace(cart, items=cart.items[:index] + cart.items[index + 1 :])
    return new, {"ok": True, "removed": drink_to_json(removed), "cart_count": len(new.items)}


def modify_item(
    menu: Menu,
    cart: Cart,
    index: int,
    request: DrinkRequest,
    availability: Availability = NO_AVAILABILITY,
) -> tuple[Cart, Result]:
    if (problem := _check_index(cart, index)) is not None:
        return cart, refuse(problem)
    drink = build_drink(menu, request, cart.items[index], availability)
    if isinstance(drink, str):
        return cart, refuse(drink)
    items = (*cart.items[:index], drink, *cart.items[index + 1 :])
    return msgspec.structs.replace(cart, items=items), {"ok": True, "item": drink_to_json(drink)}


def set_sweetness_ice(
    menu: Menu, cart: Cart, index: int | None, sweetness: str | None, ice: str | None
) -> tuple[Cart, Result]:
    """Sweetness and/or ice of one drink in the cart; without `index`, the last one."""
    if sweetness is None and ice is None:
        return cart, refuse("What sweetness or ice level would you like?")
    if index is None:
        if not cart.items:
            return cart, refuse("There are no drinks in the order yet.")
        index = len(cart.items) - 1
    return modify_item(menu, cart, index, DrinkRequest(sweetness=sweetness, ice=ice))


# --- the phone number --------------------------------------------------------------------


def normalize_phone(text: str, region: str = PHONE_REGION) -> str | None:
    """E.164 for a valid number (national numbers read as `region`), else None."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_PHONE_TEXT:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


INVALID_PHONE: Final = (
    "That doesn't sound like a valid phone number. Could you say it again, with the area code?"
)


_COUNTRY_NAMES: Final = MappingProxyType({
    "US": "the US", "CA": "Canada", "GB": "the UK", "AU": "Australia", "NZ": "New Zealand",
    "IE": "Ireland", "DE": "Germany", "FR": "France", "ES": "Spain", "IT": "Italy",
    "NL": "the Netherlands", "MX": "Mexico", "JP": "Japan", "SG": "Singapore",
})


def _countries_spoken(regions: tuple[str, ...]) -> str:
    names = [_COUNTRY_NAMES.get(code, code) for code in regions]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def sms_region_problem(phone: str, regions: tuple[str, ...]) -> str | None:
    """A sentence refusing `phone` (E.164) when the shop does not text its country
    (`BOBA_SMS_COUNTRIES`: texts abroad are how SMS-pumping fraud bills a shop); else None.
    An empty `regions` allows every country."""
    if not regions:
        return None
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        region = None
    if region in regions:
        return None
    return (
        f"Sorry, we can only text phone numbers in {_countries_spoken(regions)}. "
        "Is there a number there we can text when your order is ready?"
    )


def save_phone(
    cart: Cart, text: str, sms_regions: tuple[str, ...] = ()
) -> tuple[Cart, Result]:
    phone = normalize_phone(text)
    if phone is None:
        return cart, refuse(INVALID_PHONE)
    problem = sms_region_problem(phone, sms_regions)
    if problem is not None:
        return cart, refuse(problem)
    return msgspec.structs.replace(cart, phone=phone), {"ok": True, "phone": phone}


# --- the menu ----------------------------------------------------------------------------


def menu_summary(menu: Menu, availability: Availability = NO_AVAILABILITY) -> Result:
    """The menu as the caller can order it now: sold-out items only under `sold_out`."""
    flavors = _available(menu.flavors, availability.flavors)
    toppings = _available(menu.toppings, availability.toppings)
    addons = _available(menu.addons, availability.addons)
    sold_out = availability.all_sold_out()
    parts = [f"We have {spoken_list(flavors)}, {format_dollars(menu.drink_price_cents)} each."]
    if toppings:
        parts.append(
            f"Toppings are {format_dollars(menu.topping_price_cents)} each: "
            f"{spoken_list(toppings)}."
        )
    for addon in addons:
        needs = menu.addon_requires.get(addon)
        rule = f", only with {needs}" if needs else ""
        parts.append(
            f"You can add {addon} for {format_dollars(menu.addon_price_cents)}{rule}."
        )
    parts.append(
        f"Sweetness can be {spoken_list(menu.sweetness_levels, 'or')} "
        f"({menu.default_sweetness} unless you say otherwise), and ice can be "
        f"{spoken_list(menu.ice_levels, 'or')} ({menu.default_ice} unless you say otherwise)."
    )
    if sold_out:
        parts.append(f"Sold out right now: {spoken_list(sold_out)}.")
    return {
        "ok": True,
        "summary": " ".join(parts),
        "flavors": list(flavors),
        "toppings": list(toppings),
        "addons": list(addons),
        "sold_out": sold_out,
        "sweetness": list(menu.sweetness_levels),
        "ice": list(menu.ice_levels),
        "prices": {
            "drink": cents_to_dollars(menu.drink_price_cents),
            "topping": cents_to_dollars(menu.topping_price_cents),
            "addon": cents_to_dollars(menu.addon_price_cents),
        },
    }
