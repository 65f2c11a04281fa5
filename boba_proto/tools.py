"""The agent's client-side functions (CONTRACT §5): argument decoding and dispatch.

`dispatch` answers one FunctionCallRequest item. Most functions answer at once
(:class:`ToolReply`); `checkout_order` and `order_status` need the store, so they return an
effect request (:class:`ToolEffect`) and the final result comes from `complete_effect` once
the runtime feeds the effect's result back (DESIGN §2); `end_call` returns
:class:`ToolEndCall`. Nothing here raises for anything the agent sends: bad JSON, wrong
types, nulls and unknown names all answer ``ok: False`` with a sentence and change nothing.

Checkout while a commit is already in flight is refused with a sentence (not queued): the
agent hears "one moment" and the first commit's answer still arrives, so at most one order
is ever created per call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import msgspec

from boba_proto import ordering
from boba_proto.errors import LocalProtocolError
from boba_proto.menu import TRANSFER_FUNCTION, ArgKind, FunctionDef, Menu, function_def
from boba_proto.model import (
    CommitOrder,
    EffectFailed,
    LookupOrders,
    Order,
    OrderCommitted,
    OrderDraft,
    OrdersFound,
    cents_to_dollars,
    drink_to_json,
)
from boba_proto.ordering import NO_AVAILABILITY, Cart, DrinkRequest, Result, refuse
from boba_proto.shop import NAME_REFUSAL, Availability, validate_name

__all__ = [
    "ToolEffect",
    "ToolEndCall",
    "ToolReply",
    "ToolState",
    "ToolTransfer",
    "complete_effect",
    "dispatch",
    "initial_state",
]

MAX_ARGUMENTS_CHARS: Final = 4096
MAX_TEXT_CHARS: Final = 100
MAX_LIST_ITEMS: Final = 20


class ToolState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the functions remember about one call (and nothing about any other)."""

    cart: Cart = msgspec.field(default_factory=Cart)
    caller_phone: str | None = None  # Twilio "From" in E.164, when it parses as a number
    call_sid: str = ""
    placed_order: Order | None = None
    checkout: CommitOrder | None = None  # the commit in flight, if any
    lookups: tuple[LookupOrders, ...] = ()  # order look-ups in flight
    sms_regions: tuple[str, ...] = ()  # BOBA_SMS_COUNTRIES (empty: any country)
    availability: Availability = msgspec.field(default_factory=Availability)  # sold out now
    transfer_enabled: bool = False  # the shop has a transfer number (CONTRACT §12)

    @property
    def checkout_pending(self) -> bool:
        return self.checkout is not None


def initial_state(
    caller_from: str | None,
    *,
    call_sid: str = "",
    sms_regions: tuple[str, ...] = (),
    transfer_enabled: bool = False,
    availability: Availability | None = None,
) -> ToolState:
    """A call's starting state; `caller_from` is Twilio's `From` (may be "anonymous");
    `sms_regions` the countries the shop texts (empty: any)."""
    caller = ordering.normalize_phone(caller_from) if caller_from else None
    return ToolState(
        caller_phone=caller,
        call_sid=call_sid,
        sms_regions=sms_regions,
        transfer_enabled=transfer_enabled,
        availability=availability if availability is not None else Availability(),
    )


class ToolReply(msgspec.Struct, frozen=True):
    """Answer now: `result` is the FunctionCallResponse content (JSON-able)."""

    result: Result


class ToolEffect(msgspec.Struct, frozen=True):
    """Answer later: run `effect`, then feed its result to `complete_effect`."""

    effect: CommitOrder | LookupOrders


class ToolEndCall(msgspec.Struct, frozen=True):
    """Answer now with `result`, then end the call once the goodbye has played."""

    result: Result


class ToolTransfer(msgspec.Struct, frozen=True):
    """Answer now with `result`, then end the stream once the agent's sentence has played,
    so that `/voice/after` puts the caller through to staff."""

    result: Result


ToolOutcome = ToolReply | ToolEffect | ToolEndCall | ToolTransfer


# --- argument decoding -------------------------------------------------------------------


_ARG_LABELS: Final[Mapping[ArgKind, str]] = MappingProxyType({
    ArgKind.FLAVOR: "flavor",
    ArgKind.TOPPINGS: "toppings",
    ArgKind.ADDONS: "add-ons",
    ArgKind.SWEETNESS: "sweetness",
    ArgKind.ICE: "ice level",
    ArgKind.INDEX: "drink's position",
    ArgKind.PHONE: "phone number",
    ArgKind.ORDER_NUMBER: "order number",
    ArgKind.NAME: "name",
})

