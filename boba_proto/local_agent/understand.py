"""What a caller's sentence means, for the local agent: tokens, menu phrases, intents.

Pure and deterministic (no I/O, no clock): `Lexicon(menu)` is built once per call from the
same menu data the functions use, and `understand(lexicon, text)` turns one utterance into
an `Utterance`: the drinks it describes (`DrinkSpec`, one per flavor mentioned), and the
intents around them (yes, no, done, a question, a change, a removal, digits...).

It never guesses: words it does not know are kept as `unknown` phrases, so the dialogue
can either hand them to the functions (which refuse them with a sentence) or ask.
"""

from __future__ import annotations

import enum
import itertools
import re
from dataclasses import dataclass, field
from typing import Final

from boba_proto.menu import FILLER_WORDS, Menu
from boba_proto.menu import words as menu_words

__all__ = ["DrinkSpec", "Lexicon", "Utterance", "understand"]

MAX_TEXT_CHARS: Final = 500
"""Longer input is cut: nobody orders a drink in more than a few sentences."""

_UNITS: Final = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
_TENS: Final = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_ORDINALS: Final = {
    "first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "sixth": 5, "seventh": 6,
    "eighth": 7, "ninth": 8, "tenth": 9,
}
NUMBER_WORDS: Final = _UNITS
"""How numbers are said, both ways: heard here, spoken by `dialogue` ("two drinks")."""
ORDINAL_WORDS: Final = tuple(_ORDINALS)
"""Positions as said, 0-based: heard here ("the second one"), spoken by `dialogue`."""
_COUNT_NOUNS: Final = frozenset({
    "drinks", "drink", "teas", "tea", "things", "items", "cups", "orders", "of",
})
_ARTICLES: Final = frozenset({"a", "an", "the", "any", "my", "some", "of", "more", "extra", "that"})
_NEGATORS: Final = frozenset({"no", "without", "hold", "minus", "skip", "remove", "nix", "lose"})
_SWEET_WORDS: Final = frozenset({"sweet", "sugar", "sweetness", "sweetened", "sugars"})
_JOINERS: Final = frozenset({"and", "or", "nor", "also", "plus"})
_TOPPING_LEADS: Final = frozenset({"with", "add", "extra", "and", "plus", "some", "also", "top"})
_ORDER_LEADS: Final = frozenset({"a", "an", "one", "some", "two", "three"})
_DRINK_NOUNS: Final = frozenset({"tea", "teas", "milk", "drink", "drinks", "cup", "cups"})
_NEW_DRINK_LEADS: Final = frozenset({"another", "and", "also", "plus", "then"})

# Words that carry no menu meaning; anything else that is not a menu phrase is "unknown":
# the menu matcher's filler plus the words of conversation around an order. (The menu's
# filler words that were not listed here are all intent words, and the two sets are only
# ever asked together, so the union changes nothing.)
_FILLER: Final = FILLER_WORDS | frozenset("""
any in to for me im ill ive we us our you your its that this these those there here is are
was be been being am do does did could will shall should may might must got give gimme has
having wanted wanna love need take ordering orders place placing pls thanks thank thx hi
hello hey hiya howdy good morning afternoon evening um uh er erm hmm well so only also or
but without then too as at by from up out off really very much lot little bit kind sort
style size regular ones drinks teas milk cup cups let lets lemme try think guess maybe
probably today now okay gonna going go put make made same again what whats which how where
when who why mine yours gotta sure cool awesome nice great fine alright all right
""".split())  # noqa: SIM905 - a word list reads best as words

