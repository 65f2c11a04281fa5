"""The recogniser's grammars come from the menu and the dialogue state (issue 19)."""

from __future__ import annotations

import re

import msgspec
import pytest

from boba_proto.local_agent.speech_grammar import Listen, grammar, number_words, spoken, vocabulary
from tests.protocol.dialogue_harness import builtin_menu


def alternatives(text: str, rule: str) -> set[str]:
    body = re.search(rf"^<{rule}> = (.*);$", text, re.M)
    assert body is not None, rule
    return {alt.strip() for alt in body.group(1).split("|")}


def test_numbers_and_levels_are_said_as_words() -> None:
    assert [number_words(n) for n in (0, 7, 25, 75, 100, 512)] == [
        "zero", "seven", "twenty five", "seventy five", "one hundred", "five hundred twelve"]
    assert spoken("50%") == "fifty percent"
    assert spoken("Taro Milk Tea") == "taro milk tea"
    with pytest.raises(ValueError):
        number_words(1000)


def test_the_menu_names_and_aliases_are_in_the_grammar() -> None:
    menu = builtin_menu()
    text = grammar(menu, Listen.DRINKS | Listen.CHANGES)
    assert {"taro milk tea", "black milk tea", "taro", "taro milk teas"} <= alternatives(
        text, "flavor")
    assert {"boba", "tapioca pearls", "egg pudding", "crystal agar boba",
            "matcha stencil on top", "vanilla cream"} <= alternatives(text, "extra")
    assert {"fifty percent sweet", "half sweet", "no sugar"} <= alternatives(text, "sweetness")
    assert {"less ice", "light ice", "extra ice"} <= alternatives(text, "ice")


def test_a_new_menu_item_is_heard_without_editing_any_word_list() -> None:
    menu = msgspec.structs.replace(builtin_menu(), flavors=("taro milk tea", "lychee green tea"))
    assert "lychee green tea" in alternatives(grammar(menu, Listen.DRINKS), "flavor")
    assert {"lychee", "green"} <= vocabulary(menu)


def test_what_is_listened_for_follows_the_dialogue() -> None:
    menu = builtin_menu()
    digits_only = grammar(menu, Listen.DIGITS)
    assert "<number>" in digits_only and "<order>" not in digits_only
    assert "<lead>" not in digits_only.split("\n")[2]  # no "oh"/"and" to mistake for digits
    taking = grammar(menu, Listen.DRINKS | Listen.CHANGES | Listen.REMOVE | Listen.QUESTIONS)
    assert "<order>" in taking and "<number>" not in taking
    answers_only = grammar(menu, Listen(0))
    assert "public <utterance> = <answer>" in answers_only
    for text in (digits_only, taking, answers_only):  # yes/no and goodbye are always heard
        assert {"yes", "no"} <= alternatives(text, "yes") | alternatives(text, "no")
