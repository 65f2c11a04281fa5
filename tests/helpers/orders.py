"""Orders for tests, committed through the real store like a call would."""

from __future__ import annotations

from boba_proto.model import Drink, Order, OrderDraft
from boba_runtime.services import Services

TARO = Drink(
    flavor="taro milk tea", toppings=("boba",), sweetness="50%", ice="regular ice",
    price_cents=625,
)


def draft(phone: str = "+14155551234", drinks: tuple[Drink, ...] = (TARO,)) -> OrderDraft:
    return OrderDraft(phone=phone, items=drinks, total_cents=sum(d.price_cents for d in drinks))


async def place_order(services: Services, phone: str = "+14155551234") -> Order:
    """Commit an order as the call runtime does (the store's change signal wakes the feed)."""
    return await services.store.commit_order(draft(phone))
