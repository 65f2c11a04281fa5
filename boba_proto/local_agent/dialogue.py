"""The local agent's "think" step: a deterministic dialogue manager for the shop's menu.

`LocalDialogue(menu).on_user_text(text) -> list[Step]` and `.on_function_result(id,
content) -> list[Step]` are the whole API. A `Step` is `Say(text)` (the agent speaks) or
`CallFunction(id, name, arguments)` (the agent asks the bridge to run one of the CONTRACT
§5 functions). A list of steps ends with at most one `CallFunction`, and the dialogue
continues only when its result comes back: the functions stay the single source of truth
(prices, validation, refusals, order numbers) exactly as for the real agent, whose prompt
(`boba_proto.menu.build_prompt`) this follows step by step: stage a drink, read it back,
confirm it; ask for the phone number and read it back; check out; read the order number;
say goodbye and `end_call`.

Pure and synchronous: no I/O, no clock, no randomness. Each user turn runs as a small
generator that yields steps and receives function results, which keeps multi-call turns
("yes, and a black milk tea" = confirm, then stage) readable as straight-line code.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Generator
from dataclasses import replace
from typing import Any, Final

import msgspec

from boba_proto.errors import LocalProtocolError, RemoteProtocolError
from boba_proto.local_agent.understand import (
    NUMBER_WORDS,
    ORDINAL_WORDS,
    DrinkSpec,
    Lexicon,
    Utterance,
    understand,
)
from boba_proto.menu import Menu
from boba_proto.model import Drink, dollars_to_cents, format_dollars
from boba_proto.ordering import describe_drink, spoken_list

__all__ = ["CallFunction", "DialoguePhase", "LocalDialogue", "Say", "Step"]


class Say(msgspec.Struct, frozen=True):
    """The agent says `text` (a ConversationText plus audio on the wire)."""

    text: str


class CallFunction(msgspec.Struct, frozen=True):
    """The agent calls a client-side function; `arguments` is a JSON string, as on the wire."""

    id: str
    name: str
    arguments: str


Step = Say | CallFunction
Result = dict[str, Any]
Turn = Generator[Step, Result, None]
"""A user turn: yields steps; a `CallFunction` is answered with its result, a `Say` with {}."""


class DialoguePhase(enum.Enum):
    """Where the conversation is; what a bare "yes" or "no" means depends on it."""

    TAKING = "taking"  # waiting for a drink, or for "that's all"
    CONFIRMING_DRINK = "confirming_drink"  # a staged drink was read back
    ASKING_PHONE = "asking_phone"  # the order is done; which number do we text?
    CONFIRMING_PHONE = "confirming_phone"  # the number was read back
    STATUS_PHONE = "status_phone"  # asked for the number to look orders up with
    PLACED = "placed"  # the order is committed; anything else?
    ENDED = "ended"  # end_call was answered


_ORDINAL_NAMES: Final = ORDINAL_WORDS  # "first" ... "tenth"
_COUNT_NAMES: Final = tuple(word for word, n in NUMBER_WORDS.items() if n <= 10)
_STATUS_WORDS: Final = {
    "received": "is being prepared",
    "ready": "is ready for pickup",
    "picked_up": "has been picked up",
    "cancelled": "was cancelled",
}


def _ordinal(index: int) -> str:
    return _ORDINAL_NAMES[index] if 0 <= index < len(_ORDINAL_NAMES) else f"number {index + 1}"


def _count(n: int) -> str:
    return _COUNT_NAMES[n] if 0 <= n < len(_COUNT_NAMES) else str(n)


def _dollars(value: object) -> str:
    """A function result's dollar amount, said as the menu says prices."""
    return format_dollars(dollars_to_cents(value))


def _drink_count(n: int) -> str:
    """ "one drink", "two drinks": a count of drinks as said."""
    return f"{_count(n)} {'drink' if n == 1 else 'drinks'}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def describe(item: Result, *, with_price: bool = True) -> str:
    """ "a taro milk tea with boba, 50% sweet, regular ice, $6.25" from a result's item
    (`model.drink_to_json`'s shape), in `ordering.describe_drink`'s words."""
    drink = Drink(
        flavor=str(item.get("flavor", "drink")),
        toppings=tuple(str(x) for x in item.get("toppings", [])),
        addons=tuple(str(x) for x in item.get("addons", [])),
        sweetness=str(item.get("sweetness", "")),
        ice=str(item.get("ice", "")),
        price_cents=dollars_to_cents(item.get("price")),
    )
    text = f"{_article(drink.flavor)} {describe_drink(drink)}"
    if with_price and "price" in item:
        text += f", {format_dollars(drink.price_cents)}"
    return text


