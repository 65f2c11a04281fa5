"""The local agent's dialogue and CONTRACT §12: sold-out items, "Anything else?" before
checking out, and the number digit by digit with the total and the wait."""

from __future__ import annotations

import msgspec

from boba_proto.shop import Availability
from tests.protocol.dialogue_harness import Conversation


def sold_out_taro(c: Conversation) -> None:
    c.state = msgspec.structs.replace(
        c.state, availability=Availability(flavors=frozenset({"taro milk tea"})))


def test_a_sold_out_flavor_is_refused_by_name_and_the_call_goes_on() -> None:
    c = Conversation()
    sold_out_taro(c)
    refused = c.say("can I get a taro milk tea with boba")
    assert refused.names == ["add_to_cart"] and refused.calls[0][2]["ok"] is False
    assert "taro milk tea is sold out" in refused.text
    staged = c.say("a black milk tea then")
    assert staged.names == ["add_to_cart"] and staged.calls[0][2]["ok"] is True


def test_asking_for_a_sold_out_flavor_hears_so() -> None:
    c = Conversation()
    sold_out_taro(c)
    answer = c.say("do you have taro milk tea?")
    assert answer.names == ["menu_summary"]
    assert "taro milk tea is sold out right now" in answer.text
    assert "black milk tea" in answer.text


def test_anything_else_comes_before_the_checkout_and_the_wait_is_read() -> None:
    c = Conversation(order_number="0519", ready_in_minutes=11)
    c.say("a black milk tea with egg pudding")
    confirmed = c.say("yes")
    assert confirmed.text.endswith("Anything else?")
    assert "checkout_order" not in confirmed.names
    c.say("no, that's all")
    c.say("four one five, five five five, zero one four two")
    done = c.say("yes")
    assert done.names == ["checkout_order"]
    assert "order number is 0, 5, 1, 9." in done.text
    assert "$6.25" in done.text and "ready in about 11 minutes" in done.text