_YES: Final = (
    ("yes",), ("yeah",), ("yep",), ("yup",), ("ya",), ("yah",), ("correct",), ("sure",),
    ("ok",), ("okay",), ("perfect",), ("great",), ("right",), ("exactly",), ("absolutely",),
    ("sounds", "good"), ("looks", "good"), ("go", "ahead"), ("please", "do"), ("uh", "huh"),
    ("affirmative",), ("alright",), ("good",), ("fine",), ("confirm",), ("confirmed",),
    ("do", "it"), ("place", "it"), ("of", "course"),
)
_NO: Final = (
    ("no",), ("nope",), ("nah",), ("wrong",), ("incorrect",), ("not", "right"),
    ("not", "quite"), ("negative",), ("not", "correct"),
)
_DONE: Final = (
    ("thats", "all"), ("thats", "it"), ("that", "is", "all"), ("that", "is", "it"),
    ("thats", "everything"), ("nothing", "else"), ("no", "more"), ("im", "done"),
    ("i", "am", "done"), ("im", "good"), ("im", "all", "set"), ("all", "set"),
    ("that", "will", "be", "all"), ("thatll", "be", "all"), ("thats", "about", "it"),
    ("done",), ("finished",), ("nothing", "more"), ("just", "that"), ("that", "will", "do"),
    ("thatll", "do"), ("were", "done"), ("we", "are", "done"), ("ready", "to", "check"),
    ("check", "out"), ("checkout",), ("place", "the", "order"), ("place", "my", "order"),
)
_BYE: Final = (("bye",), ("goodbye",), ("good", "bye"), ("hang", "up"), ("see", "you"),
               ("see", "ya"), ("have", "a", "good", "day"), ("have", "a", "nice", "day"))
_MENU_Q: Final = (
    ("menu",), ("what", "do", "you", "have"), ("what", "do", "you", "sell"),
    ("what", "flavors"), ("which", "flavors"), ("what", "toppings"), ("which", "toppings"),
    ("what", "kind"), ("what", "kinds"), ("options",), ("what", "can", "i", "get"),
    ("what", "do", "you", "got"), ("whats", "there"), ("what", "is", "there"),
    ("what", "have", "you", "got"), ("what", "do", "you", "offer"), ("what", "else"),
    ("what", "add", "ons"), ("what", "addons"), ("how", "much", "is"), ("how", "much", "are"),
    ("prices",), ("price", "list"),
)
_STATUS_Q: Final = (
    ("order", "ready"), ("is", "it", "ready"), ("ready", "yet"), ("status",),
    ("where", "is", "my", "order"), ("wheres", "my", "order"), ("check", "on", "my"),
    ("check", "my", "order"), ("my", "order", "done"), ("order", "done", "yet"),
    ("is", "my", "drink", "ready"), ("are", "my", "drinks", "ready"), ("drinks", "ready"),
    ("is", "order",), ("track",),
)
_CART_Q: Final = (
    ("whats", "in", "my", "order"), ("what", "is", "in", "my", "order"), ("read", "back"),
    ("read", "it", "back"), ("repeat", "my", "order"), ("repeat", "the", "order"),
    ("what", "did", "i", "order"), ("whats", "my", "order"), ("what", "is", "my", "order"),
    ("my", "total"), ("the", "total"), ("how", "much", "is", "it"),
    ("how", "much", "do", "i", "owe"), ("what", "do", "i", "have"),
    ("whats", "the", "total"), ("what", "is", "the", "total"), ("what", "do", "i", "owe"),
)
_NEVERMIND: Final = (
    ("never", "mind"), ("nevermind",), ("forget", "it"), ("scratch", "that"),
    ("cancel", "that"), ("forget", "that"), ("dont", "want", "it"), ("dont", "want", "that"),
    ("i", "dont", "want", "it"),
)
_REMOVE: Final = (("remove",), ("delete",), ("cancel",), ("drop",), ("take", "out"),
                  ("get", "rid", "of"), ("dont", "want", "the"), ("scratch",))
_CHANGE: Final = (
    ("actually",), ("make", "it"), ("make", "that"), ("make", "the"), ("change",),
    ("instead",), ("switch",), ("rather",), ("i", "meant"), ("i", "mean"), ("swap",),
    ("make", "this"), ("can", "it", "be"), ("wait",),
)
_NEW_DRINK: Final = (("another",), ("also",), ("one", "more"), ("plus",), ("add", "a"),
                     ("add", "an"), ("and", "a"), ("and", "an"), ("a", "second"),
                     ("next", "drink"), ("next", "one"), ("as", "well"))