def spoken_digits(digits: str) -> str:
    """ "4782" -> "4 7 8 2": how a number is read out, digit by digit."""
    return " ".join(digits)


def spoken_phone(e164: str) -> str:
    """ "+14155550142" -> "4 1 5, 5 5 5, 0 1 4 2" (North American numbers grouped)."""
    digits = "".join(c for c in e164 if c.isdigit())
    if e164.startswith("+1") and len(digits) == 11:
        national = digits[1:]
        return ", ".join(spoken_digits(g) for g in (national[:3], national[3:6], national[6:]))
    return spoken_digits(digits)


class LocalDialogue:
    """One call's conversation; see the module docstring for the contract."""

    def __init__(self, menu: Menu) -> None:
        self.menu = menu
        self.lexicon = Lexicon(menu)
        self.phase = DialoguePhase.TAKING
        # A mirror of the order as the functions last reported it.
        self.items: list[Result] = []
        self.pending: Result | None = None
        self.phone: str | None = None
        self.phone_confirmed = False
        self.order_number: str | None = None
        # What the caller told us that is not in the order yet.
        self._expected: int | None = None  # "two drinks"
        self._queue: list[DrinkSpec] = []  # more drinks from one sentence, staged one by one
        self._partial: DrinkSpec | None = None  # a drink still missing its flavor
        self._offer: tuple[str, DrinkSpec, int | None] | None = None  # "add vanilla cream?"
        self._done = False  # the caller finished choosing drinks
        self._status_order_number: str | None = None
        self._retry_checkout = False  # "I couldn't place the order; shall I try again?"
        # The function call in flight, and the turn waiting for it.
        self._calls = 0
        self._awaiting: tuple[str, str, Result] | None = None  # id, name, arguments
        self._turn: Turn | None = None

    # --- the API -----------------------------------------------------------------------

    @property
    def awaiting_function(self) -> str | None:
        """The id of the function call whose result the dialogue waits for, if any."""
        return self._awaiting[0] if self._awaiting is not None else None

    @property
    def ended(self) -> bool:
        return self.phase is DialoguePhase.ENDED

    def on_user_text(self, text: str) -> list[Step]:
        """The caller said `text`; what the agent says and calls next."""
        if self._awaiting is not None:
            raise LocalProtocolError("on_user_text while a function result is awaited")
        if self.phase is DialoguePhase.ENDED:
            return []
        return self._drive(self._respond(understand(self.lexicon, text)), None)

    def on_function_result(self, call_id: str, content: str | Result) -> list[Step]:
        """The bridge answered function call `call_id` with `content` (its JSON string)."""
        if self._awaiting is None or self._awaiting[0] != call_id or self._turn is None:
            raise RemoteProtocolError(
                f"a FunctionCallResponse for {call_id!r}, which was not asked for"
            )
        _, name, arguments = self._awaiting
        result = _decode_result(content)
        self._awaiting = None
        self._mirror(name, arguments, result)
        turn, self._turn = self._turn, None
        return self._drive(turn, result)

    # --- running a turn ----------------------------------------------------------------

    def _drive(self, turn: Turn, result: Result | None) -> list[Step]:
        """Run `turn` until it ends or calls a function; `result` resumes a waiting turn."""
        steps: list[Step] = []
        try:
            step = next(turn) if result is None else turn.send(result)
            while True:
                steps.append(step)
                if isinstance(step, CallFunction):
                    self._turn = turn
                    return steps
                step = turn.send({})
        except StopIteration:
            return steps

    def _call(self, name: str, **arguments: Any) -> CallFunction:
        self._calls += 1
        call_id = f"local-fc-{self._calls}"
        self._awaiting = (call_id, name, arguments)
        return CallFunction(id=call_id, name=name, arguments=json.dumps(arguments))

    def _mirror(self, name: str, arguments: Result, result: Result) -> None:
        """Keep our picture of the order in step with what the functions say."""
        if not result.get("ok"):
            return
        if name in ("add_to_cart", "update_pending_item"):
            self.pending = result.get("pending_item")
        elif name == "confirm_pending_to_cart":
            self.items.append(result.get("item") or {})
            self.pending = None
        elif name == "clear_pending_item":
            self.pending = None
        elif name == "remove_from_cart":
            index = arguments.get("index")
            if isinstance(index, int) and 0 <= index < len(self.items):
                del self.items[index]
        elif name in ("modify_cart_item", "set_sweetness_ice"):
            index = arguments.get("index", len(self.items) - 1)
            if isinstance(index, int) and 0 <= index < len(self.items):
                self.items[index] = result.get("item") or {}
        elif name == "get_cart":
            self.items = list(result.get("items") or [])
            self.pending = result.get("pending_item")
        elif name == "save_phone_number":
            self.phone = str(result.get("phone"))
        elif name == "checkout_order":
            self.order_number = str(result.get("order_number"))
            self.items = list(result.get("items") or self.items)
            self.pending = None
            self.phone = str(result.get("phone") or self.phone)

    # --- the conversation --------------------------------------------------------------

    def _respond(self, u: Utterance) -> Turn:
        phase = self.phase
        if u.menu_question and not u.has_drink:
            yield from self._menu()
            return
        if u.availability_question:
            yield from self._availability(u)
            return
        if u.status_question and not u.has_drink:
            yield from self._status(u.order_number)
            return
        if u.cart_question and not u.has_drink:
            yield from self._read_cart()
            return
        if u.payment_question and not u.has_drink:
            yield Say(f"I can't take payments on this line. {self._prompt()}")
            return
        vague = next((d for d in u.drinks if d.vague_sweetness and not d.sweetness), None)
        if vague is not None and phase is not DialoguePhase.PLACED:
            levels = spoken_list(self.menu.sweetness_levels, "or")
            rest = replace(vague, vague_sweetness=False)
            if phase is not DialoguePhase.CONFIRMING_DRINK and rest.has_content:
                self._partial = rest  # the rest waits for the level
            yield Say(f"How sweet would you like it? We do {levels}.")
            return
        if phase is DialoguePhase.PLACED:
            yield from self._after_placed(u)
            return
        if len(u.digits) >= 7 and not u.has_drink:
            yield from self._save_phone(u.digits)
            return
        if phase is DialoguePhase.STATUS_PHONE:
            yield Say("Sorry, I didn't get the number. Could you say it again, with the area code?")
            return
        retry, self._retry_checkout = self._retry_checkout, False
        if retry and u.yes and not u.no and not u.has_drink:
            yield from self._checkout()
            return
        if self._offer is not None:
            offer, self._offer = self._offer, None
            if u.yes and not u.has_drink and not u.no:
                kind, spec, index = offer
                yield from self._apply(kind, spec, index)
                return
        if phase is DialoguePhase.ASKING_PHONE and not u.has_drink and not u.bye:
            if u.digits:
                yield Say(f"I only got {spoken_digits(u.digits)}. Could you say the whole number, "
                          "with the area code?")
            else:
                yield Say("What phone number should we text when your order is ready?")
            return
        if phase is DialoguePhase.CONFIRMING_PHONE and not u.has_drink:
            if u.no:
                self.phase = DialoguePhase.ASKING_PHONE
                self.phone_confirmed = False
                yield Say("Sorry about that. What's the right number?")
                return
            if u.yes or u.done:
                self.phone_confirmed = True
                if self._done:
                    yield from self._checkout()
                    return
                # A drink read back before the number still waits for its OK.
                self.phase = (DialoguePhase.CONFIRMING_DRINK if self.pending is not None
                              else DialoguePhase.TAKING)
                yield Say(f"Great, I've got your number. {self._prompt()}")
                return
            yield Say(f"Is {spoken_phone(self.phone or '')} the right number?")
            return
        if phase is DialoguePhase.CONFIRMING_DRINK and self.pending is not None:
            yield from self._confirming(u)
            return
        yield from self._taking(u)

    def _confirming(self, u: Utterance) -> Turn:
        assert self.pending is not None
        first = next((d for d in u.drinks if d.has_content), None)
        if u.remove and u.position is not None and u.position < len(self.items):
            yield from self._remove(u.position)
            return
        if u.remove and first is None and u.position is None and (
            {"order", "everything", "all"} & set(u.words)
        ):
            yield from self._remove_all()
            return
        if u.never_mind or (u.remove and first is None):
            self._queue.clear()
            result = yield self._call("clear_pending_item")
            self.phase = DialoguePhase.TAKING
            if result.get("ok"):
                yield Say(f"Okay, I've dropped that one. {self._prompt()}")
            else:
                yield Say(str(result.get("error")))
            return
        if first is not None:
            is_new = (
                first.flavor is not None
                and (u.new_drink or u.yes or len(u.drinks) > 1)
                and not u.change
            )
            if is_new:
                ok = yield from self._confirm_pending(announce=False)
                if ok:
                    yield from self._stage_all(u)
                return
            yield from self._update_pending(first)
            if len(u.drinks) > 1:
                self._queue.extend(d for d in u.drinks[1:] if d.has_content)
            return
        if u.yes or u.done or u.bye:
            ok = yield from self._confirm_pending(announce=not (u.done or u.bye))
            if ok and (u.done or u.bye):
                yield from self._finish()
            return
        if u.no:
            yield Say("No problem. What would you like to change?")
            return
        yield from self._clarify(u)

    def _taking(self, u: Utterance) -> Turn:
        drinks = [d for d in u.drinks if d.has_content]
        if u.remove and not drinks and u.position is None and (
            {"order", "everything", "all"} & set(u.words)
        ):
            yield from self._remove_all()
            return
        if u.remove and u.position is not None:
            yield from self._remove(u.position)
            return
        if u.remove and drinks and drinks[0].flavor and not drinks[0].changes_only \
                and not any(d.toppings or d.addons for d in drinks):
            index = next((i for i, d in enumerate(self.items)
                          if d.get("flavor") == drinks[0].flavor), None)
            if index is not None:
                yield from self._remove(index)
                return
        if drinks:
            first = drinks[0]
            if first.changes_only and self._partial is None and self.items and (
                u.change or u.position is not None or not u.ordering
            ):
                index = u.position if u.position is not None else len(self.items) - 1
                if index < 0:
                    index = len(self.items) - 1
                yield from self._modify(index, first)
                return
            if first.flavor is not None and self.items and u.change and not u.new_drink \
                    and len(drinks) == 1 and (u.position is not None or first.quantity == 1) \
                    and not u.ordering:
                index = u.position if u.position is not None and u.position >= 0 \
                    else len(self.items) - 1
                yield from self._modify(index, first)
                return
            yield from self._stage_all(u)
            return
        if u.repeat and self.items:
            last = self.items[-1]
            spec = DrinkSpec(
                flavor=str(last.get("flavor")),
                toppings=[str(t) for t in last.get("toppings", [])],
                addons=[str(a) for a in last.get("addons", [])],
                sweetness=str(last.get("sweetness")),
                ice=str(last.get("ice")),
            )
            yield from self._stage(spec, lead="Another one: ")
            return
        if u.announced_count is not None:
            n = u.announced_count
            if not 1 <= n <= self.menu.max_drinks:
                yield Say(f"An order can have up to {self.menu.max_drinks} drinks. "
                          "How many would you like?")
                return
            self._expected = len(self.items) + n
            yield Say(f"Sure, {_drink_count(n)}. What would you like for the "
                      f"{_ordinal(len(self.items))} one?")
            return
        if u.never_mind:
            self._partial = None
            self._queue.clear()
            yield Say(f"Okay. {self._prompt()}")
            return
        if u.done or u.bye or (u.no and (self.items or self.pending)):
            if not self.items and not u.bye:
                yield Say("There's nothing in your order yet. What would you like to drink?")
                return
            if not self.items:
                yield from self._end_call()
                return
            yield from self._finish()
            return
        if u.unknown and (u.ordering or self._partial is not None):
            spec = replace(self._partial or DrinkSpec(), unknown_flavor=u.unknown[0])
            self._partial = None
            yield from self._stage(spec)
            return
        if u.yes and not u.unknown:
            yield Say("Great, what would you like?" if not self.items
                      else "Sure, what else would you like?")
            return
        if u.no and not u.unknown:
            yield Say("No problem. What would you like to drink?")
            return
        yield from self._clarify(u)

    def _after_placed(self, u: Utterance) -> Turn:
        if u.has_drink or u.remove or u.change:
            # The functions refuse changes to a placed order with a sentence: read it.
            spec = next((d for d in u.drinks if d.has_content), DrinkSpec())
            result = yield self._call("add_to_cart", **_stage_arguments(spec))
            yield Say(f"{result.get('error', 'Your order is already placed.')} "
                      "Anything else I can help with?")
            return
        if u.yes and not (u.no or u.done or u.bye):
            yield Say("Sure, what can I help you with?")
            return
        if u.no or u.done or u.bye or u.never_mind:
            yield from self._end_call()
            return
        yield Say("Is there anything else I can help you with?")

    # --- drinks ------------------------------------------------------------------------

    def _stage_all(self, u: Utterance) -> Turn:
        drinks = [d for d in u.drinks if d.has_content]
        queue: list[DrinkSpec] = []
        for spec in drinks:
            queue.extend(replace(spec, quantity=1) for _ in range(max(1, spec.quantity)))
        if self._partial is not None and queue:
            # A drink waiting for its flavor takes the flavor now; a refused drink's
            # rest (it has a flavor) only completes words that name none.
            if queue[0].changes_only or self._partial.flavor is None:
                queue[0] = _merge(self._partial, queue[0])
            self._partial = None
        if queue and queue[0].changes_only:
            self._partial = queue[0]
            yield Say("Sure. Which flavor would you like? We have "
                      f"{spoken_list(self.menu.flavors, 'or')}.")
            return
        total = len(self.items) + len(queue)
        if total > self.menu.max_drinks:
            yield Say(f"Sorry, an order can have at most {self.menu.max_drinks} drinks. "
                      f"{self._prompt()}")
            return
        if len(queue) > 1:
            self._expected = max(self._expected or 0, total)
        self._queue = queue[1:]
        yield from self._stage(queue[0])

    def _stage(self, spec: DrinkSpec, *, lead: str = "") -> Turn:
        result = yield self._call("add_to_cart", **_stage_arguments(spec))
        if result.get("ok") and self.pending is not None:
            self.phase = DialoguePhase.CONFIRMING_DRINK
            intro = lead or ("Okay, " if not self.items else "Okay, and ")
            yield Say(f"{intro}{describe(self.pending)}. Is that right?")
            return
        self._queue.clear()
        self._note_offer("stage", spec, None)
        if spec.flavor and not spec.unknown_flavor:
            # "black milk tea with cheese foam" refused: "egg pudding then" still means
            # the black milk tea. A drink said with a flavor starts afresh.
            self._partial = replace(spec, unknown_toppings=[])
        yield Say(str(result.get("error", "Sorry, I couldn't add that.")))

    def _update_pending(self, spec: DrinkSpec) -> Turn:
        assert self.pending is not None
        arguments = _change_arguments(self.pending, spec)
        result = yield self._call("update_pending_item", **arguments)
        if result.get("ok") and self.pending is not None:
            yield Say(f"Sure, so that's {describe(self.pending)}. Is that right?")
            return
        self._note_offer("update", spec, None)
        yield Say(str(result.get("error", "Sorry, I couldn't change that.")))

    def _modify(self, index: int, spec: DrinkSpec) -> Turn:
        if not 0 <= index < len(self.items):
            yield Say(f"I can't find that drink: your order has "
                      f"{_drink_count(len(self.items))}. Which one do you mean?")
            return
        arguments = _change_arguments(self.items[index], spec)
        only_levels = set(arguments) <= {"sweetness", "ice"} and arguments
        if only_levels:
            result = yield self._call("set_sweetness_ice", index=index, **arguments)
        else:
            result = yield self._call("modify_cart_item", index=index, **arguments)
        if result.get("ok"):
            drink = self.items[index]
            which = "it" if len(self.items) == 1 else f"the {_ordinal(index)} drink"
            yield Say(f"Done, {which} is now {describe(drink)}. {self._prompt()}")
            return
        self._note_offer("modify", spec, index)
        yield Say(str(result.get("error", "Sorry, I couldn't change that.")))

    def _apply(self, kind: str, spec: DrinkSpec, index: int | None) -> Turn:
        if kind == "stage":
            yield from self._stage(spec)
        elif kind == "update" and self.pending is not None:
            yield from self._update_pending(spec)
        elif kind == "modify" and index is not None:
            yield from self._modify(index, spec)
        else:
            yield Say(self._prompt())

    def _note_offer(self, kind: str, spec: DrinkSpec, index: int | None) -> None:
        """After "the matcha only comes with vanilla cream, add it?", a "yes" adds it."""
        for addon in spec.addons:
            needed = self.menu.addon_requires.get(addon)
            if needed is not None and needed not in spec.toppings:
                self._offer = (kind, replace(spec, toppings=[*spec.toppings, needed]), index)
                return

    def _confirm_pending(self, *, announce: bool) -> Generator[Step, Result, bool]:
        result = yield self._call("confirm_pending_to_cart")
        self.phase = DialoguePhase.TAKING
        if not result.get("ok"):
            yield Say(str(result.get("error")))
            return False
        if announce:
            yield from self._next_drink()
        return True

    def _next_drink(self) -> Turn:
        n = len(self.items)
        if self._queue:
            spec = self._queue.pop(0)
            yield from self._stage(spec, lead=f"Got it. And the {_ordinal(n)} one: ")
            return
        if self._expected is not None and n < self._expected:
            yield Say(f"Got it, that's in. What would you like for the {_ordinal(n)} drink?")
            return
        self._expected = None
        yield Say("Got it, that's in your order. Anything else?")

    def _remove(self, position: int) -> Turn:
        index = len(self.items) - 1 if position < 0 else position
        if self.pending is not None and index == len(self.items):
            yield self._call("clear_pending_item")
            self.phase = DialoguePhase.TAKING
            yield Say(f"Okay, I've dropped that one. {self._prompt()}")
            return
        if self.phase is DialoguePhase.CONFIRMING_DRINK:
            yield Say("Let's finish this one first: shall I add "
                      f"{describe(self.pending or {}, with_price=False)}?")
            return
        result = yield self._call("remove_from_cart", index=index)
        if not result.get("ok"):
            yield Say(f"{result.get('error')} Which one should I remove?")
            return
        removed = result.get("removed") or {}
        if self._expected is not None:
            self._expected = max(0, self._expected - 1) or None
        left = len(self.items)
        rest = (f"You have {_drink_count(left)} now."
                if left else "Your order is empty now.")
        yield Say(f"Okay, I've removed {describe(removed, with_price=False)}. {rest} "
                  f"{self._prompt()}")

    def _remove_all(self) -> Turn:
        """ "Cancel my order" before it is placed: every drink comes out, one call each."""
        self._queue.clear()
        self._partial = None
        self._expected = None
        self._done = False
        if self.pending is not None:
            yield self._call("clear_pending_item")
        while self.items:
            result = yield self._call("remove_from_cart", index=0)
            if not result.get("ok"):
                yield Say(str(result.get("error")))
                return
        self.phase = DialoguePhase.TAKING
        yield Say("Okay, I've cleared your order. Would you like something else, or shall "
                  "we leave it there?")

    # --- finishing ---------------------------------------------------------------------

    def _finish(self) -> Turn:
        """The caller is done choosing: ask for the number, or check out if we have it."""
        self._done = True
        self._queue.clear()
        self._expected = None
        if not self.items:
            self.phase = DialoguePhase.TAKING
            yield Say("There's nothing in your order yet. What would you like to drink?")
            return
        if self.phone is not None and self.phone_confirmed:
            yield from self._checkout()
            return
        self.phase = DialoguePhase.ASKING_PHONE
        drinks = spoken_list([describe(d, with_price=False) for d in self.items])
        total = sum(float(d.get("price", 0)) for d in self.items)
        yield Say(f"So that's {drinks}, for a total of {_dollars(total)}. What phone number "
                  "should we text when your order is ready?")

    def _save_phone(self, digits: str) -> Turn:
        result = yield self._call("save_phone_number", phone=digits)
        if not result.get("ok"):
            if self.phase not in (DialoguePhase.STATUS_PHONE, DialoguePhase.PLACED):
                self.phase = DialoguePhase.ASKING_PHONE
            yield Say(str(result.get("error")))
            return
        if self.phase is DialoguePhase.STATUS_PHONE:
            self.phase = DialoguePhase.PLACED if self.order_number else DialoguePhase.TAKING
            yield from self._status(self._status_order_number)
            return
        self.phase = DialoguePhase.CONFIRMING_PHONE
        self.phone_confirmed = False
        yield Say(f"I have {spoken_phone(self.phone or '')}. Is that right?")

    def _checkout(self) -> Turn:
        result = yield self._call("checkout_order")
        if not result.get("ok"):
            error = str(result.get("error"))
            if "phone" in error.lower():
                self.phase = DialoguePhase.ASKING_PHONE
            else:
                self.phase = DialoguePhase.TAKING
                self._retry_checkout = bool(self.items)
            yield Say(error)
            return
        self.phase = DialoguePhase.PLACED
        number = str(result.get("order_number"))
        minutes = result.get("ready_in_minutes")
        wait = f" It should be ready in about {minutes} minutes." if minutes is not None else ""
        # CONTRACT §12: the number digit by digit ("4, 7, 8, 2"), the total and the wait.
        yield Say(f"Your order is placed! Your order number is {', '.join(number)}. "
                  f"That's {_drink_count(len(self.items))} for "
                  f"{_dollars(result.get('total'))}.{wait} We'll text you when it's ready. "
                  "Anything else I can help with?")

    def _end_call(self) -> Turn:
        result = yield self._call("end_call")
        if result.get("ok"):
            self.phase = DialoguePhase.ENDED
            yield Say(f"Thanks for calling {self.menu.shop_name}! Goodbye.")
            return
        yield Say(str(result.get("error", "One moment, please.")))

    # --- questions ---------------------------------------------------------------------

    def _menu(self) -> Turn:
        result = yield self._call("menu_summary")
        yield Say(f"{result.get('summary', '')} {self._prompt()}".strip())

    def _availability(self, u: Utterance) -> Turn:
        result = yield self._call("menu_summary")
        named = [d.flavor for d in u.drinks if d.flavor] + [
            t for d in u.drinks for t in [*d.toppings, *d.addons]
        ]
        missing = [d.unknown_flavor for d in u.drinks if d.unknown_flavor] + [
            t for d in u.drinks for t in d.unknown_toppings
        ] + u.unknown
        sold_out = [n for n in named if n in result.get("sold_out", [])]
        if sold_out and not missing:
            flavors = spoken_list([str(f) for f in result.get("flavors", [])])
            yield Say(f"Sorry, the {sold_out[0]} is sold out right now. We have {flavors}. "
                      f"{self._prompt()}")
        elif missing:
            flavors = spoken_list([str(f) for f in result.get("flavors", [])])
            toppings = spoken_list([str(t) for t in result.get("toppings", [])])
            yield Say(f"Sorry, we don't have {missing[0]}. We have {flavors}, and for "
                      f"toppings {toppings}. {self._prompt()}")
        elif named:
            yield Say(f"Yes, we have {spoken_list([str(n) for n in named])}. {self._prompt()}")
        else:
            yield Say(f"{result.get('summary', '')} {self._prompt()}".strip())

    def _status(self, order_number: str | None) -> Turn:
        arguments = {"order_number": order_number} if order_number else {}
        result = yield self._call("order_status", **arguments)
        if not result.get("ok"):
            error = str(result.get("error"))
            if "phone number" in error.lower() and self.phase is not DialoguePhase.PLACED:
                self._status_order_number = order_number
                self.phase = DialoguePhase.STATUS_PHONE
            yield Say(error)
            return
        orders = [o for o in result.get("orders", []) if isinstance(o, dict)][:3]
        if not orders:
            which = f"order {spoken_digits(order_number)}" if order_number else "any orders"
            yield Say(f"I can't find {which} for your number. {self._prompt()}")
            return
        parts = [
            f"order {spoken_digits(str(o.get('order_number')))} "
            f"{_STATUS_WORDS.get(str(o.get('status')), 'is in our system')}"
            for o in orders
        ]
        sentence = spoken_list(parts)
        yield Say(f"{sentence[0].upper()}{sentence[1:]}. {self._prompt()}")

    def _read_cart(self) -> Turn:
        result = yield self._call("get_cart")
        items = [d for d in result.get("items", []) if isinstance(d, dict)]
        parts = []
        if items:
            parts.append(f"You have {spoken_list([describe(d, with_price=False) for d in items])}"
                         f", {_dollars(result.get('total'))} in all.")
        else:
            parts.append("Your order is empty so far.")
        if isinstance(result.get("pending_item"), dict):
            parts.append(f"Waiting for your OK: {describe(result['pending_item'])}.")
        parts.append(self._prompt())
        yield Say(" ".join(parts))

    # --- wording -------------------------------------------------------------------------

    def _prompt(self) -> str:
        """The question that fits where we are, to end a reply with."""
        phase = self.phase
        if phase is DialoguePhase.CONFIRMING_DRINK and self.pending is not None:
            return f"Shall I add {describe(self.pending, with_price=False)}?"
        if phase is DialoguePhase.ASKING_PHONE:
            return "What phone number should we text when your order is ready?"
        if phase is DialoguePhase.CONFIRMING_PHONE:
            return f"Is {spoken_phone(self.phone or '')} the right number?"
        if phase is DialoguePhase.PLACED:
            return "Anything else I can help with?"
        if phase is DialoguePhase.STATUS_PHONE:
            return "What phone number did you order with?"
        return "What would you like to order?" if not self.items else "Anything else?"

    def _clarify(self, u: Utterance) -> Turn:
        flavors = spoken_list(self.menu.flavors, "or")
        heard = f' "{u.unknown[0]}"' if u.unknown else ""
        if self.phase is DialoguePhase.CONFIRMING_DRINK and self.pending is not None:
            yield Say(f"Sorry, I didn't catch{heard or ' that'}. Shall I add "
                      f"{describe(self.pending, with_price=False)}? Say yes, or tell me "
                      "what to change.")
            return
        if self._partial is not None:
            yield Say(f"Sorry, which flavor would you like: {flavors}?")
            return
        if heard:
            yield Say(f"Sorry, I'm not sure what you mean by{heard}. {self._prompt()}")
            return
        if not self.items:
            yield Say(f"Sorry, I didn't catch that. Which drink would you like: {flavors}?")
            return
        yield Say(f"Sorry, I didn't catch that. {self._prompt()}")


