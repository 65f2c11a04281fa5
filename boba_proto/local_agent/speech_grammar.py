"""What a caller may say next, as a JSGF grammar generated from the menu (CONTRACT §9).

An open-vocabulary recogniser hears about one word in five of a phone caller right; one
constrained to the sentences that make sense at this point of the call hears nearly all
of them. `grammar(menu, listen)` writes that grammar: drink orders built from the menu's
names and aliases (flavors, toppings, add-ons, sweetness and ice levels, counts), changes
("no boba", "actually make it taro"), yes/no, phone numbers said digit by digit, "that's
all", and the questions the local agent answers. `listen` says which of these the
dialogue expects now (the runtime maps its dialogue phase to a `Listen`); every grammar
also takes yes/no, "that's all" and goodbye, which a caller may say at any point.

Pure: text in, text out. Recognised words come back as plain lower-case text that the
local agent's `understand` reads like typed text ("fifty percent" for 50%).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Final

from boba_proto.menu import Menu

__all__ = ["Listen", "grammar", "number_words", "spoken", "vocabulary"]


class Listen(enum.Flag):
    """What the caller may say at this point of the dialogue."""

    DRINKS = enum.auto()  # "can I get a taro milk tea with boba, half sweet"
    CHANGES = enum.auto()  # "no boba", "actually make it black milk tea", "less ice"
    DIGITS = enum.auto()  # "four one five, five five five, zero one four two"
    QUESTIONS = enum.auto()  # "what's on the menu", "is my order ready"
    REMOVE = enum.auto()  # "remove the second one"
    ANYTHING = DRINKS | CHANGES | DIGITS | QUESTIONS | REMOVE


_UNITS: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                 "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                 "sixteen", "seventeen", "eighteen", "nineteen")
_TENS: Final = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
                "ninety")
_ORDINALS: Final = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh",
                    "eighth", "ninth", "tenth")

# The sentences around the menu's words; kept short: every alternative costs accuracy.
_LEADS: Final = ("hi", "hi there", "hey", "hello", "okay", "ok", "um", "so", "oh", "well",
                 "actually", "and", "alright")
_ASKS: Final = ("can i get", "can i have", "could i get", "could i have", "i'd like",
                "i would like", "i want", "i'll have", "i'll take", "give me", "let me get",
                "i'd like to order", "i want to order", "may i have", "and", "also", "plus",
                "then")
_YES: Final = ("yes", "yeah", "yep", "sure", "correct", "right", "that's right",
               "that's correct", "yes please", "yes that's right", "yes that's correct",
               "sounds good", "perfect", "okay", "ok")
_NO: Final = ("no", "nope", "no thanks", "no thank you", "not quite", "that's wrong")
_DONE: Final = ("that's all", "that's it", "that's everything", "nothing else", "i'm done",
                "that will be all", "no more", "i'm good")
_BYE: Final = ("bye", "goodbye", "thanks bye", "thank you bye", "thanks", "thank you",
               "have a good day")
_QUESTIONS: Final = ("what's on the menu", "what do you have", "what flavors do you have",
                     "what toppings do you have", "what's in my order", "what's my total",
                     "is my order ready", "is it ready yet", "where is my order",
                     "read it back", "repeat my order", "never mind", "cancel my order")
_PHONE_LEADS: Final = ("my number is", "my phone number is", "it's", "the number is",
                       "my cell is", "call me at", "text me at")
_TAILS: Final = ("please", "then", "too", "instead", "thanks", "thank you", "as well")


def number_words(n: int) -> str:
    """0..999 as said: 75 -> "seventy five", 100 -> "one hundred"."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words takes 0..999, not {n}")
    if n < 20:
        return _UNITS[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS[tens] + (f" {_UNITS[unit]}" if unit else "")
    hundreds, rest = divmod(n, 100)
    return f"{_UNITS[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")


def spoken(name: str) -> str:
    """A menu name as words a recogniser knows: "50%" -> "fifty percent", lower case."""
    words: list[str] = []
    for token in re.findall(r"\d+%?|[a-z']+", name.lower().replace("\u2019", "'")):
        if token[0].isdigit():
            number = int(token.rstrip("%"))
            words.append(number_words(number) if number < 1000 else " ".join(
                _UNITS[int(d)] for d in str(number)))
            if token.endswith("%"):
                words.append("percent")
        else:
            words.append(token)
    return " ".join(words)


def _alts(phrases: Iterable[str]) -> str:
    unique = sorted({spoken(p) for p in phrases if spoken(p)})
    return " | ".join(unique) if unique else "<VOID>"