_ORDER_WORDS: Final = (("can", "i", "get"), ("can", "i", "have"), ("id", "like"),
                       ("i", "would", "like"), ("i", "want"), ("give", "me"), ("order",),
                       ("get", "me"), ("ill", "have"), ("ill", "take"), ("lemme", "get"),
                       ("let", "me", "get"), ("gimme",), ("could", "i", "get"),
                       ("may", "i", "have"), ("i", "need"), ("id", "love"), ("want",))
_REPEAT: Final = (("same", "again"), ("another", "one"), ("one", "more"), ("same", "thing"),
                  ("another", "of", "those"), ("another", "of", "the", "same"),
                  ("the", "same", "one"), ("one", "more", "of", "those"))
_PAYMENT_Q: Final = (("pay",), ("payment",), ("card",), ("credit",), ("cash",), ("venmo",),
                     ("apple", "pay"))
_VAGUE_SWEET_LEADS: Final = frozenset({"extra", "more", "less", "very", "lightly", "slightly",
                                       "little", "too", "super", "really", "not"})
_AVAILABLE_Q: Final = (("do", "you", "have"), ("do", "you", "sell"), ("do", "you", "make"),
                       ("do", "you", "do"), ("do", "you", "guys", "have"), ("is", "there"),
                       ("have", "you", "got"), ("can", "you", "make"))

_INTENT_WORDS: Final = frozenset(
    w for table in (_YES, _NO, _DONE, _BYE, _MENU_Q, _STATUS_Q, _CART_Q, _NEVERMIND,
                    _REMOVE, _CHANGE, _NEW_DRINK, _ORDER_WORDS, _AVAILABLE_Q)
    for phrase in table for w in phrase
) | frozenset({
    "number", "phone", "cell", "call", "text", "caller", "typed", "dash", "area", "code",
    "last", "percent", "per", "cent", "double", "triple", "half", "quarter", "full",
    "first", "second", "third", "put", "hundred", "oh", "thousand", "not", "dont", "didnt",
    "doesnt", "isnt", "want", "add", "less", "more", "ice", "iced", "sugar", "sweet",
    "sweetness", "level", "toppings", "topping", "addon", "addons", "ons", "extra", "plus",
    "sweeter", "sugary", "owe", "pay", "payment", "card", "credit", "cash",
})


class TokenKind(enum.Enum):
    WORD = "word"
    NUMBER = "number"  # digits as said ("0142" keeps its zero)
    PERCENT = "percent"  # "75%"
    ORDINAL = "ordinal"  # a position, 0-based
    ENTITY = "entity"  # a menu phrase


class Category(enum.Enum):
    FLAVOR = "flavor"
    TOPPING = "topping"
    ADDON = "addon"
    SWEETNESS = "sweetness"
    ICE = "ice"


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # the words as said (entities: all their words)
    value: str = ""  # digits, "75%", the canonical menu name
    category: Category | None = None
    position: int = -1  # ordinals


# --- the menu's phrases ---------------------------------------------------------------------


class Lexicon:
    """Every phrase of the menu a caller may say, by category, longest first."""

    def __init__(self, menu: Menu) -> None:
        self.menu = menu
        phrases: dict[tuple[str, ...], tuple[Category, str]] = {}

        def add(words: tuple[str, ...], category: Category, canonical: str) -> None:
            if words and words not in phrases:
                phrases[words] = (category, canonical)

        tables = (
            (Category.FLAVOR, menu.flavors, menu.aliases.flavors),
            (Category.TOPPING, menu.toppings, menu.aliases.toppings),
            (Category.ADDON, menu.addons, menu.aliases.addons),
            (Category.SWEETNESS, menu.sweetness_levels, menu.aliases.sweetness),
            (Category.ICE, menu.ice_levels, menu.aliases.ice),
        )
        for category, names, aliases in tables:
            for name in names:
                add(menu_words(name), category, name)
            for alias, canonical in aliases.items():
                add(menu_words(alias), category, canonical)
        # Plurals of drinks ("two taro milk teas") and of toppings ("pearls" is an alias).
        for words, (category, canonical) in list(phrases.items()):
            if category in (Category.FLAVOR, Category.TOPPING) and not words[-1].endswith("s"):
                add((*words[:-1], words[-1] + "s"), category, canonical)
        # A word that belongs to exactly one name ("egg" -> egg pudding, "vanilla").
        owners: dict[str, set[tuple[Category, str]]] = {}
        for category, names, _aliases in tables:
            for name in names:
                for word in menu_words(name):
                    owners.setdefault(word, set()).add((category, name))
        for word, found in owners.items():
            if len(found) == 1 and word not in _FILLER and word not in _INTENT_WORDS \
                    and not any(c.isdigit() for c in word):
                category, canonical = next(iter(found))
                add((word,), category, canonical)
        self.phrases = phrases
        self.longest = max((len(k) for k in phrases), default=1)
        self.known_words = frozenset(w for k in phrases for w in k)

    def match_at(self, words: list[str], start: int) -> tuple[int, Category, str] | None:
        """The longest menu phrase starting at `start`: (length, category, canonical)."""
        for length in range(min(self.longest, len(words) - start), 0, -1):
            found = self.phrases.get(tuple(words[start : start + length]))
            if found is not None:
                return length, found[0], found[1]
        return None


