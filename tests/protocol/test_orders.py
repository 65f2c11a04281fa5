"""An order's rules after checkout, without a database: the lifecycle, the refusals staff
read, the SMS texts (CONTRACT §8, to the letter) and the event shapes (CONTRACT §7)."""

from __future__ import annotations

import json

import msgspec
import pytest

from boba_proto import orders
from boba_proto.model import ACTIVE_STATUSES, OrderStatus
from boba_proto.orders import SmsKind, Transition, check_transition

R, D, P, C = (OrderStatus.RECEIVED, OrderStatus.READY, OrderStatus.PICKED_UP,
              OrderStatus.CANCELLED)


@pytest.mark.parametrize(
    ("current", "target", "verdict"),
    [
        (R, D, Transition.APPLY),
        (D, D, Transition.ALREADY_DONE),
        (P, D, Transition.CONFLICT),
        (C, D, Transition.CONFLICT),
        (D, P, Transition.APPLY),
        (R, P, Transition.CONFLICT),
        (P, P, Transition.CONFLICT),
        (C, P, Transition.CONFLICT),
        (R, C, Transition.APPLY),
        (D, C, Transition.CONFLICT),
        (P, C, Transition.CONFLICT),
        (C, C, Transition.CONFLICT),
    ],
)
def test_the_lifecycle(current: OrderStatus, target: OrderStatus, verdict: Transition) -> None:
    assert check_transition(current, target) is verdict


def test_no_staff_move_leads_back_to_received() -> None:
    assert all(check_transition(s, R) is Transition.CONFLICT for s in OrderStatus)


def test_conflict_sentences() -> None:
    assert orders.conflict_message("0042", P, D) == (
        "order 0042 is already picked up and cannot be marked done"
    )
    assert orders.conflict_message("0042", R, P) == (
        "order 0042 is received; only a ready order can be picked up"
    )
    assert orders.conflict_message("0042", D, C) == (
        "order 0042 is ready; only a received order can be cancelled"
    )


def test_sms_texts_are_the_contracts() -> None:
    assert orders.sms_text(SmsKind.RECEIVED, "4782") == (
        "Thanks for your order! Your order number is 4782. "
        "We'll text you when it's ready for pickup."
    )
    assert orders.sms_text(SmsKind.READY, "4782") == (
        "Your boba order #4782 is now ready for pickup!"
    )
    assert orders.SMS_ON_ENTERING == {R: SmsKind.RECEIVED, D: SmsKind.READY}


def test_events_encode_in_the_contracts_shape() -> None:
    created = json.loads(msgspec.json.encode(orders.order_created("0042")))
    assert list(created.items()) == [
        ("type", "order_created"), ("order_number", "0042"), ("status", "received"),
    ]
    changed = msgspec.json.encode(orders.status_changed("0042", P))
    assert changed == b'{"type":"order_status_changed","order_number":"0042","status":"picked_up"}'


def test_active_values_follow_the_model_in_lifecycle_order() -> None:
    assert orders.ACTIVE_STATUS_VALUES == ("received", "ready")
    assert {OrderStatus(v) for v in orders.ACTIVE_STATUS_VALUES} == ACTIVE_STATUSES
    assert orders.EXPIRED_STATUS not in ACTIVE_STATUSES
