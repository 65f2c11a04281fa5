"""An order's rules after checkout: its lifecycle, the sentences that refuse a move, the SMS
texts it sends and the event each change publishes (CONTRACT §4, §7, §8).

The store only persists: it asks `check_transition` whether a move is allowed, writes the
rows these functions describe, and reports `conflict_message` to staff when it is not.
Keeping the rules here makes them readable in one page, testable without a database, and
the same for every store backend.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from boba_proto.model import ACTIVE_STATUSES, OrderStatus

__all__ = [
    "ACTIVE_STATUS_VALUES",
    "ALLOWED_FROM",
    "EXPIRED_STATUS",
    "SMS_ON_ENTERING",
    "OrderEvent",
    "SmsKind",
    "Transition",
    "check_transition",
    "conflict_message",
    "order_created",
    "sms_text",
    "status_changed",
]

ACTIVE_STATUS_VALUES: Final = tuple(s.value for s in OrderStatus if s in ACTIVE_STATUSES)
"""`model.ACTIVE_STATUSES` as stored text, in lifecycle order (for queries and filters)."""

ALLOWED_FROM: Final = {
    OrderStatus.READY: OrderStatus.RECEIVED,
    OrderStatus.PICKED_UP: OrderStatus.READY,
    OrderStatus.CANCELLED: OrderStatus.RECEIVED,
}
"""Staff moves: target status -> the one status an order must be in to get there."""

EXPIRED_STATUS: Final = OrderStatus.PICKED_UP
"""Where a ready order goes when nobody marked it for `BOBA_READY_EXPIRY_MINUTES`."""


class Transition(enum.Enum):
    """What a staff move does to an order in a given status."""

    APPLY = "apply"  # allowed: change the status (and send what the new status sends)
    ALREADY_DONE = "already_done"  # "done" on a ready order: idempotent, nothing changes
    CONFLICT = "conflict"  # not allowed from here: HTTP 409 with `conflict_message`


def check_transition(current: OrderStatus, target: OrderStatus) -> Transition:
    """Whether staff may move an order from `current` to `target`."""
    if current is target and target is OrderStatus.READY:
        return Transition.ALREADY_DONE
    return Transition.APPLY if ALLOWED_FROM.get(target) is current else Transition.CONFLICT


def conflict_message(order_number: str, current: OrderStatus, target: OrderStatus) -> str:
    """The sentence staff read when a move is refused (CONTRACT §4's 409 body)."""
    status = current.value.replace("_", " ")
    if target is OrderStatus.READY:
        return f"order {order_number} is already {status} and cannot be marked done"
    if target is OrderStatus.PICKED_UP:
        return f"order {order_number} is {status}; only a ready order can be picked up"
    return f"order {order_number} is {status}; only a received order can be cancelled"


# --- the texts an order sends -------------------------------------------------------------


class SmsKind(enum.Enum):
    """Which of the two CONTRACT §8 texts; the value is what the outbox stores."""

    RECEIVED = "received"  # queued with the order, in the same transaction
    READY = "ready"  # queued when staff mark the order done


_SMS_TEXTS: Final = {
    SmsKind.RECEIVED: (
        "Thanks for your order! Your order number is {number}. "
        "We'll text you when it's ready for pickup."
    ),
    SmsKind.READY: "Your boba order #{number} is now ready for pickup!",
}

_RECEIVED_WITH_WAIT: Final = (  # CONTRACT §12: the "received" text once the wait is known
    "Thanks for your order! Your order number is {number}. "
    "It should be ready in about {minutes} minutes. "
    "We'll text you when it's ready for pickup."
)

SMS_ON_ENTERING: Final = {OrderStatus.RECEIVED: SmsKind.RECEIVED, OrderStatus.READY: SmsKind.READY}
"""The text an order sends when it reaches a status; other statuses send none."""


def sms_text(kind: SmsKind, order_number: str, minutes: int | None = None) -> str:
    """The SMS texts of CONTRACT §8, exactly; the "received" one tells the wait in
    `minutes` when the store worked it out (CONTRACT §12)."""
    if kind is SmsKind.RECEIVED and minutes is not None:
        return _RECEIVED_WITH_WAIT.format(number=order_number, minutes=minutes)
    return _SMS_TEXTS[kind].format(number=order_number)


# --- the events the board and the console hear --------------------------------------------


class OrderEvent(msgspec.Struct, frozen=True):
    """One CONTRACT §7 event, as the SSE `data:` line carries it (fields in this order)."""

    type: str  # "order_created" | "order_status_changed"
    order_number: str
    status: str


def order_created(order_number: str) -> OrderEvent:
    return OrderEvent("order_created", order_number, OrderStatus.RECEIVED.value)


def status_changed(order_number: str, status: OrderStatus) -> OrderEvent:
    return OrderEvent("order_status_changed", order_number, status.value)