# --- tokens ---------------------------------------------------------------------------------

# Letters as the menu's `words` sees them (any script, so a menu's "crème brûlée" is said
# as it is written), digits, ordinals, percentages and sentence punctuation.
_TOKEN_RE: Final = re.compile(r"\d+\s*%|\d+(?:st|nd|rd|th)\b|\d+|[^\W\d_]+|[.,;:!?]")


def _raw_words(text: str) -> list[str]:
    lowered = text[:MAX_TEXT_CHARS].lower().replace("\u2019", "'").replace("'", "")
    lowered = lowered.replace("add-on", "addon").replace("-", " ")
    return [w.replace(" ", "") for w in _TOKEN_RE.findall(lowered)]


def _numbers(words: list[str]) -> list[Token]:
    """Spoken and written numbers, percentages and ordinals become their own tokens."""
    out: list[Token] = []
    i = 0
    n = len(words)
    while i < n:
        w = words[i]
        if w.endswith("%"):
            out.append(Token(TokenKind.PERCENT, w, w))
            i += 1
            continue
        m = re.fullmatch(r"(\d+)(st|nd|rd|th)", w)
        if m:
            out.append(Token(TokenKind.ORDINAL, w, position=int(m.group(1)) - 1))
            i += 1
            continue
        if w in _ORDINALS:
            out.append(Token(TokenKind.ORDINAL, w, position=_ORDINALS[w]))
            i += 1
            continue
        if w.isdigit():
            out.append(Token(TokenKind.NUMBER, w, w))
            i += 1
            continue
        if w in ("double", "triple") and i + 1 < n and (
            (words[i + 1] in _UNITS and _UNITS[words[i + 1]] < 10) or words[i + 1] in ("oh", "o")
        ):
            digit = "0" if words[i + 1] in ("oh", "o") else str(_UNITS[words[i + 1]])
            for _ in range(2 if w == "double" else 3):
                out.append(Token(TokenKind.NUMBER, digit, digit))
            i += 2
            continue
        if w in _TENS:
            value = _TENS[w]
            consumed = 1
            if i + 1 < n and words[i + 1] in _UNITS and 0 < _UNITS[words[i + 1]] < 10:
                value += _UNITS[words[i + 1]]
                consumed = 2
            out.append(Token(TokenKind.NUMBER, " ".join(words[i : i + consumed]), str(value)))
            i += consumed
            continue
        if w in _UNITS or (w == "a" and i + 1 < n and words[i + 1] == "hundred"):
            value = 1 if w == "a" else _UNITS[w]
            if i + 1 < n and words[i + 1] == "hundred":
                out.append(Token(TokenKind.NUMBER, f"{w} hundred", str(value * 100)))
                i += 2
                continue
            if w == "one" and out and (out[-1].kind is TokenKind.ORDINAL or out[-1].text in (
                "the", "that", "this", "other", "last", "which", "new", "same", "another"
            )):
                out.append(Token(TokenKind.WORD, w))  # "the second one" is a pronoun
                i += 1
                continue
            out.append(Token(TokenKind.NUMBER, w, str(value)))
            i += 1
            continue
        if w in ("oh", "o") and (
            (out and out[-1].kind is TokenKind.NUMBER and len(out[-1].value) == 1)
            or (i + 1 < n and (words[i + 1] in _UNITS or words[i + 1].isdigit()))
        ):
            out.append(Token(TokenKind.NUMBER, w, "0"))
            i += 1
            continue
        out.append(Token(TokenKind.WORD, w))
        i += 1
    # "75 percent", "seventy five per cent", "50 %" -> a percentage
    merged: list[Token] = []
    i = 0
    while i < len(out):
        t = out[i]
        if t.kind is TokenKind.NUMBER and i + 1 < len(out):
            nxt = out[i + 1]
            if nxt.kind is TokenKind.WORD and nxt.text == "percent":
                merged.append(Token(TokenKind.PERCENT, f"{t.text} percent", t.value + "%"))
                i += 2
                continue
            if (nxt.kind is TokenKind.WORD and nxt.text == "per" and i + 2 < len(out)
                    and out[i + 2].text == "cent"):
                merged.append(Token(TokenKind.PERCENT, f"{t.text} per cent", t.value + "%"))
                i += 3
                continue
        merged.append(t)
        i += 1
    return merged


