"""The local agent's lexicon is keyed by the menu matcher's own words (`menu.words`), so a
name is recognised in a caller's sentence exactly as the agent functions recognise it."""

from __future__ import annotations

from boba_proto.local_agent.understand import Lexicon, understand
from boba_proto.menu import FILLER_WORDS, parse_menu, words
from tests.protocol.dialogue_harness import builtin_menu

ACCENTED = """
flavors = ["crème brûlée milk tea", "black milk tea"]
toppings = ["boba"]
[sweetness]
levels = ["50%", "100%"]
default = "50%"
[ice]
levels = ["regular ice"]
default = "regular ice"
[prices]
drink_cents = 500
topping_cents = 50
addon_cents = 50
[limits]
max_drinks = 3
"""


def test_every_menu_phrase_is_keyed_by_the_matchers_words() -> None:
    menu = builtin_menu()
    lexicon = Lexicon(menu)
    for name in (*menu.flavors, *menu.toppings, *menu.addons, *menu.ice_levels):
        assert lexicon.phrases[words(name)][1] == name


def test_a_name_in_another_script_is_heard_as_written() -> None:
    menu = parse_menu(ACCENTED, source="accented.toml")
    said = understand(Lexicon(menu), "Could I get a Crème Brûlée milk tea with boba please")
    assert [d.flavor for d in said.drinks] == ["crème brûlée milk tea"]
    assert said.drinks[0].toppings == ["boba"]
    assert said.unknown == []
    assert menu.match_flavor("a crème brûlée milk tea please") == "crème brûlée milk tea"


def test_the_matchers_filler_is_never_an_unknown_word() -> None:
    lexicon = Lexicon(builtin_menu())
    for word in sorted(FILLER_WORDS):
        assert understand(lexicon, f"taro milk tea {word}").unknown == [], word