def grammar(menu: Menu, listen: Listen) -> str:
    """The JSGF grammar (one public rule, `<utterance>`) of what a caller may say now."""
    flavor_names = [*menu.flavors, *menu.aliases.flavors]
    plurals = [f"{spoken(f)}s" for f in flavor_names if not spoken(f).endswith("s")]
    extras = [*menu.toppings, *menu.aliases.toppings, *menu.addons, *menu.aliases.addons]
    sweet_levels = [spoken(level) for level in menu.sweetness_levels]
    sweetness = [*(f"{s} sweet" for s in sweet_levels), *(f"{s} sugar" for s in sweet_levels),
                 *sweet_levels, *menu.aliases.sweetness]
    ice = [*menu.ice_levels, *menu.aliases.ice]
    counts = ["a", "an", "one", *(number_words(n) for n in range(2, menu.max_drinks + 1))]
    rules = {
        "lead": _alts(_LEADS),
        "ask": _alts(_ASKS),
        "tail": _alts(_TAILS),
        "yes": _alts(_YES),
        "no": _alts(_NO),
        "done": _alts(_DONE),
        "bye": _alts(_BYE),
        "count": _alts(counts),
        "flavor": _alts([*flavor_names, *plurals]),
        "extra": _alts(extras),
        "sweetness": _alts(sweetness),
        "ice": _alts(ice),
        "ordinal": _alts([*_ORDINALS[: menu.max_drinks], "last"]),
        "digit": "zero | oh | one | two | three | four | five | six | seven | eight | nine",
        "questions": _alts(_QUESTIONS),
        "phone_lead": _alts(_PHONE_LEADS),
    }
    lines = [f"<{name}> = {body};" for name, body in rules.items()]
    # Each rule is copied into the search graph wherever it is referenced, so repetition
    # is written as loops (`<modifier>*`), never as repeated optional references. Answers
    # ("yes", "that's all", "bye") stand alone or open a sentence, never close one: "no
    # ice" must not be heard as "no, bye".
    lines += [
        "<with> = (with | and | plus) [the | some] <extra>;",
        "<setting> = <sweetness> | <ice> | (no | without | hold the) (<extra> | ice | toppings);",
        "<answer> = <yes> | <no> [<done> | <bye>] | <done> [<bye>] | <bye>;",
    ]
    main: list[str] = []
    if Listen.DRINKS in listen:
        lines.append("<order> = [<ask>] [<count>] <flavor> (<with> | <setting> | <extra>)*"
                     " | [<ask> | i'd like to order] <count> drinks | another one | same again;")
        main.append("<order>")
    if Listen.CHANGES in listen:
        lines.append("<change> = [actually] (make it | change it to) (<flavor> | <setting>)"
                     " | [actually] (<with> | <setting>)+ [instead]"
                     " | [the] <extra> (too | instead) [please] <setting>* | add [the] <extra>;")
        main.append("<change>")
    if Listen.REMOVE in listen:
        lines.append("<remove> = (remove | cancel | drop) the"
                     " (<ordinal> (one | drink) | <flavor>);")
        main.append("<remove>")
    if Listen.QUESTIONS in listen:
        main.append("<questions>")
    if Listen.DIGITS in listen:
        # A phone number is ten digits (eleven with the country code): counting them out
        # keeps a digit from being lost or made up.
        ten = " ".join(["<digit>"] * 10)
        lines.append(f"<number> = [<phone_lead>] [one] {ten};")
        main.append("<number>")
    if main:
        lines.append(f"<main> = {' | '.join(main)};")
        body = "(<answer> | [<yes> | <no>] <main> [and <main>])"
    else:
        body = "<answer>"
    if listen & (Listen.DRINKS | Listen.CHANGES):
        head = f"public <utterance> = [<lead>] {body} [<tail>];"
    else:  # numbers and answers: no "and", "oh", "too" around them to mistake for digits
        head = f"public <utterance> = {body} [please | thanks | thank you];"
    return "\n".join(["#JSGF V1.0;", "grammar caller;", head, *lines]) + "\n"


def vocabulary(menu: Menu) -> frozenset[str]:
    """Every word any of this menu's grammars can produce (for the pronouncing dictionary)."""
    text = grammar(menu, Listen.ANYTHING)
    body = "\n".join(line.split("=", 1)[1] for line in text.splitlines() if "=" in line)
    body = re.sub(r"<[^>]*>", " ", body)
    return frozenset(re.findall(r"[a-z']+", body))