def tokenize(lexicon: Lexicon, text: str) -> list[Token]:
    """Words, numbers and menu phrases (longest first) of one utterance."""
    tokens = _numbers(_raw_words(text))
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind is TokenKind.PERCENT:
            # "75%", "75% sweet", "75 percent sugar": a sweetness (known level or not)
            level = lexicon.menu.match_sweetness(t.value)
            j = i + 1
            if j < len(tokens) and tokens[j].text in _SWEET_WORDS:
                j += 1
            said = " ".join(x.text for x in tokens[i:j])
            out.append(Token(TokenKind.ENTITY, said, level or t.value, Category.SWEETNESS))
            i = j
            continue
        if (t.kind is TokenKind.NUMBER and i + 1 < len(tokens)
                and tokens[i + 1].text in _SWEET_WORDS and int(t.value) % 5 == 0
                and int(t.value) <= 100):
            # "seventy five sweet", "0 sugar": a percentage without the word
            level = lexicon.menu.match_sweetness(t.value + "%")
            said = f"{t.text} {tokens[i + 1].text}"
            out.append(Token(TokenKind.ENTITY, said, level or t.value + "%", Category.SWEETNESS))
            i += 2
            continue
        if t.kind is TokenKind.WORD or (t.kind is TokenKind.NUMBER and t.text in _UNITS):
            ahead = [x.text if x.kind is not TokenKind.NUMBER or x.text.isalpha() else x.value
                     for x in tokens[i : i + lexicon.longest]]
            found = lexicon.match_at(ahead, 0)
            if found is not None and not (
                found[0] == 1 and t.kind is TokenKind.NUMBER  # "one" alone is not a phrase
            ):
                length, category, canonical = found
                text_words = " ".join(x.text for x in tokens[i : i + length])
                out.append(Token(TokenKind.ENTITY, text_words, canonical, category))
                i += length
                continue
        out.append(t)
        i += 1
    return out


# --- meaning --------------------------------------------------------------------------------


@dataclass
class DrinkSpec:
    """One drink as described in one utterance; None / empty = not mentioned."""

    flavor: str | None = None
    unknown_flavor: str | None = None  # said where a flavor goes, not on the menu
    toppings: list[str] = field(default_factory=list)
    unknown_toppings: list[str] = field(default_factory=list)
    no_toppings: list[str] = field(default_factory=list)
    clear_toppings: bool = False
    addons: list[str] = field(default_factory=list)
    no_addons: list[str] = field(default_factory=list)
    sweetness: str | None = None  # canonical, or what was said when it is not a level
    ice: str | None = None
    vague_sweetness: bool = False  # "extra sweet", "less sugar": which level, though?
    quantity: int = 1

    @property
    def has_content(self) -> bool:
        return bool(
            self.flavor or self.unknown_flavor or self.toppings or self.unknown_toppings
            or self.no_toppings or self.clear_toppings or self.addons or self.no_addons
            or self.sweetness or self.ice or self.vague_sweetness
        )

    @property
    def changes_only(self) -> bool:
        """Mentions something but no flavor: a change to a drink, or a drink missing one."""
        return self.has_content and not (self.flavor or self.unknown_flavor)


