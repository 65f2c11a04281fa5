"""The shared data shapes of an order, and the effect requests the core hands the runtime.

These are the seams between packages: `tools`/`call` produce `CommitOrder` and
`LookupOrders`, the runtime's store answers with `OrderCommitted` / `OrdersFound` /
`EffectFailed`, and the web layer renders `Order` as CONTRACT §4. Money is integer cents
everywhere inside; dollars appear only in JSON rendered for the outside.
"""

from __future__ import annotations

import enum

import msgspec


class OrderStatus(enum.Enum):
    RECEIVED = "received"
    READY = "ready"
    PICKED_UP = "picked_up"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({OrderStatus.RECEIVED, OrderStatus.READY})


class Drink(msgspec.Struct, frozen=True, kw_only=True):
    """One validated, priced drink; names are canonical (lower case, as on the menu)."""

    flavor: str
    toppings: tuple[str, ...] = ()
    addons: tuple[str, ...] = ()
    sweetness: str
    ice: str
    price_cents: int


class OrderDraft(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a call wants committed; the store assigns the number and the time.

    Defaults are left out of its JSON, so recordings made before a field existed still
    replay byte for byte."""

    phone: str  # E.164
    items: tuple[Drink, ...]
    total_cents: int
    call_sid: str = ""
    name: str | None = None  # the first name for the cup (CONTRACT §12)
    prep_minutes_per_drink: int = 3  # the menu's wait rule, applied by the store at commit
    prep_minutes_min: int = 5
    # Names one checkout of one call, the same when the caller retries it: the store
    # commits a key once and answers a repeat with the order already committed.
    checkout_key: str | None = None


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """A committed order as the store knows it."""

    order_number: str
    status: OrderStatus
    phone: str
    items: tuple[Drink, ...]
    total_cents: int
    created_at: str  # UTC ISO 8601 with Z
    ready_at: str | None = None
    sms_received: str | None = None
    sms_ready: str | None = None
    call_sid: str = ""
    name: str | None = None
    ready_in_minutes: int | None = None  # the wait told at commit (None: older orders)


def cents_to_dollars(cents: int) -> float:
    """JSON numbers in dollars, exact to the cent (CONTRACT §4)."""
    return round(cents / 100, 2)


def format_dollars(cents: int) -> str:
    """ "$6.25": a price as the prompt, the menu summary and the local agent say it."""
    return f"${cents_to_dollars(cents):.2f}"


def dollars_to_cents(value: object) -> int:
    """Cents of a JSON dollar amount (as `cents_to_dollars` wrote it); 0 for a non-number."""
    return round(float(value) * 100) if isinstance(value, int | float) else 0


def drink_to_json(drink: Drink) -> dict[str, object]:
    """A drink in the CONTRACT §4 `items` shape."""
    return {
        "flavor": drink.flavor,
        "toppings": list(drink.toppings),
        "addons": list(drink.addons),
        "sweetness": drink.sweetness,
        "ice": drink.ice,
        "price": cents_to_dollars(drink.price_cents),
    }


def order_to_json(order: Order, *, with_private: bool) -> dict[str, object]:
    """An order per CONTRACT §4; `phone` and `sms` only for staff (`with_private`)."""
    out: dict[str, object] = {"order_number": order.order_number, "status": order.status.value}
    if with_private:
        out["phone"] = order.phone
    out["items"] = [drink_to_json(d) for d in order.items]
    out["total"] = cents_to_dollars(order.total_cents)
    out["created_at"] = order.created_at
    out["ready_at"] = order.ready_at
    out["name"] = order.name
    if with_private:
        out["sms"] = {"received": order.sms_received, "ready": order.sms_ready}
    return out


# --- effect requests (core -> runtime) and their results (runtime -> core) ---------------


class CommitOrder(msgspec.Struct, frozen=True, kw_only=True, tag="commit_order"):
    """Commit `draft` durably (with its "received" SMS and its event) and report back."""

    request_id: str
    draft: OrderDraft


class LookupOrders(msgspec.Struct, frozen=True, kw_only=True, tag="lookup_orders"):
    """Find orders placed from any of `phones` (E.164), optionally one `order_number`."""

    request_id: str
    phones: tuple[str, ...]
    order_number: str | None = None


class OrderCommitted(msgspec.Struct, frozen=True, kw_only=True, tag="order_committed"):
    request_id: str
    order: Order


class OrdersFound(msgspec.Struct, frozen=True, kw_only=True, tag="orders_found"):
    request_id: str
    orders: tuple[Order, ...]


class EffectFailed(msgspec.Struct, frozen=True, kw_only=True, tag="effect_failed"):
    """The runtime could not carry out an effect (store down, ...); `reason` is for logs."""

    request_id: str
    reason: str


EffectRequest = CommitOrder | LookupOrders
EffectResult = OrderCommitted | OrdersFound | EffectFailed