# --- building function arguments --------------------------------------------------------------


def _stage_arguments(spec: DrinkSpec) -> Result:
    arguments: Result = {}
    flavor = spec.unknown_flavor if spec.unknown_flavor else spec.flavor
    if flavor:
        arguments["flavor"] = flavor
    toppings = [*spec.toppings, *spec.unknown_toppings]
    if toppings:
        arguments["toppings"] = toppings
    if spec.addons:
        arguments["addons"] = list(spec.addons)
    if spec.sweetness:
        arguments["sweetness"] = spec.sweetness
    if spec.ice:
        arguments["ice"] = spec.ice
    return arguments


def _change_arguments(drink: Result, spec: DrinkSpec) -> Result:
    """The fields `spec` changes on `drink` (lists are whole lists, as the functions want)."""
    arguments: Result = {}
    flavor = spec.unknown_flavor if spec.unknown_flavor else spec.flavor
    if flavor and flavor != drink.get("flavor"):
        arguments["flavor"] = flavor
    if spec.toppings or spec.unknown_toppings or spec.no_toppings or spec.clear_toppings:
        toppings = [] if spec.clear_toppings else [
            str(t) for t in drink.get("toppings", []) if not _removes(spec.no_toppings, str(t))
        ]
        for topping in [*spec.toppings, *spec.unknown_toppings]:
            if topping not in toppings:
                toppings.append(topping)
        arguments["toppings"] = toppings
    if spec.addons or spec.no_addons:
        addons = [str(a) for a in drink.get("addons", []) if a not in spec.no_addons]
        for addon in spec.addons:
            if addon not in addons:
                addons.append(addon)
        arguments["addons"] = addons
    if spec.sweetness:
        arguments["sweetness"] = spec.sweetness
    if spec.ice:
        arguments["ice"] = spec.ice
    return arguments