@dataclass
class Utterance:
    """What one utterance says; the dialogue decides what to do with it."""

    text: str
    words: tuple[str, ...]
    drinks: list[DrinkSpec]
    yes: bool = False
    no: bool = False
    done: bool = False
    bye: bool = False
    menu_question: bool = False
    status_question: bool = False
    cart_question: bool = False
    availability_question: bool = False
    never_mind: bool = False
    remove: bool = False
    change: bool = False
    new_drink: bool = False
    ordering: bool = False
    payment_question: bool = False
    repeat: bool = False  # "same again", "another one": the last drink once more
    announced_count: int | None = None
    position: int | None = None  # "the second one" (0-based); -1 = the last one
    digits: str = ""  # every digit said, in order
    unknown: list[str] = field(default_factory=list)  # phrases not placed anywhere

    @property
    def has_drink(self) -> bool:
        return any(d.has_content for d in self.drinks)

    @property
    def order_number(self) -> str | None:
        return self.digits if len(self.digits) == 4 else None


def _has(words: tuple[str, ...], phrases: tuple[tuple[str, ...], ...]) -> bool:
    for phrase in phrases:
        n = len(phrase)
        for i in range(len(words) - n + 1):
            if words[i : i + n] == phrase:
                return True
    return False


def understand(lexicon: Lexicon, text: str) -> Utterance:
    """The meaning of one caller utterance."""
    tokens = [t for t in tokenize(lexicon, text) if t.text not in ".,;:!?"]
    consumed = [False] * len(tokens)
    plain = tuple(w for w in _raw_words(text) if w not in ".,;:!?")

    # Negations: "no boba", "without the pudding or cream", "hold the ice", "no toppings".
    negated: set[int] = set()
    no_toppings_at: list[int] = []
    ice_off_at: list[int] = []
    sugar_off_at: list[int] = []
    for i, t in enumerate(tokens):
        is_neg = t.kind is TokenKind.WORD and (
            t.text in _NEGATORS
            or (t.text == "take" and i + 1 < len(tokens) and tokens[i + 1].text in ("off", "out"))
            or (t.text == "dont" and i + 1 < len(tokens) and tokens[i + 1].text in ("want", "need"))
            or (t.text == "not" and i + 1 < len(tokens) and tokens[i + 1].text != "right")
        )
        if not is_neg:
            continue
        j = i + 1
        while j < len(tokens) and tokens[j].kind is TokenKind.WORD and (
            tokens[j].text in _ARTICLES or tokens[j].text in ("off", "out", "want", "need")
        ):
            j += 1
        if j >= len(tokens):
            continue
        nxt = tokens[j]
        if nxt.kind is TokenKind.WORD and nxt.text in ("toppings", "topping"):
            no_toppings_at.append(j)
            consumed[i] = consumed[j] = True
            continue
        if nxt.kind is TokenKind.WORD and nxt.text in ("ice", "iced"):
            ice_off_at.append(j)
            consumed[i] = consumed[j] = True
            continue
        if nxt.kind is TokenKind.WORD and nxt.text in ("sugar", "sweetener", "sweet"):
            sugar_off_at.append(j)
            consumed[i] = consumed[j] = True
            continue
        if nxt.kind is TokenKind.ENTITY and nxt.category in (Category.TOPPING, Category.ADDON):
            consumed[i] = True
            while j < len(tokens):
                if tokens[j].kind is TokenKind.ENTITY and tokens[j].category in (
                    Category.TOPPING, Category.ADDON
                ):
                    negated.add(j)
                    j += 1
                    continue
                if tokens[j].kind is TokenKind.WORD and tokens[j].text in _JOINERS | _ARTICLES \
                        and j + 1 < len(tokens) and (
                            tokens[j + 1].kind is TokenKind.ENTITY
                            or tokens[j + 1].text in _ARTICLES
                        ) and tokens[j + 1].category is not Category.FLAVOR:
                    j += 1
                    continue
                break

    utt = Utterance(text=text, words=plain, drinks=[])
    utt.yes = _has(plain, _YES)
    # "no" that is part of "no boba" or "no ice" is not a "no".
    bare_no = any(
        t.kind is TokenKind.WORD and t.text in ("no", "nope", "nah") and not consumed[i]
        for i, t in enumerate(tokens)
    )
    utt.no = bare_no or _has(plain, tuple(p for p in _NO if p[0] != "no"))
    utt.done = _has(plain, _DONE)
    utt.bye = _has(plain, _BYE)
    utt.menu_question = _has(plain, _MENU_Q)
    utt.status_question = _has(plain, _STATUS_Q) or (
        "ready" in plain and ("my" in plain or "order" in plain or "is" in plain)
    )
    utt.cart_question = _has(plain, _CART_Q)
    utt.availability_question = _has(plain, _AVAILABLE_Q)
    utt.never_mind = _has(plain, _NEVERMIND)
    utt.remove = _has(plain, _REMOVE)
    utt.change = _has(plain, _CHANGE)
    utt.new_drink = _has(plain, _NEW_DRINK)
    utt.ordering = _has(plain, _ORDER_WORDS)
    utt.payment_question = _has(plain, _PAYMENT_Q)
    utt.repeat = _has(plain, _REPEAT)
    if utt.done and "no" in plain and ("more" in plain or "else" in plain):
        utt.no = True  # "no, nothing else" is both

    # Positions: "the second one", "the 2nd drink", "drink number two", "the last one".
    for i, t in enumerate(tokens):
        if t.kind is TokenKind.ORDINAL:
            before = tokens[i - 1].text if i > 0 else ""
            if before in ("a", "an") or (i + 1 < len(tokens) and tokens[i + 1].text == "drink"
                                         and before in ("a", "and")):
                continue  # "a second drink" is a new one
            utt.position = t.position
            consumed[i] = True
        elif t.kind is TokenKind.WORD and t.text == "last" and (
            i + 1 < len(tokens) and tokens[i + 1].text in ("one", "drink", "tea")
        ):
            utt.position = -1
        elif t.kind is TokenKind.NUMBER and i > 0 and tokens[i - 1].text in ("number", "drink") \
                and len(t.value) <= 2 and not utt.status_question:
            utt.position = int(t.value) - 1
            consumed[i] = True

    # Every digit, for phone numbers and order numbers.
    utt.digits = "".join(
        t.value for i, t in enumerate(tokens) if t.kind is TokenKind.NUMBER and not consumed[i]
    )

    # Drinks: split at each flavor, the words before a flavor that introduce it going with it.
    flavor_at = [i for i, t in enumerate(tokens)
                 if t.kind is TokenKind.ENTITY and t.category is Category.FLAVOR]
    starts = [0]
    for k in flavor_at[1:]:
        s = k
        while s > starts[-1] + 1 and (
            tokens[s - 1].text in _ARTICLES | _NEW_DRINK_LEADS | {"one", "and", "then"}
            or tokens[s - 1].kind is TokenKind.NUMBER
        ):
            s -= 1
        if any(starts[-1] <= f < s for f in flavor_at):
            starts.append(s)
    bounds = [*starts, len(tokens)]
    for a, b in itertools.pairwise(bounds):
        utt.drinks.append(_drink(tokens[a:b], a, consumed, negated,
                                 no_toppings_at, ice_off_at, sugar_off_at, lexicon, utt))

    # Announced count: "two drinks" with no flavor anywhere.
    for i, t in enumerate(tokens):
        if t.kind is TokenKind.NUMBER and i + 1 < len(tokens) and \
                tokens[i + 1].text in _COUNT_NOUNS and not flavor_at and \
                len(t.value) <= 2 and not consumed[i]:
            if tokens[i + 1].text == "of" and not (
                i + 2 < len(tokens) and tokens[i + 2].text in ("them", "those", "these")
            ):
                continue
            utt.announced_count = int(t.value)
            utt.digits = utt.digits.replace(t.value, "", 1) if len(utt.digits) < 7 else utt.digits
    return utt


