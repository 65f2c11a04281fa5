"""The menu as data: the built-in TOML, refusals of malformed menus, matching, and what is
generated from it (prompt, function schemas)."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boba_proto.errors import MenuError
from boba_proto.menu import (
    FUNCTIONS,
    MAX_PROMPT_CHARS,
    Menu,
    build_prompt,
    function_specs,
    parse_menu,
)


def builtin_text() -> str:
    return files("boba_proto").joinpath("menu.toml").read_text("utf-8")


@pytest.fixture(scope="module")
def menu() -> Menu:
    return parse_menu(builtin_text(), source="menu.toml")


def test_builtin_menu_is_contract_section_4(menu: Menu) -> None:
    assert menu.flavors == ("taro milk tea", "black milk tea")
    assert menu.toppings == ("boba", "egg pudding", "crystal agar boba", "vanilla cream")
    assert menu.addons == ("matcha stencil on top",)
    assert menu.sweetness_levels == ("0%", "25%", "50%", "75%", "100%")
    assert menu.default_sweetness == "50%"
    assert menu.ice_levels == ("no ice", "less ice", "regular ice", "extra ice")
    assert menu.default_ice == "regular ice"
    assert (menu.drink_price_cents, menu.topping_price_cents, menu.addon_price_cents) == (
        550, 75, 50,
    )
    assert menu.max_drinks == 10
    assert menu.addon_requires == {"matcha stencil on top": "vanilla cream"}


def test_bytes_and_text_parse_the_same(menu: Menu) -> None:
    assert parse_menu(builtin_text().encode(), source="menu.toml") == menu


# --- matching ----------------------------------------------------------------------------

CONTRACT_ALIASES = [
    ("topping", "tapioca", "boba"),
    ("topping", "pearls", "boba"),
    ("topping", "pudding", "egg pudding"),
    ("topping", "agar", "crystal agar boba"),
    ("topping", "crystal", "crystal agar boba"),
    ("topping", "foam", "vanilla cream"),
    ("topping", "cream", "vanilla cream"),
    ("addon", "matcha", "matcha stencil on top"),
    ("sweetness", "half sweet", "50%"),
    ("sweetness", "no sugar", "0%"),
    ("ice", "light ice", "less ice"),
]

CANONICAL_AND_CASE = [
    ("flavor", "Taro Milk Tea", "taro milk tea"),
    ("flavor", "  BLACK   milk tea ", "black milk tea"),
    ("topping", "Egg Pudding", "egg pudding"),
    ("topping", "crystal agar boba", "crystal agar boba"),
    ("topping", "TAPIOCA", "boba"),
    ("addon", "Matcha Stencil On Top", "matcha stencil on top"),
    ("sweetness", "50%", "50%"),
    ("sweetness", "50", "50%"),
    ("sweetness", "75 percent", "75%"),
    ("sweetness", "100 %", "100%"),
    ("ice", "No Ice", "no ice"),
    ("ice", "extra ice", "extra ice"),
]

NATURAL = [
    ("flavor", "taro", "taro milk tea"),
    ("flavor", "black", "black milk tea"),
    ("flavor", "a taro milk tea please", "taro milk tea"),
    ("topping", "extra boba", "boba"),
    ("topping", "crystal boba", "crystal agar boba"),
    ("topping", "egg", "egg pudding"),
    ("topping", "vanilla", "vanilla cream"),
    ("ice", "less", "less ice"),
    ("addon", "matcha on top", "matcha stencil on top"),
    ("sweetness", "half sweet please", "50%"),
]

NOT_ON_THE_MENU = [
    ("flavor", "milk tea"),  # two flavors share these words: ambiguous, never a guess
    ("flavor", "mango"),
    ("flavor", "blackberry tea"),  # "black" is a word, not a prefix
    ("flavor", "taromilk tea"),
    ("topping", "black"),  # whole words: no topping is called black
    ("topping", "black milk tea"),
    ("topping", "bobas and stuff"),
    ("topping", "no boba"),  # a negation never matches what it negates
    ("topping", "without pudding"),
    ("topping", "creamy"),
    ("topping", "cheese foam cheese"),
    ("addon", "whipped cream"),
    ("sweetness", "60%"),
    ("sweetness", "5"),
    ("sweetness", "very sweet"),
    ("ice", "ice"),
    ("ice", "hot"),
    ("flavor", ""),
    ("flavor", "   "),
    ("flavor", "taro " * 100),  # absurdly long text is never a name
]


def match(menu: Menu, category: str, text: str) -> str | None:
    method = getattr(menu, f"match_{category}")
    result: str | None = method(text)
    return result


@pytest.mark.parametrize(("category", "text", "canonical"),
                         CONTRACT_ALIASES + CANONICAL_AND_CASE + NATURAL)
def test_names_and_aliases_match_their_canonical_name(
    menu: Menu, category: str, text: str, canonical: str
) -> None:
    assert match(menu, category, text) == canonical


@pytest.mark.parametrize(("category", "text"), NOT_ON_THE_MENU)
def test_off_menu_text_matches_nothing(menu: Menu, category: str, text: str) -> None:
    assert match(menu, category, text) is None


def test_every_name_and_every_alias_in_the_file_matches(menu: Menu) -> None:
    categories = [
        ("flavor", menu.flavors, menu.aliases.flavors),
        ("topping", menu.toppings, menu.aliases.toppings),
        ("addon", menu.addons, menu.aliases.addons),
        ("sweetness", menu.sweetness_levels, menu.aliases.sweetness),
        ("ice", menu.ice_levels, menu.aliases.ice),
    ]
    for category, names, aliases in categories:
        for name in names:
            assert match(menu, category, name.upper()) == name
        for alias, target in aliases.items():
            assert match(menu, category, alias.title()) == target


@given(st.text(max_size=300))
def test_matching_never_raises_and_only_returns_canonical_names(text: str) -> None:
    menu = parse_menu(builtin_text(), source="menu.toml")
    assert menu.match_flavor(text) in (None, *menu.flavors)
    assert menu.match_topping(text) in (None, *menu.toppings)
    assert menu.match_addon(text) in (None, *menu.addons)
    assert menu.match_sweetness(text) in (None, *menu.sweetness_levels)
    assert menu.match_ice(text) in (None, *menu.ice_levels)


# --- malformed menus ---------------------------------------------------------------------


def edited(old: str, new: str) -> str:
    text = builtin_text()
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_syntax_error_names_file_line_and_column() -> None:
    text = edited("max_drinks = 10", "max_drinks = = 10")
    with pytest.raises(MenuError) as err:
        parse_menu(text, source="shop/menu.toml")
    line = line_of(text, "max_drinks = = 10")
    assert re.match(rf"shop/menu\.toml:{line}:\d+: ", str(err.value)), str(err.value)


def test_syntax_error_at_end_of_document_still_names_a_line() -> None:
    with pytest.raises(MenuError, match=r"^m\.toml:2:\d+: "):
        parse_menu('flavors = ["taro"]\nice = [', source="m.toml")


def test_non_utf8_bytes_are_refused_with_the_line() -> None:
    with pytest.raises(MenuError, match=r"^m\.toml:2: the file is not UTF-8 text"):
        parse_menu(b'shop_name = "x"\nflavors = ["t\xffaro"]\n', source="m.toml")


MALFORMED = [
    # (old, new, expected message after "menu.toml: ")
    ('flavors = ["taro milk tea", "black milk tea"]', 'flavors = ["taro milk tea", 7]',
     "flavors[1]: Expected `str`, got `int`"),
    ('flavors = ["taro milk tea", "black milk tea"]', 'flavors = []',
     "flavors: Expected `array` of length >= 1"),
    ('flavors = ["taro milk tea", "black milk tea"]',
     'flavors = ["taro milk tea", "Taro  Milk Tea"]',
     "flavors[1]: 'Taro  Milk Tea' is the same name as flavors[0]"),
    ('toppings = ["boba",', 'toppings = ["!!!", "boba",', "toppings[0]: '!!!' has no letters"),
    ("drink_cents = 550", "drink_cents = 5.50", "prices.drink_cents: Expected `int`, got `float`"),
    ("drink_cents = 550", "drink_cents = -1", "prices.drink_cents: Expected `int` >= 0"),
    ("max_drinks = 10", "max_drinks = 0", "limits.max_drinks: Expected `int` >= 1"),
    ("max_drinks = 10", "max_drinks = 10\nmax_toppings = 3",
     "limits: Object contains unknown field `max_toppings`"),
    ('shop_name = "Deepgram BobaRista"', 'shop_name = "Deepgram BobaRista"\nflavours = []',
     "(top level): Object contains unknown field `flavours`"),
    ('default = "50%"', 'default = "60%"', "sweetness.default: '60%' is not one of sweetness"),
    ('default = "regular ice"', 'default = "lots"', "ice.default: 'lots' is not one of ice"),
    ('"matcha stencil on top" = "vanilla cream"', '"matcha stencil on top" = "whipped cream"',
     "rules.addon_requires.\"matcha stencil on top\": 'whipped cream' is not one of the toppings"),
    ('"matcha stencil on top" = "vanilla cream"', '"sprinkles" = "vanilla cream"',
     "rules.addon_requires.sprinkles: 'sprinkles' is not one of the addons"),
    ('"tapioca" = "boba"', '"tapioca" = "bobba"',
     "aliases.toppings.tapioca: 'bobba' is not one of the toppings"),
    ('"tapioca" = "boba"', '"egg pudding" = "boba"',
     "aliases.toppings.\"egg pudding\": 'egg pudding' is already the name 'egg pudding'"),
    ('"tapioca" = "boba"', '"tapioca" = "boba"\n"Pudding" = "boba"',
     "aliases.toppings.pudding: 'pudding' already means 'boba'"),
    ("[aliases.ice]", "[aliases.ice]\n\"x\" = 3", "aliases.ice[...]: Expected `str`, got `int`"),
]


@pytest.mark.parametrize(("old", "new", "message"), MALFORMED)
def test_malformed_menu_is_refused_with_the_key_path(old: str, new: str, message: str) -> None:
    with pytest.raises(MenuError) as err:
        parse_menu(edited(old, new), source="menu.toml")
    assert str(err.value).startswith(f"menu.toml: {message}"), str(err.value)


def test_a_menu_too_big_for_the_prompt_is_refused() -> None:
    aliases = "\n".join(f'"alias number {i:04d} for taro" = "taro milk tea"' for i in range(1000))
    text = edited('"taro" = "taro milk tea"', aliases)
    with pytest.raises(MenuError, match=r"^menu\.toml: the menu is too big: the agent's prompt"):
        parse_menu(text, source="menu.toml")


# --- a shop's own menu (BOBA_MENU) -------------------------------------------------------

SHOP_MENU = """
shop_name = "Corner Tea"
flavors = ["Jasmine Green Tea", "Oolong Milk Tea", "Brown Sugar Milk"]
toppings = ["Grass Jelly", "boba"]
addons = []
[sweetness]
levels = ["0%", "30%", "70%", "100%"]
default = "70%"
[ice]
levels = ["no ice", "some ice"]
default = "some ice"
[prices]
drink_cents = 600
topping_cents = 100
addon_cents = 0
[limits]
max_drinks = 4
[aliases.flavors]
"jasmine" = "jasmine green tea"
"""


def test_a_shop_menu_replaces_the_builtin_everywhere() -> None:
    shop = parse_menu(SHOP_MENU, source="corner.toml")
    assert shop.flavors == ("jasmine green tea", "oolong milk tea", "brown sugar milk")
    assert shop.match_flavor("Jasmine") == "jasmine green tea"
    assert shop.match_flavor("taro milk tea") is None
    specs = {s.name: s for s in function_specs(shop)}
    props = specs["add_to_cart"].parameters["properties"]
    assert isinstance(props, dict)
    assert props["flavor"]["enum"] == list(shop.flavors)
    assert props["sweetness"]["enum"] == ["0%", "30%", "70%", "100%"]
    assert props["addons"] == {"type": "array", "items": {"type": "string"},
                               "description": props["addons"]["description"], "maxItems": 0}
    prompt = build_prompt(shop)
    assert "Corner Tea" in prompt and "taro" not in prompt.lower()
    assert "At most 4 drinks" in prompt and "$6.00" in prompt


# --- generated prompt and function schemas -----------------------------------------------


def test_prompt_is_short_enough_and_names_every_item(menu: Menu) -> None:
    prompt = build_prompt(menu)
    assert len(prompt) < MAX_PROMPT_CHARS
    for name in (*menu.flavors, *menu.toppings, *menu.addons, *menu.sweetness_levels,
                 *menu.ice_levels, *menu.aliases.toppings):
        assert name in prompt, name
    for price in ("$5.50", "$0.75", "$0.50"):
        assert price in prompt
    assert "matcha stencil on top only comes with vanilla cream" in prompt
    assert "At most 10 drinks" in prompt
    for fn in FUNCTIONS:
        if fn.name not in ("menu_summary", "transfer_to_staff"):
            assert fn.name in prompt, fn.name


CONTRACT_FUNCTIONS = {
    "menu_summary": set(),
    "add_to_cart": {"flavor", "toppings", "sweetness", "ice", "addons"},
    "update_pending_item": {"flavor", "toppings", "sweetness", "ice", "addons"},
    "confirm_pending_to_cart": set(),
    "clear_pending_item": set(),
    "get_cart": set(),
    "remove_from_cart": {"index"},
    "modify_cart_item": {"index", "flavor", "toppings", "sweetness", "ice", "addons"},
    "set_sweetness_ice": {"index", "sweetness", "ice"},
    "save_phone_number": {"phone", "name"},  # CONTRACT §12 adds `name`
    "checkout_order": {"phone", "name"},
    "order_status": {"order_number"},
    "order_is_placed": set(),
    "end_call": set(),
}


def test_function_specs_are_the_contract_table(menu: Menu) -> None:
    specs = function_specs(menu)
    assert [s.name for s in specs] == list(CONTRACT_FUNCTIONS)
    for spec in specs:
        assert spec.description.strip()
        assert spec.parameters["type"] == "object"
        props = spec.parameters["properties"]
        assert isinstance(props, dict)
        assert set(props) == CONTRACT_FUNCTIONS[spec.name], spec.name
        if not props:
            assert spec.parameters == {"type": "object", "properties": {}}
    by_name = {s.name: s.parameters for s in specs}
    assert by_name["remove_from_cart"]["required"] == ["index"]
    assert by_name["save_phone_number"]["required"] == ["phone"]
    assert by_name["add_to_cart"]["required"] == ["flavor"]
    assert "required" not in by_name["set_sweetness_ice"]
    props = by_name["modify_cart_item"]["properties"]
    assert isinstance(props, dict)
    assert props["flavor"]["enum"] == list(menu.flavors)
    assert props["toppings"]["items"]["enum"] == list(menu.toppings)
    assert props["addons"]["items"]["enum"] == list(menu.addons)
    assert props["ice"]["enum"] == list(menu.ice_levels)
    assert props["index"]["type"] == "integer"


def test_transfer_to_staff_is_offered_only_with_a_transfer_number(menu: Menu) -> None:
    without = [s.name for s in function_specs(menu)]
    with_transfer = [s.name for s in function_specs(menu, transfer=True)]
    assert "transfer_to_staff" not in without
    assert with_transfer == [*without, "transfer_to_staff"]
    spec = function_specs(menu, transfer=True)[-1]
    assert spec.parameters == {"type": "object", "properties": {}}
    assert "transfer_to_staff" not in build_prompt(menu)
    assert "transfer_to_staff" in build_prompt(menu, transfer=True)


def test_menu_round_trips_through_json_for_recordings(menu: Menu) -> None:
    import msgspec

    assert msgspec.json.decode(msgspec.json.encode(menu), type=Menu) == menu
