"""The menu as data: parsed from TOML text, matched by name and alias, and turned into the
agent's prompt and function schemas, so a shop edits one file and nothing else.

boba_proto never opens files: the runtime reads the text (``BOBA_MENU``, or the built-in
``importlib.resources.files("boba_proto").joinpath("menu.toml")``) and hands it to
:func:`parse_menu`. Money is integer cents throughout.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Callable
from typing import Annotated, Final

import msgspec

from boba_proto.agent import FunctionSpec
from boba_proto.errors import MenuError
from boba_proto.model import format_dollars
from boba_proto.shop import DAYS, Hours, PrepTimes, parse_day_hours

__all__ = [
    "FILLER_WORDS",
    "FUNCTIONS",
    "ArgKind",
    "FunctionDef",
    "FunctionSpec",
    "Menu",
    "MenuAliases",
    "build_prompt",
    "function_specs",
    "parse_menu",
    "words",
]

MAX_MATCH_TEXT: Final = 200
"""Longer text is never a menu name; refusing it early bounds the matching work."""

MAX_PROMPT_CHARS: Final = 25_000
"""Deepgram truncates a longer prompt (Warning PROMPT_TOO_LONG); a menu must fit."""

_NEGATIONS: Final = frozenset({"no", "not", "without", "none", "dont", "hold", "skip"})
FILLER_WORDS: Final = frozenset({
    "a", "an", "the", "some", "please", "extra", "with", "add", "and", "of", "on", "top",
    "just", "i", "id", "like", "want", "would", "get", "can", "have", "one", "my", "drink",
    "topping", "toppings", "sweet", "sweetness", "level", "ice", "tea", "order", "it",
})
"""Words around a menu name that do not change which name is meant ("a taro milk tea
please"); the local agent's `understand` extends them with conversational filler."""


# --- the menu ----------------------------------------------------------------------------


class MenuAliases(msgspec.Struct, frozen=True, kw_only=True):
    """Per category: what a caller may say (normalised lower case) -> the canonical name."""

    flavors: dict[str, str] = msgspec.field(default_factory=dict)
    toppings: dict[str, str] = msgspec.field(default_factory=dict)
    addons: dict[str, str] = msgspec.field(default_factory=dict)
    sweetness: dict[str, str] = msgspec.field(default_factory=dict)
    ice: dict[str, str] = msgspec.field(default_factory=dict)


class Menu(msgspec.Struct, frozen=True, kw_only=True):
    """A validated menu; every name is canonical (lower case, single spaces)."""

    shop_name: str
    flavors: tuple[str, ...]
    toppings: tuple[str, ...]
    addons: tuple[str, ...]
    sweetness_levels: tuple[str, ...]
    default_sweetness: str
    ice_levels: tuple[str, ...]
    default_ice: str
    drink_price_cents: int
    topping_price_cents: int
    addon_price_cents: int
    max_drinks: int
    addon_requires: dict[str, str] = msgspec.field(default_factory=dict)
    aliases: MenuAliases = msgspec.field(default_factory=MenuAliases)
    hours: Hours | None = None  # None: always open (CONTRACT §12)
    prep: PrepTimes = msgspec.field(default_factory=PrepTimes)

    def match_flavor(self, text: str) -> str | None:
        return _match(text, self.flavors, self.aliases.flavors)

    def match_topping(self, text: str) -> str | None:
        return _match(text, self.toppings, self.aliases.toppings)

    def match_addon(self, text: str) -> str | None:
        return _match(text, self.addons, self.aliases.addons)

    def match_sweetness(self, text: str) -> str | None:
        # A bare number ("50") means a percentage here.
        bare = text.strip()
        if bare.isdigit() and len(bare) <= 3:
            text = bare + "%"
        return _match(text, self.sweetness_levels, self.aliases.sweetness)

    def match_ice(self, text: str) -> str | None:
        return _match(text, self.ice_levels, self.aliases.ice)

    def drink_price(self, n_toppings: int, n_addons: int) -> int:
        """Price in cents of one drink with that many toppings and add-ons."""
        return (
            self.drink_price_cents
            + n_toppings * self.topping_price_cents
            + n_addons * self.addon_price_cents
        )


# --- matching: case-insensitive, whole words, never substrings -----------------------------


def words(text: str) -> tuple[str, ...]:
    """Lower-case words; "50 percent" and "50 %" become "50%", apostrophes vanish.

    The one normalisation of menu phrases: the matcher below and the local agent's
    lexicon (`boba_proto.local_agent.understand`) both key names and aliases by it."""
    lowered = text.lower().replace("'", "").replace("\u2019", "")
    lowered = re.sub(r"(\d+)\s*(?:%|per\s*cent\b)", r"\1%", lowered)
    return tuple(re.findall(r"[^\W_]+%?", lowered))


def _contains_run(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    """Whether `needle` occurs in `haystack` as consecutive whole words."""
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def _match(text: str, names: tuple[str, ...], aliases: dict[str, str]) -> str | None:
    """The canonical name `text` means, or None when it means none or several.

    In order: the whole text is a name or alias; the text is a name or alias as whole
    words plus only filler words ("a taro milk tea please", "extra boba"; the longest
    wins; "cheese foam" is not "foam"); the text is a
    whole-word part of exactly one name ("egg" -> egg pudding). A negation outside the
    matched words ("no boba") never matches.
    """
    if not isinstance(text, str) or len(text) > MAX_MATCH_TEXT:
        return None
    said = words(text)
    if not said:
        return None
    keys = [(words(name), name) for name in names]
    keys += [(words(alias), canonical) for alias, canonical in aliases.items()]
    for key, canonical in keys:
        if key == said:
            return canonical

    def negated(key: tuple[str, ...]) -> bool:
        return any(w in _NEGATIONS and w not in key for w in said)

    def only_filler_besides(key: tuple[str, ...]) -> bool:
        return all(w in key or w in FILLER_WORDS for w in said)

    contained = [
        (len(k), c)
        for k, c in keys
        if _contains_run(said, k) and not negated(k) and only_filler_besides(k)
    ]
    if contained:
        longest = max(n for n, _ in contained)
        best = {c for n, c in contained if n == longest}
        return best.pop() if len(best) == 1 else None
    partial = {c for k, c in keys if _contains_run(k, said) and not negated(k)}
    return partial.pop() if len(partial) == 1 else None


# --- parsing -----------------------------------------------------------------------------

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
_Cents = Annotated[int, msgspec.Meta(ge=0, le=100_000)]


class _RawLevels(msgspec.Struct, forbid_unknown_fields=True):
    levels: Annotated[list[_Name], msgspec.Meta(min_length=1, max_length=20)]
    default: _Name


class _RawPrices(msgspec.Struct, forbid_unknown_fields=True):
    drink_cents: _Cents
    topping_cents: _Cents
    addon_cents: _Cents


class _RawLimits(msgspec.Struct, forbid_unknown_fields=True):
    max_drinks: Annotated[int, msgspec.Meta(ge=1, le=100)]


class _RawRules(msgspec.Struct, forbid_unknown_fields=True):
    addon_requires: dict[str, str] = msgspec.field(default_factory=dict)


class _RawAliases(msgspec.Struct, forbid_unknown_fields=True):
    flavors: dict[str, str] = msgspec.field(default_factory=dict)
    toppings: dict[str, str] = msgspec.field(default_factory=dict)
    addons: dict[str, str] = msgspec.field(default_factory=dict)
    sweetness: dict[str, str] = msgspec.field(default_factory=dict)
    ice: dict[str, str] = msgspec.field(default_factory=dict)


class _RawMenu(msgspec.Struct, forbid_unknown_fields=True):
    flavors: Annotated[list[_Name], msgspec.Meta(min_length=1, max_length=50)]
    sweetness: _RawLevels
    ice: _RawLevels
    prices: _RawPrices
    limits: _RawLimits
    shop_name: Annotated[str, msgspec.Meta(min_length=1, max_length=80)] = "BobaRista"
    toppings: Annotated[list[_Name], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )
    addons: Annotated[list[_Name], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )
    rules: _RawRules = msgspec.field(default_factory=_RawRules)
    aliases: _RawAliases = msgspec.field(default_factory=_RawAliases)
    hours: dict[str, str] | None = None
    prep_minutes_per_drink: Annotated[int, msgspec.Meta(ge=0, le=120)] = 3
    prep_minutes_min: Annotated[int, msgspec.Meta(ge=0, le=240)] = 5


def _canonical(name: str) -> str:
    return " ".join(name.lower().split())


def _key_path(*parts: str) -> str:
    """TOML-style key path; keys that are not bare words are quoted."""
    out = []
    for part in parts:
        out.append(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"')
    return ".".join(out)


def _names(source: str, path: str, raw: list[str]) -> tuple[str, ...]:
    seen: dict[tuple[str, ...], int] = {}
    out = []
    for i, name in enumerate(raw):
        key = words(name)
        if not key:
            raise MenuError(f"{source}: {path}[{i}]: {name!r} has no letters or digits")
        if key in seen:
            raise MenuError(
                f"{source}: {path}[{i}]: {name!r} is the same name as {path}[{seen[key]}]"
            )
        seen[key] = i
        out.append(_canonical(name))
    return tuple(out)


def _aliases(
    source: str, category: str, raw: dict[str, str], names: tuple[str, ...]
) -> dict[str, str]:
    name_keys = {words(n): n for n in names}
    out: dict[str, str] = {}
    alias_keys: dict[tuple[str, ...], str] = {}
    for alias, target in raw.items():
        path = _key_path("aliases", category, alias)
        canonical = _canonical(target)
        if canonical not in names:
            raise MenuError(f"{source}: {path}: {target!r} is not one of the {category}")
        key = words(alias)
        if not key or len(alias) > 60:
            raise MenuError(f"{source}: {path}: an alias needs 1 to 60 characters of words")
        clash = name_keys.get(key)
        if clash is not None and clash != canonical:
            raise MenuError(f"{source}: {path}: {alias!r} is already the name {clash!r}")
        if key in alias_keys and alias_keys[key] != canonical:
            raise MenuError(f"{source}: {path}: {alias!r} already means {alias_keys[key]!r}")
        alias_keys[key] = canonical
        out[_canonical(alias)] = canonical
    return out


def _validation_message(source: str, err: msgspec.ValidationError) -> str:
    text = str(err)
    m = re.fullmatch(r"(.*) - at `\$\.?(.*)`", text, flags=re.DOTALL)
    if m is None:
        return f"{source}: (top level): {text}"
    what, path = m.groups()
    return f"{source}: {path or '(top level)'}: {what}"


ZoneCheck = Callable[[str], bool]
"""Whether a time zone name exists (the runtime asks `zoneinfo`; boba_proto reads no files)."""


def parse_menu(text: str | bytes, *, source: str, zone_exists: ZoneCheck | None = None) -> Menu:
    """Parse and check a menu file's text; raises MenuError naming `source` and the fault.

    Syntax errors name the line and column (``menu.toml:3:5: ...``); `[hours]` errors name
    the line (``menu.toml:12: hours.mon: ...``); everything else names the key path
    (``menu.toml: flavors[2]: ...``). `zone_exists` checks `hours.timezone`.
    """
    if isinstance(text, bytes):
        raw_bytes = text
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw_bytes[: exc.start].count(b"\n") + 1
            raise MenuError(f"{source}:{line}: the file is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        lineno, colno = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        if isinstance(lineno, int) and isinstance(colno, int):  # Python >= 3.14
            raise MenuError(f"{source}:{lineno}:{colno}: {getattr(exc, 'msg', exc)}") from None
        raise MenuError(_syntax_message(source, text, str(exc))) from None
    try:
        raw = msgspec.convert(data, _RawMenu)
    except msgspec.ValidationError as exc:
        raise MenuError(_validation_message(source, exc)) from None
    menu = _build(source, raw)
    if raw.hours is not None:
        menu = msgspec.structs.replace(
            menu, hours=_hours(source, text, raw.hours, zone_exists)
        )
    prompt_chars = len(build_prompt(menu))
    if prompt_chars > MAX_PROMPT_CHARS:
        raise MenuError(
            f"{source}: the menu is too big: the agent's prompt would be {prompt_chars} "
            f"characters, over the agent's limit of {MAX_PROMPT_CHARS}"
        )
    return menu


def _syntax_message(source: str, text: str, message: str) -> str:
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if m is not None:
        return f"{source}:{m.group(1)}:{m.group(2)}: {message[: m.start()]}"
    m = re.search(r"\s*\(at end of document\)$", message)
    if m is not None:
        lines = text.split("\n")
        return f"{source}:{len(lines)}:{len(lines[-1]) + 1}: {message[: m.start()]}"
    return f"{source}: {message}"


def _line_of(text: str, table: str, key: str | None) -> int | None:
    """The line of `[table]` (key None) or of `key = ...` inside it, for messages."""
    current = None
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]\s*(#.*)?", stripped)
        if header is not None:
            current = header.group(1).strip()
            if key is None and current == table:
                return number
            continue
        if current == table and key is not None:
            m = re.match(r"""(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""", stripped)
            if m is not None and key in m.groups():
                return number
    return None


def _hours(source: str, text: str, raw: dict[str, str], zone_exists: ZoneCheck | None) -> Hours:
    def fail(key: str | None, message: str) -> MenuError:
        line = _line_of(text, "hours", key) or _line_of(text, "hours", None)
        where = f"{source}:{line}" if line is not None else source
        path = f"hours.{key}" if key is not None else "hours"
        return MenuError(f"{where}: {path}: {message}")

    zone = raw.get("timezone")
    if zone is None:
        raise fail(None, 'needs a timezone, e.g. timezone = "America/Los_Angeles"')
    if zone_exists is not None and not zone_exists(zone):
        raise fail("timezone", f"{zone!r} is not a time zone name (like \"America/Los_Angeles\")")
    days = {}
    for key, value in raw.items():
        if key == "timezone":
            continue
        if key not in DAYS:
            days_list = ", ".join(DAYS)
            raise fail(key, f"unknown key; the days are {days_list} (a day left out is closed)")
        parsed = parse_day_hours(value)
        if isinstance(parsed, str):
            raise fail(key, parsed)
        days[key] = parsed
    return Hours(timezone=zone, days=days)


def _level(source: str, path: str, raw: _RawLevels) -> tuple[tuple[str, ...], str]:
    levels = _names(source, f"{path}.levels", raw.levels)
    default = _canonical(raw.default)
    if default not in levels:
        raise MenuError(f"{source}: {path}.default: {raw.default!r} is not one of {path}.levels")
    return levels, default


def _build(source: str, raw: _RawMenu) -> Menu:
    flavors = _names(source, "flavors", raw.flavors)
    toppings = _names(source, "toppings", raw.toppings)
    addons = _names(source, "addons", raw.addons)
    sweetness, default_sweetness = _level(source, "sweetness", raw.sweetness)
    ice, default_ice = _level(source, "ice", raw.ice)
    requires: dict[str, str] = {}
    for addon, topping in raw.rules.addon_requires.items():
        path = _key_path("rules", "addon_requires", addon)
        if _canonical(addon) not in addons:
            raise MenuError(f"{source}: {path}: {addon!r} is not one of the addons")
        if _canonical(topping) not in toppings:
            raise MenuError(f"{source}: {path}: {topping!r} is not one of the toppings")
        requires[_canonical(addon)] = _canonical(topping)
    aliases = MenuAliases(
        flavors=_aliases(source, "flavors", raw.aliases.flavors, flavors),
        toppings=_aliases(source, "toppings", raw.aliases.toppings, toppings),
        addons=_aliases(source, "addons", raw.aliases.addons, addons),
        sweetness=_aliases(source, "sweetness", raw.aliases.sweetness, sweetness),
        ice=_aliases(source, "ice", raw.aliases.ice, ice),
    )
    return Menu(
        shop_name=" ".join(raw.shop_name.split()),
        flavors=flavors,
        toppings=toppings,
        addons=addons,
        sweetness_levels=sweetness,
        default_sweetness=default_sweetness,
        ice_levels=ice,
        default_ice=default_ice,
        drink_price_cents=raw.prices.drink_cents,
        topping_price_cents=raw.prices.topping_cents,
        addon_price_cents=raw.prices.addon_cents,
        max_drinks=raw.limits.max_drinks,
        addon_requires=requires,
        aliases=aliases,
        prep=PrepTimes(per_drink=raw.prep_minutes_per_drink, minimum=raw.prep_minutes_min),
    )


# --- the agent's functions, generated from the menu -----------------------------------------


class ArgKind(enum.Enum):
    """Every argument any agent function takes; the value is the JSON argument name."""

    FLAVOR = "flavor"
    TOPPINGS = "toppings"
    ADDONS = "addons"
    SWEETNESS = "sweetness"
    ICE = "ice"
    INDEX = "index"
    PHONE = "phone"
    ORDER_NUMBER = "order_number"
    NAME = "name"


DRINK_FIELDS: Final = (ArgKind.FLAVOR, ArgKind.TOPPINGS, ArgKind.SWEETNESS, ArgKind.ICE,
                       ArgKind.ADDONS)


class FunctionDef(msgspec.Struct, frozen=True, kw_only=True):
    """One agent function (CONTRACT §5): the single table both the schemas and the
    argument decoder in `tools` read, so the two cannot drift apart."""

    name: str
    description: str
    args: tuple[ArgKind, ...] = ()
    required: tuple[ArgKind, ...] = ()


FUNCTIONS: Final = (
    FunctionDef(
        name="menu_summary",
        description="Get the menu: flavors, toppings, add-ons, sweetness and ice levels, "
        "and prices. Call it when the caller asks what there is.",
    ),
    FunctionDef(
        name="add_to_cart",
        description="Stage ONE drink the caller described. It is not in the order yet: "
        "read the returned pending_item back (flavor, toppings, add-ons, sweetness, ice, "
        "price) and ask the caller to confirm, then call confirm_pending_to_cart. "
        "Leave out sweetness or ice the caller did not mention: the defaults apply.",
        args=DRINK_FIELDS,
        required=(ArgKind.FLAVOR,),
    ),
    FunctionDef(
        name="update_pending_item",
        description="Change the staged drink (the one waiting for confirmation). Only the "
        "fields given change; toppings and addons, when given, replace the whole list.",
        args=DRINK_FIELDS,
    ),
    FunctionDef(
        name="confirm_pending_to_cart",
        description="The caller confirmed the staged drink: move it into the order.",
    ),
    FunctionDef(
        name="clear_pending_item",
        description="The caller does not want the staged drink: discard it.",
    ),
    FunctionDef(
        name="get_cart",
        description="The drinks in the order so far, their count, the total, and the "
        "staged drink if there is one.",
    ),
    FunctionDef(
        name="remove_from_cart",
        description="Remove one drink from the order by its position (0 = the first).",
        args=(ArgKind.INDEX,),
        required=(ArgKind.INDEX,),
    ),
    FunctionDef(
        name="modify_cart_item",
        description="Change a drink already in the order, by its position (0 = the first). "
        "Only the fields given change; toppings and addons, when given, replace the list.",
        args=(ArgKind.INDEX, *DRINK_FIELDS),
        required=(ArgKind.INDEX,),
    ),
    FunctionDef(
        name="set_sweetness_ice",
        description="Set the sweetness and/or ice of a drink in the order; without index, "
        "the last drink added.",
        args=(ArgKind.INDEX, ArgKind.SWEETNESS, ArgKind.ICE),
    ),
    FunctionDef(
        name="save_phone_number",
        description="Save the phone number the order's text messages go to, and the "
        "caller's first name for the cup if they gave one. Read the returned number back "
        "to the caller.",
        args=(ArgKind.PHONE, ArgKind.NAME),
        required=(ArgKind.PHONE,),
    ),
    FunctionDef(
        name="checkout_order",
        description="Place the order once the caller is done and has confirmed it. Needs "
        "at least one drink and a phone number (saved before, or given here). Returns the "
        "order number and ready_in_minutes: only ever tell the caller the number this "
        "returns, digit by digit.",
        args=(ArgKind.PHONE, ArgKind.NAME),
    ),
    FunctionDef(
        name="order_status",
        description="Look up the status of this caller's orders (matched on their phone "
        "number), or of one order by its number.",
        args=(ArgKind.ORDER_NUMBER,),
    ),
    FunctionDef(
        name="order_is_placed",
        description="Whether this call has already placed its order, and its number.",
    ),
    FunctionDef(
        name="end_call",
        description="Hang up after your goodbye. Call it once the caller is done.",
    ),
    FunctionDef(
        name="transfer_to_staff",
        description="Put the caller through to a person at the shop (they asked for one, "
        "or have a question you cannot answer, such as allergies). Say one short sentence "
        "first; the call is transferred once it has played.",
    ),
)

TRANSFER_FUNCTION: Final = "transfer_to_staff"
"""Offered only when the shop has a transfer number (CONTRACT §12)."""


def function_def(name: str) -> FunctionDef | None:
    for fn in FUNCTIONS:
        if fn.name == name:
            return fn
    return None


def _names_schema(names: tuple[str, ...], description: str) -> dict[str, object]:
    items: dict[str, object] = {"type": "string", "enum": list(names)} if names else {
        "type": "string"
    }
    schema: dict[str, object] = {"type": "array", "items": items, "description": description}
    if not names:
        schema["maxItems"] = 0
    return schema


def _arg_schema(menu: Menu, kind: ArgKind) -> dict[str, object]:
    if kind is ArgKind.FLAVOR:
        return {"type": "string", "enum": list(menu.flavors), "description": "The flavor."}
    if kind is ArgKind.TOPPINGS:
        return _names_schema(menu.toppings, "Every topping for the drink; [] for none.")
    if kind is ArgKind.ADDONS:
        return _names_schema(menu.addons, "Every add-on for the drink; [] for none.")
    if kind is ArgKind.SWEETNESS:
        return {
            "type": "string",
            "enum": list(menu.sweetness_levels),
            "description": f"Sweetness level (default {menu.default_sweetness}).",
        }
    if kind is ArgKind.ICE:
        return {
            "type": "string",
            "enum": list(menu.ice_levels),
            "description": f"Ice level (default {menu.default_ice}).",
        }
    if kind is ArgKind.INDEX:
        return {
            "type": "integer",
            "minimum": 0,
            "maximum": menu.max_drinks - 1,
            "description": "Position of the drink in the order, 0 for the first.",
        }
    if kind is ArgKind.PHONE:
        return {
            "type": "string",
            "description": "The phone number as the caller said or keyed it, "
            "e.g. 415 555 1234.",
        }
    if kind is ArgKind.NAME:
        return {
            "type": "string",
            "description": "The caller's first name for the cup, only if they gave one.",
        }
    return {"type": "string", "description": "The 4-digit order number, e.g. 4782."}


def function_specs(menu: Menu, *, transfer: bool = False) -> list[FunctionSpec]:
    """Every CONTRACT §5 function, with JSON-schema parameters whose enums come from `menu`;
    `transfer_to_staff` only with `transfer` (a transfer number is set)."""
    specs = []
    for fn in FUNCTIONS:
        if fn.name == TRANSFER_FUNCTION and not transfer:
            continue
        parameters: dict[str, object] = {
            "type": "object",
            "properties": {kind.value: _arg_schema(menu, kind) for kind in fn.args},
        }
        if fn.required:
            parameters["required"] = [kind.value for kind in fn.required]
        specs.append(FunctionSpec(name=fn.name, description=fn.description,
                                  parameters=parameters))
    return specs


# --- the prompt ----------------------------------------------------------------------------


def _said_as(aliases: dict[str, str]) -> str:
    by_target: dict[str, list[str]] = {}
    for alias, target in aliases.items():
        by_target.setdefault(target, []).append(f'"{alias}"')
    return "; ".join(
        f"{', '.join(v)} {'means' if len(v) == 1 else 'mean'} {k}" for k, v in by_target.items()
    )


def build_prompt(menu: Menu, *, transfer: bool = False) -> str:
    """The agent's system prompt, generated from the menu (under Deepgram's 25,000 chars);
    `transfer`: the caller can be put through to staff (`transfer_to_staff`)."""
    rules = [
        f"The {addon} only comes with {topping}; if the caller wants it, the drink must "
        f"also have {topping}."
        for addon, topping in menu.addon_requires.items()
    ]
    all_aliases = {
        **menu.aliases.flavors, **menu.aliases.toppings, **menu.aliases.addons,
        **menu.aliases.sweetness, **menu.aliases.ice,
    }
    lines = [
        f"You are the {menu.shop_name}, the friendly voice that takes boba tea orders on "
        "the shop's phone line. You are speaking on a phone call: answer in one or two "
        "short spoken sentences, no lists, no markdown, no emoji. Say prices the way "
        "people say them (\"six twenty-five\"). Never invent menu items, prices, order "
        "numbers or order statuses: they come only from the functions.",
        "",
        "MENU",
        f"Flavors: {', '.join(menu.flavors)}. "
        f"Every drink is {format_dollars(menu.drink_price_cents)}.",
        f"Toppings, {format_dollars(menu.topping_price_cents)} each: "
        f"{', '.join(menu.toppings) or 'none'}.",
        f"Add-ons, {format_dollars(menu.addon_price_cents)} each: "
        f"{', '.join(menu.addons) or 'none'}.",
        f"Sweetness: {', '.join(menu.sweetness_levels)}; {menu.default_sweetness} unless the "
        "caller says otherwise.",
        f"Ice: {', '.join(menu.ice_levels)}; {menu.default_ice} unless the caller says "
        "otherwise.",
        *rules,
        f"At most {menu.max_drinks} drinks per order.",
    ]
    if all_aliases:
        lines.append(f"Callers may say: {_said_as(all_aliases)}.")
    lines += [
        "Anything else is not on the menu: say so kindly and offer what there is.",
        "",
        "HOW TO TAKE AN ORDER",
        "1. For each drink, call add_to_cart with what the caller said. It only stages the "
        "drink. Read the staged drink back briefly (flavor, toppings, sweetness, ice, price) "
        "and ask if that is right.",
        "2. If the caller says yes, call confirm_pending_to_cart. If they change something, "
        "call update_pending_item; if they do not want it, clear_pending_item.",
        "3. Drinks already in the order: get_cart to review, modify_cart_item or "
        "set_sweetness_ice to change, remove_from_cart to remove (positions start at 0).",
        "4. After each drink, ask \"Anything else?\" Only when the caller says that is "
        "all, go on.",
        "5. Ask for the phone number we should text when the order is ready, and a first "
        "name for the cup if they like, and call save_phone_number; read back the number "
        "it returns.",
        "6. Read back the whole order and total, and when the caller agrees call "
        "checkout_order. Then tell them the order number it returns digit by digit "
        "(\"4, 7, 8, 2\"), the total, and the wait: \"ready in about\" ready_in_minutes "
        "minutes. Say you will text them when it is ready, and say goodbye.",
        "7. After the goodbye, call end_call.",
        "",
        "OTHER REQUESTS",
        "If the caller asks about an order they already placed, call order_status. "
        "order_is_placed tells whether this call already placed its order. An order can be "
        "placed only once per call; after that, new drinks need a new call.",
        "When a function answers ok false, tell the caller its error sentence in your own "
        "words and help them fix it. Do not call the same function again with the same "
        "arguments.",
        "If the caller keys in digits, you will be told 'The caller typed ...': use them "
        "as the phone number or order number they were asked for.",
        "Always read order numbers digit by digit (\"4, 7, 8, 2\"), never as one big "
        "number.",
        "Items can sell out during the day: if a function says one is sold out, say so "
        "and offer what there is; menu_summary lists only what is available now.",
    ]
    if transfer:
        lines.append(
            "If the caller asks for a person, or asks something you cannot answer (such as "
            "allergies or ingredients), say one short sentence that you are putting them "
            "through, then call transfer_to_staff."
        )
    return "\n".join(lines)