_UNREADABLE: Final = "Sorry, something went wrong on my side. Could you say that again?"


class _Args(msgspec.Struct, frozen=True, kw_only=True):
    """Decoded, type-checked arguments; None = not given."""

    flavor: str | None = None
    toppings: tuple[str, ...] | None = None
    addons: tuple[str, ...] | None = None
    sweetness: str | None = None
    ice: str | None = None
    index: int | None = None
    phone: str | None = None
    order_number: str | None = None
    name: str | None = None

    def drink(self) -> DrinkRequest:
        return DrinkRequest(
            flavor=self.flavor,
            toppings=self.toppings,
            addons=self.addons,
            sweetness=self.sweetness,
            ice=self.ice,
        )


def _check_text(label: str, value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"I didn't get the {label}. Could you say it again?"
    if len(value) > MAX_TEXT_CHARS:
        return f"That {label} is too long for me. Could you say it more briefly?"
    return None


def _decode_arguments(fn: FunctionDef, arguments: object) -> _Args | str:
    """Type-checked arguments of `fn`, or a sentence saying what was wrong.

    Unknown keys are ignored (models add them); a null counts as a wrong type, since for a
    change it is ambiguous between "unchanged" and "none".
    """
    if not isinstance(arguments, str) or len(arguments) > MAX_ARGUMENTS_CHARS:
        return _UNREADABLE
    if not arguments.strip():
        data: object = {}
    else:
        try:
            data = msgspec.json.decode(arguments)
        except msgspec.DecodeError:
            return _UNREADABLE
    if not isinstance(data, dict):
        return _UNREADABLE
    values: dict[str, object] = {}
    for kind in fn.args:
        if kind.value not in data:
            continue
        value = data[kind.value]
        label = _ARG_LABELS[kind]
        if kind in (ArgKind.TOPPINGS, ArgKind.ADDONS):
            if not isinstance(value, list):
                return f"I didn't get the {label}. Could you say them again?"
            if len(value) > MAX_LIST_ITEMS:
                return f"That's more {label} than one drink can take."
            for item in value:
                if (problem := _check_text(label, item)) is not None:
                    return problem
            values[kind.value] = tuple(value)
        elif kind is ArgKind.INDEX:
            if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 10**6:
                return "Which drink do you mean? Tell me its place in the order."
            values[kind.value] = value
        else:
            if (problem := _check_text(label, value)) is not None:
                return problem
            values[kind.value] = value
    for kind in fn.required:
        if kind.value not in values:
            return f"I need the {_ARG_LABELS[kind]} for that."
    return msgspec.convert(values, _Args)


# --- dispatch ----------------------------------------------------------------------------

_CHANGES_ORDER: Final = frozenset({
    "add_to_cart", "update_pending_item", "confirm_pending_to_cart", "clear_pending_item",
    "remove_from_cart", "modify_cart_item", "set_sweetness_ice", "save_phone_number",
})

_BUSY: Final = "One moment, I'm placing your order right now."


def _placed_result(order: Order) -> Result:
    result: Result = {
        "ok": True,
        "order_number": order.order_number,
        "items": [drink_to_json(d) for d in order.items],
        "total": cents_to_dollars(order.total_cents),
        "phone": order.phone,
    }
    # Orders committed before CONTRACT §12 (recorded sessions) carry neither.
    if order.ready_in_minutes is not None:
        result["ready_in_minutes"] = order.ready_in_minutes
    if order.name is not None:
        result["name"] = order.name
    return result


def dispatch(
    menu: Menu, state: ToolState, name: str, arguments: str, *, request_id: str
) -> tuple[ToolState, ToolOutcome]:
    """Run agent function `name` with its JSON `arguments` string against `state`.

    `request_id` (the FunctionCallRequest item's id) becomes the effect's request id.
    Never raises for anything the agent sends.
    """
    fn = function_def(name) if isinstance(name, str) else None
    if fn is not None and fn.name == TRANSFER_FUNCTION and not state.transfer_enabled:
        fn = None  # not offered without a transfer number
    if fn is None:
        return state, ToolReply(refuse("Sorry, I can't do that on this line."))
    args = _decode_arguments(fn, arguments)
    if isinstance(args, str):
        return state, ToolReply(refuse(args))
    if fn.name in _CHANGES_ORDER:
        if state.checkout is not None:
            return state, ToolReply(refuse(_BUSY))
        if state.placed_order is not None:
            return state, ToolReply(refuse(
                f"Your order number {state.placed_order.order_number} is already placed, so "
                "I can't change it on this call."
            ))
        cart, result = _change_order(
            menu, state.cart, fn.name, args, state.sms_regions, state.availability
        )
        return msgspec.structs.replace(state, cart=cart), ToolReply(result)
    if fn.name == "menu_summary":
        return state, ToolReply(ordering.menu_summary(menu, state.availability))
    if fn.name == "get_cart":
        return state, ToolReply(ordering.cart_summary(state.cart))
    if fn.name == "order_is_placed":
        number = state.placed_order.order_number if state.placed_order is not None else None
        return state, ToolReply({"ok": True, "placed": number is not None,
                                 "order_number": number})
    if fn.name == "checkout_order":
        return _checkout(menu, state, args, request_id)
    if fn.name == "order_status":
        return _order_status(state, args, request_id)
    if state.checkout is not None:
        return state, ToolReply(refuse(_BUSY))
    if fn.name == TRANSFER_FUNCTION:
        return state, ToolTransfer({"ok": True, "transferring": True})
    # end_call
    return state, ToolEndCall({"ok": True, "ending": True})


def _change_order(
    menu: Menu,
    cart: Cart,
    name: str,
    args: _Args,
    sms_regions: tuple[str, ...] = (),
    availability: Availability = NO_AVAILABILITY,
) -> tuple[Cart, Result]:
    if name == "add_to_cart":
        return ordering.stage_drink(menu, cart, args.drink(), availability)
    if name == "update_pending_item":
        return ordering.update_pending(menu, cart, args.drink(), availability)
    if name == "confirm_pending_to_cart":
        return ordering.confirm_pending(menu, cart)
    if name == "clear_pending_item":
        return ordering.clear_pending(cart)
    if name == "remove_from_cart":
        assert args.index is not None  # required, checked by _decode_arguments
        return ordering.remove_item(cart, args.index)
    if name == "modify_cart_item":
        assert args.index is not None
        return ordering.modify_item(menu, cart, args.index, args.drink(), availability)
    if name == "set_sweetness_ice":
        return ordering.set_sweetness_ice(menu, cart, args.index, args.sweetness, args.ice)
    if name == "save_phone_number":
        assert args.phone is not None
        cup_name = None
        if args.name is not None:
            cup_name = validate_name(args.name)
            if cup_name is None:
                return cart, refuse(NAME_REFUSAL)
        cart, result = ordering.save_phone(cart, args.phone, sms_regions)
        if result["ok"] and cup_name is not None:
            cart = msgspec.structs.replace(cart, name=cup_name)
            result = {**result, "name": cup_name}
        return cart, result
    raise LocalProtocolError(f"{name} is not a function that changes the order")


def _checkout(
    menu: Menu, state: ToolState, args: _Args, request_id: str
) -> tuple[ToolState, ToolOutcome]:
    if state.placed_order is not None:
        return state, ToolReply(_placed_result(state.placed_order))
    if state.checkout is not None:
        return state, ToolReply(refuse(_BUSY))
    cart = state.cart
    if cart.pending is not None:
        cart, confirmed = ordering.confirm_pending(menu, cart)
        if not confirmed["ok"]:
            return state, ToolReply(confirmed)
    if not cart.items:
        return state, ToolReply(refuse(
            "There's nothing in the order yet. What would you like to drink?"
        ))
    cup_name = cart.name
    if args.name is not None:
        cup_name = validate_name(args.name)
        if cup_name is None:
            return state, ToolReply(refuse(NAME_REFUSAL))
    phone = cart.phone
    if args.phone is not None:
        phone = ordering.normalize_phone(args.phone)
        if phone is None:
            return state, ToolReply(refuse(ordering.INVALID_PHONE))
        problem = ordering.sms_region_problem(phone, state.sms_regions)
        if problem is not None:
            return state, ToolReply(refuse(problem))
    if phone is None:
        return state, ToolReply(refuse(
            "What phone number should we text when your order is ready?"
        ))
    draft = OrderDraft(
        phone=phone,
        items=cart.items,
        total_cents=cart.total_cents,
        call_sid=state.call_sid,
        name=cup_name,
        prep_minutes_per_drink=menu.prep.per_drink,
        prep_minutes_min=menu.prep.minimum,
    )
    effect = CommitOrder(request_id=request_id, draft=draft)
    # The cart itself changes only when the commit succeeds (complete_effect), so a failed
    # commit leaves everything as it was.
    return msgspec.structs.replace(state, checkout=effect), ToolEffect(effect)


def _order_status(
    state: ToolState, args: _Args, request_id: str
) -> tuple[ToolState, ToolOutcome]:
    number = None
    if args.order_number is not None:
        number = re.sub(r"\D", "", args.order_number)
        if len(number) != 4:
            return state, ToolReply(refuse(
                "Order numbers have four digits. Which number was it?"
            ))
    # This caller's orders (CONTRACT §5): those of the caller ID, the one placed in this
    # call, and a number the caller merely *said* only together with an order number.
    placed = state.placed_order
    said = state.cart.phone if number is not None else None
    candidates = (state.caller_phone, placed.phone if placed else None, said)
    phones = tuple(dict.fromkeys(p for p in candidates if p))
    if not phones:
        if state.cart.phone:
            return state, ToolReply(refuse(
                "To check an order for that number, I also need its four-digit order number. "
                "What is it?"
            ))
        return state, ToolReply(refuse(
            "I can't see the number you're calling from. What phone number did you order with?"
        ))
    effect = LookupOrders(request_id=request_id, phones=phones, order_number=number)
    return msgspec.structs.replace(state, lookups=(*state.lookups, effect)), ToolEffect(effect)


def _callers_order(state: ToolState, lookup: LookupOrders, order: Order) -> bool:
    """Whether `order` may be told to this caller, whatever the store answered."""
    if lookup.order_number is not None and order.order_number != lookup.order_number:
        return False
    if state.caller_phone is not None and order.phone == state.caller_phone:
        return True  # the caller ID of this call
    placed = state.placed_order
    if placed is not None and order.order_number == placed.order_number \
            and order.phone == placed.phone and order.created_at == placed.created_at:
        return True  # placed in this call
    # A said number: only with the order number of one of its orders.
    return lookup.order_number is not None and order.phone in lookup.phones


# --- effect results ----------------------------------------------------------------------


def complete_effect(
    menu: Menu,
    state: ToolState,
    name: str,
    result: OrderCommitted | OrdersFound | EffectFailed,
) -> tuple[ToolState, Result]:
    """The final FunctionCallResponse content for an effect that `dispatch` requested.

    Raises LocalProtocolError when `result` answers no effect in flight: the runtime
    misrouted it, which is our bug, not the caller's.
    """
    del menu  # part of the signature so a menu-dependent answer needs no API change
    if name == "checkout_order":
        effect = state.checkout
        if effect is None or effect.request_id != result.request_id:
            raise LocalProtocolError(f"no checkout in flight with id {result.request_id!r}")
        if isinstance(result, OrderCommitted):
            # The order as committed: a retried checkout whose first answer was lost gets
            # the order placed then, which may differ from the cart retried.
            order = result.order
            cart = Cart(items=order.items, pending=None, phone=order.phone, name=order.name)
            new = msgspec.structs.replace(
                state, cart=cart, placed_order=result.order, checkout=None
            )
            return new, _placed_result(result.order)
        if isinstance(result, EffectFailed):
            return msgspec.structs.replace(state, checkout=None), refuse(
                "I couldn't place the order just now. Your drinks are still here; "
                "shall I try again?"
            )
        raise LocalProtocolError("a checkout must be answered by OrderCommitted or EffectFailed")
    if name == "order_status":
        lookup = next((e for e in state.lookups if e.request_id == result.request_id), None)
        if lookup is None:
            raise LocalProtocolError(f"no order look-up in flight with id {result.request_id!r}")
        rest = tuple(e for e in state.lookups if e is not lookup)
        new = msgspec.structs.replace(state, lookups=rest)
        if isinstance(result, OrdersFound):
            # Only this caller's orders, whatever the store answered.
            orders = [
                {
                    "order_number": o.order_number,
                    "status": o.status.value,
                    "items": [drink_to_json(d) for d in o.items],
                    "total": cents_to_dollars(o.total_cents),
                }
                for o in result.orders
                if _callers_order(state, lookup, o)
            ]
            return new, {"ok": True, "orders": orders}
        if isinstance(result, EffectFailed):
            return new, refuse(
                "I couldn't look up your orders just now. Please try again in a minute."
            )
        raise LocalProtocolError("an order look-up must be answered by OrdersFound or EffectFailed")
    raise LocalProtocolError(f"{name!r} never requests an effect")