def _drink(
    tokens: list[Token],
    offset: int,
    consumed: list[bool],
    negated: set[int],
    no_toppings_at: list[int],
    ice_off_at: list[int],
    sugar_off_at: list[int],
    lexicon: Lexicon,
    utt: Utterance,
) -> DrinkSpec:
    spec = DrinkSpec()
    menu = lexicon.menu
    run: list[str] = []
    run_lead = ""
    seen_flavor = False
    seen_entity = False

    def close_run(following: str = "") -> None:
        nonlocal run
        if not run:
            return
        phrase = " ".join(run)
        asked_for = utt.ordering or run_lead in _ORDER_LEADS or following in _DRINK_NOUNS
        if run_lead in _NEGATORS or run_lead in ("not", "dont"):
            pass  # "no cheese foam": we don't put it in anyway
        elif run_lead in _TOPPING_LEADS or seen_flavor:
            spec.unknown_toppings.append(phrase)
        elif not seen_entity and spec.flavor is None and asked_for:
            spec.unknown_flavor = phrase
        else:
            utt.unknown.append(phrase)
        run = []

    for k, t in enumerate(tokens):
        i = offset + k
        if t.kind is TokenKind.ENTITY:
            if run and (run_lead in _TOPPING_LEADS or seen_flavor) and t.category in (
                Category.TOPPING, Category.ADDON
            ):
                # "cheese foam" is not "foam": an unknown word before a topping makes an
                # unknown topping, never a wrong one.
                run.append(t.text)
                close_run()
                continue
            close_run()
            seen_entity = True
            if t.category is Category.FLAVOR:
                if spec.unknown_flavor is not None and not seen_flavor:
                    # "a large taro milk tea": words before a flavor describe it; we
                    # make one kind, and the read-back lets the caller object.
                    utt.unknown.append(spec.unknown_flavor)
                    spec.unknown_flavor = None
                spec.flavor = t.value
                seen_flavor = True
                before = tokens[k - 1] if k > 0 else None
                if before is not None and before.kind is TokenKind.NUMBER:
                    spec.quantity = max(1, min(int(tokens[k - 1].value), menu.max_drinks))
            elif t.category is Category.TOPPING:
                target = spec.no_toppings if i in negated else spec.toppings
                if t.value not in target:
                    target.append(t.value)
            elif t.category is Category.ADDON:
                target = spec.no_addons if i in negated else spec.addons
                if t.value not in target:
                    target.append(t.value)
            elif t.category is Category.SWEETNESS:
                spec.sweetness = t.value
            elif t.category is Category.ICE:
                spec.ice = t.value
            continue
        if i in no_toppings_at:
            spec.clear_toppings = True
            continue
        if i in ice_off_at:
            spec.ice = menu.match_ice("no ice") or "no ice"
            continue
        if i in sugar_off_at:
            spec.sweetness = menu.match_sweetness("no sugar") or "0%"
            continue
        if t.kind is TokenKind.WORD and t.text in _SWEET_WORDS | {"sweeter", "sugary"} and (
            t.text in ("sweeter", "sugary")
            or (k > 0 and tokens[k - 1].text in _VAGUE_SWEET_LEADS)
        ) and spec.sweetness is None:
            spec.vague_sweetness = True
            close_run()
            continue
        if t.kind is TokenKind.WORD and not consumed[i] and _is_unknown(t.text, lexicon):
            if not run:
                run_lead = tokens[k - 1].text if k > 0 else ""
            run.append(t.text)
            continue
        close_run(t.text)
    close_run()
    return spec


def _is_unknown(word: str, lexicon: Lexicon) -> bool:
    return (
        word not in _FILLER
        and word not in _INTENT_WORDS
        and word not in lexicon.known_words
        and word not in _ORDINALS
        and word not in _UNITS
        and word not in _TENS
        and not word.isdigit()
    )