def _removes(unwanted: list[str], topping: str) -> bool:
    """ "no boba" takes off "crystal agar boba" too when that is the boba in the drink."""
    words = topping.split()
    return any(u == topping or all(w in words for w in u.split()) for u in unwanted)


def _merge(base: DrinkSpec, later: DrinkSpec) -> DrinkSpec:
    """A drink said in two goes ("with boba" ... "taro"): later words win."""
    return DrinkSpec(
        flavor=later.flavor or base.flavor,
        unknown_flavor=later.unknown_flavor or (None if later.flavor else base.unknown_flavor),
        toppings=list(dict.fromkeys([*base.toppings, *later.toppings])),
        unknown_toppings=[*base.unknown_toppings, *later.unknown_toppings],
        no_toppings=[*base.no_toppings, *later.no_toppings],
        clear_toppings=base.clear_toppings or later.clear_toppings,
        addons=list(dict.fromkeys([*base.addons, *later.addons])),
        no_addons=[*base.no_addons, *later.no_addons],
        sweetness=later.sweetness or base.sweetness,
        ice=later.ice or base.ice,
        quantity=later.quantity,
    )


def _decode_result(content: str | Result) -> Result:
    """A function result as a dict; anything unreadable answers like a failed function."""
    if isinstance(content, dict):
        return content
    try:
        value = json.loads(content)
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, dict):
        return {"ok": False, "error": "Sorry, something went wrong on my side."}
    return value
