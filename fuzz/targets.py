"""Coverage-guided fuzz targets for what the outside world feeds the core.

Each target takes the fuzzer's bytes and must return normally or raise the typed protocol
error its contract names; anything else (a `KeyError`, a `RecursionError`, a result the
agent can't read) is a crash the fuzzer reports with the input that caused it.

- `twilio`: `boba_proto.twilio.decode` — Twilio Media Streams frames (the caller's side).
- `agent`: `boba_proto.agent.decode` — Deepgram Voice Agent frames.
- `phone`: `boba_proto.phone.decode_from_phone` — frames from the `/phone` softphone page
  (the Twilio message set plus the `text` extension), and `decode_to_phone`, what `boba
  call` reads from the server.
- `dispatcher`: `boba_proto.tools.dispatch` — sequences of agent function calls with
  arbitrary names and arguments against one call's evolving state, effects answered.

Run them with `python -m fuzz.run` (see docs/fuzzing.md).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from boba_proto import agent, phone, tools, twilio
from boba_proto.errors import RemoteProtocolError
from boba_proto.menu import FUNCTIONS, Menu
from boba_proto.model import (
    EffectFailed,
    LookupOrders,
    Order,
    OrderCommitted,
    OrdersFound,
    OrderStatus,
)
from boba_proto.shop import Availability


class FuzzFinding(AssertionError):
    """A target broke its contract on this input (our bug: the fuzzer found it)."""


def twilio_frame(data: bytes) -> None:
    """A Twilio frame decodes to an event or raises RemoteProtocolError, nothing else."""
    with contextlib.suppress(RemoteProtocolError):
        twilio.decode(data)


def agent_frame(data: bytes) -> None:
    """An agent frame decodes to a message or raises RemoteProtocolError, nothing else."""
    with contextlib.suppress(RemoteProtocolError):
        agent.decode(data)


def phone_frame(data: bytes) -> None:
    """A softphone frame (either direction) decodes or raises RemoteProtocolError."""
    with contextlib.suppress(RemoteProtocolError):
        phone.decode_from_phone(data, call_sid="CA" + "0" * 32)
    with contextlib.suppress(RemoteProtocolError):
        phone.decode_to_phone(data)


_FUNCTION_NAMES = [fn.name for fn in FUNCTIONS]
_ARGUMENT_KEYS = ["flavor", "toppings", "addons", "sweetness", "ice", "index", "phone",
                  "order_number", "name"]
_WORDS = ["taro", "Taro Milk Tea", "black milk tea", "boba", "pearls", "pudding", "cream",
          "matcha", "50%", "half sweet", "no ice", "light ice", "+14155552671",
          "(415) 555-2671", "4782", "0", "-1", "", "\u202e", "null"]


def _value(provider: Any, depth: int = 0) -> object:
    """One JSON value, biased towards the words and shapes the functions expect."""
    kind = provider.ConsumeIntInRange(0, 7 if depth < 2 else 4)
    if kind == 0:
        return provider.PickValueInList(_WORDS)
    if kind == 1:
        return provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 40))
    if kind == 2:
        return provider.ConsumeIntInRange(-(2**40), 2**40)
    if kind == 3:
        return provider.ConsumeBool()
    if kind == 4:
        return None if provider.ConsumeBool() else provider.ConsumeRegularFloat()
    if kind in (5, 6):
        return [_value(provider, depth + 1) for _ in range(provider.ConsumeIntInRange(0, 4))]
    return {provider.PickValueInList(_ARGUMENT_KEYS): _value(provider, depth + 1)
            for _ in range(provider.ConsumeIntInRange(0, 4))}


def _arguments(provider: Any) -> str:
    """The `arguments` string: usually a JSON object, sometimes anything at all."""
    if provider.ConsumeIntInRange(0, 9) == 0:
        return provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 80))
    fields = {provider.PickValueInList(_ARGUMENT_KEYS): _value(provider)
              for _ in range(provider.ConsumeIntInRange(0, 5))}
    return json.dumps(fields)


def _check_result(name: str, result: object) -> None:
    """Every FunctionCallResponse content is a JSON object with `ok`, and a sentence if not ok."""
    try:
        json.dumps(result)
    except (TypeError, ValueError) as error:
        raise FuzzFinding(f"{name}: result is not JSON-able: {error}") from error
    if not isinstance(result, dict) or not isinstance(result.get("ok"), bool):
        raise FuzzFinding(f"{name}: result without a boolean 'ok': {result!r}")
    if result["ok"] is False and not (isinstance(result.get("error"), str) and result["error"]):
        raise FuzzFinding(f"{name}: a refusal without a sentence: {result!r}")


def _answer(state: tools.ToolState, name: str, effect: object, provider: Any,
            menu: Menu) -> tools.ToolState:
    """Feed the effect a result the runtime could give: committed, found, or failed."""
    request_id = effect.request_id  # type: ignore[attr-defined]
    result: OrderCommitted | OrdersFound | EffectFailed
    if provider.ConsumeBool():
        result = EffectFailed(request_id=request_id, reason="fuzz")
    elif isinstance(effect, LookupOrders):
        phone = effect.phones[0] if effect.phones else "+14155552671"
        orders = tuple(
            Order(order_number=f"{provider.ConsumeIntInRange(0, 9999):04d}",
                  status=OrderStatus.RECEIVED, phone=phone, items=(), total_cents=0,
                  created_at="2026-12-02T16:00:00Z")
            for _ in range(provider.ConsumeIntInRange(0, 3))
        )
        result = OrdersFound(request_id=request_id, orders=orders)
    else:
        draft = effect.draft  # type: ignore[attr-defined]
        order = Order(order_number=f"{provider.ConsumeIntInRange(0, 9999):04d}",
                      status=OrderStatus.RECEIVED, phone=draft.phone, items=draft.items,
                      total_cents=draft.total_cents, created_at="2026-12-02T16:00:00Z")
        result = OrderCommitted(request_id=request_id, order=order)
    state, final = tools.complete_effect(menu, state, name, result)
    _check_result(name, final)
    return state


def dispatcher(menu: Menu) -> Callable[[bytes], None]:
    """A target running up to 12 function calls on one call's state, effects answered."""
    import atheris

    def run(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        caller = provider.PickValueInList(["+14155552671", "anonymous", None, "12"])
        # CONTRACT §12: some calls may transfer, and anything may be sold out.
        sold_out = Availability(
            flavors=frozenset(f for f in menu.flavors if provider.ConsumeBool()),
            toppings=frozenset(t for t in menu.toppings if provider.ConsumeBool()),
            addons=frozenset(a for a in menu.addons if provider.ConsumeBool()),
        )
        state = tools.initial_state(caller, call_sid="CA" + "0" * 32,
                                    transfer_enabled=provider.ConsumeBool(),
                                    availability=sold_out)
        for n in range(provider.ConsumeIntInRange(1, 12)):
            if provider.ConsumeIntInRange(0, 15) == 0:
                name = provider.ConsumeUnicodeNoSurrogates(12)
            else:
                name = provider.PickValueInList(_FUNCTION_NAMES)
            state, outcome = tools.dispatch(menu, state, name, _arguments(provider),
                                            request_id=f"fc_{n}")
            if isinstance(outcome, tools.ToolEffect):
                state = _answer(state, name, outcome.effect, provider, menu)
            else:
                _check_result(name, outcome.result)

    return run
