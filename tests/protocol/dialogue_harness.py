"""Runs `LocalDialogue` against the real agent functions (`boba_proto.tools`), with a
pretend store, so dialogue tests see exactly what the bridge would answer."""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass, field

import msgspec

from boba_proto import tools
from boba_proto.local_agent.dialogue import CallFunction, LocalDialogue, Say
from boba_proto.menu import Menu, parse_menu
from boba_proto.model import (
    CommitOrder,
    LookupOrders,
    Order,
    OrderCommitted,
    OrdersFound,
    OrderStatus,
)


def builtin_menu() -> Menu:
    text = importlib.resources.files("boba_proto").joinpath("menu.toml").read_text("utf-8")
    return parse_menu(text, source="menu.toml")


@dataclass
class Turn:
    says: list[str] = field(default_factory=list)
    calls: list[tuple[str, dict[str, object], dict[str, object]]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.says)

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


class Conversation:
    """One call: the dialogue, the functions' state and a pretend order store."""

    def __init__(self, menu: Menu | None = None, *, caller: str | None = None,
                 past_orders: tuple[Order, ...] = (), order_number: str = "4782",
                 ready_in_minutes: int | None = None) -> None:
        self.menu = menu or builtin_menu()
        self.dialogue = LocalDialogue(self.menu)
        self.state = tools.initial_state(caller, call_sid="CAtest")
        self.past_orders = list(past_orders)
        self.order_number = order_number
        self.ready_in_minutes = ready_in_minutes  # what the store would tell (CONTRACT §12)
        self.committed: list[Order] = []

    def say(self, text: str) -> Turn:
        turn = Turn()
        steps = self.dialogue.on_user_text(text)
        while steps:
            step = steps.pop(0)
            if isinstance(step, Say):
                turn.says.append(step.text)
                continue
            assert isinstance(step, CallFunction)
            assert not steps, "a function call must end the list of steps"
            result = self._run(step)
            turn.calls.append((step.name, json.loads(step.arguments), result))
            steps = self.dialogue.on_function_result(step.id, json.dumps(result))
        return turn

    def _run(self, call: CallFunction) -> dict[str, object]:
        self.state, outcome = tools.dispatch(
            self.menu, self.state, call.name, call.arguments, request_id=call.id
        )
        if isinstance(outcome, tools.ToolReply | tools.ToolEndCall):
            return outcome.result
        effect = outcome.effect
        if isinstance(effect, CommitOrder):
            order = Order(
                order_number=self.order_number, status=OrderStatus.RECEIVED,
                phone=effect.draft.phone, items=effect.draft.items,
                total_cents=effect.draft.total_cents, created_at="2026-11-25T10:00:00Z",
                name=effect.draft.name, ready_in_minutes=self.ready_in_minutes,
            )
            self.committed.append(order)
            self.past_orders.append(order)
            self.state, result = tools.complete_effect(
                self.menu, self.state, call.name,
                OrderCommitted(request_id=effect.request_id, order=order),
            )
            return result
        assert isinstance(effect, LookupOrders)
        found = tuple(o for o in self.past_orders if o.phone in effect.phones)
        self.state, result = tools.complete_effect(
            self.menu, self.state, call.name,
            OrdersFound(request_id=effect.request_id, orders=found),
        )
        return result

    @property
    def cart(self) -> list[dict[str, object]]:
        return [msgspec.to_builtins(d) for d in self.state.cart.items]
