"""The shop's day over HTTP (CONTRACT §12): sold-out items and the pause switch.

* `GET /api/menu` (anyone): every flavor, topping and add-on with its price and
  `available`.
* `PUT /api/menu/{kind}/{name}` (staff) with `{"available": false|true}`.
* `GET /api/shop` (anyone): `open_now`, `taking_orders`, `today`, `wait_minutes`, and for
  the TV each received order's wait (`waits`) and the `next_opening`.
* `PUT /api/shop` (staff) with `{"taking_orders": false|true}`.

Changes are stored (they survive restarts and reach every instance), announced on SSE,
and this process's `ShopState` is refreshed at once so calls here see them at their next
function call. The TwiML `/voice` answers when the shop is closed or paused is built here
too (`closed_twiml`).
"""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo
from typing import Any

import msgspec
from quart import Response, request
from quart_trio import QuartTrio
from twilio.twiml.voice_response import VoiceResponse  # type: ignore[import-untyped]

from boba_proto.menu import Menu
from boba_proto.model import cents_to_dollars
from boba_proto.shop import ItemKind, ShopStatus, closed_message
from boba_runtime.config.hours import next_opening
from boba_runtime.store.order_store import StoreUnavailable
from boba_runtime.store.shop import ShopState, canonical_item
from boba_web.api import json_response
from boba_web.errors import json_error
from boba_web.staff import staff_only

log = logging.getLogger(__name__)


class _AvailableBody(msgspec.Struct, forbid_unknown_fields=True):
    available: bool


class _ShopBody(msgspec.Struct, forbid_unknown_fields=True):
    taking_orders: bool


def menu_json(menu: Menu, shop: ShopState) -> dict[str, list[dict[str, object]]]:
    """`GET /api/menu`: each item with its price in dollars and whether it can be ordered."""
    prices = {
        ItemKind.FLAVORS: (menu.flavors, menu.drink_price_cents),
        ItemKind.TOPPINGS: (menu.toppings, menu.topping_price_cents),
        ItemKind.ADDONS: (menu.addons, menu.addon_price_cents),
    }
    out: dict[str, list[dict[str, object]]] = {}
    for kind, (names, cents) in prices.items():
        sold_out = shop.availability.sold_out(kind)
        out[kind.value] = [
            {"name": name, "price": cents_to_dollars(cents), "available": name not in sold_out}
            for name in names
        ]
    return out


def closed_twiml(menu: Menu, zone: tzinfo | None, status: ShopStatus, now: datetime) -> str:
    """`<Say>` closed (with the next opening) or paused, then `<Hangup/>`: no agent.
    Everything comes in as arguments (the instant too), so it is tested at any hour."""
    from boba_web.twilio_routes import render_twiml

    opening = next_opening(menu.hours, zone, now)
    response = VoiceResponse()
    response.say(closed_message(status, opening, menu.shop_name))
    response.hangup()
    return str(render_twiml(response))


def no_store(response: Response) -> Response:
    """Staff JSON is never cached (CONTRACT §3)."""
    response.headers["Cache-Control"] = "no-store"
    return response


async def _decode(body_type: type[Any]) -> Any | Response:
    data = await request.get_data(cache=True)
    try:
        return msgspec.json.decode(data, type=body_type)
    except msgspec.ValidationError as error:
        return json_error(400, f"The JSON body is not right: {error}.")
    except msgspec.DecodeError:
        return json_error(400, "The body must be JSON.")


def register_shop_routes(app: QuartTrio, services: Any) -> None:
    shop: ShopState = services.shop
    menu: Menu = services.menu

    def unavailable(error: StoreUnavailable) -> Response:
        # The store's own words may name hosts or paths: logged, never answered.
        log.warning("shop routes: the order store is unavailable: %s", error)
        return json_error(503, "The order store is unavailable right now; try again shortly.")

    @app.get("/api/menu")
    async def get_menu() -> Response:
        return json_response(menu_json(menu, shop))

    @app.put("/api/menu/<kind>/<path:name>")
    @staff_only(services)
    async def put_menu_item(kind: str, name: str) -> Response:
        try:
            item_kind = ItemKind(kind)
        except ValueError:
            return json_error(404, "The kind must be flavors, toppings or addons.")
        canonical = canonical_item(menu, item_kind, name)
        if canonical is None:
            return json_error(404, f"There is no {item_kind.value[:-1]} called {name[:60]!r}.")
        body = await _decode(_AvailableBody)
        if isinstance(body, Response):
            return body
        try:
            await shop.shop.set_available(item_kind, canonical, body.available)
            await shop.refresh()
        except StoreUnavailable as error:
            return unavailable(error)
        price = {
            ItemKind.FLAVORS: menu.drink_price_cents,
            ItemKind.TOPPINGS: menu.topping_price_cents,
            ItemKind.ADDONS: menu.addon_price_cents,
        }[item_kind]
        return no_store(json_response({
            "kind": item_kind.value,
            "name": canonical,
            "price": cents_to_dollars(price),
            "available": canonical not in shop.availability.sold_out(item_kind),
        }))

    @app.get("/api/shop")
    async def get_shop() -> Response:
        try:
            view = await shop.view(services.clock())
        except StoreUnavailable as error:
            return unavailable(error)
        return json_response(view.to_json())

    @app.put("/api/shop")
    @staff_only(services)
    async def put_shop() -> Response:
        body = await _decode(_ShopBody)
        if isinstance(body, Response):
            return body
        try:
            await shop.shop.set_taking_orders(body.taking_orders)
            await shop.refresh()
            view = await shop.view(services.clock())
        except StoreUnavailable as error:
            return unavailable(error)
        return no_store(json_response(view.to_json()))
