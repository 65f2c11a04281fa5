"""The local agent's dialogue manager, run against the real agent functions.

The big table: one caller phrasing in a known situation -> exactly the function calls
(names and arguments) the dialogue makes for it. Then whole conversations, and the
property that matters most: phrasing it cannot place never produces a drink.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boba_proto import tools
from boba_proto.errors import LocalProtocolError, RemoteProtocolError
from boba_proto.local_agent.dialogue import (
    CallFunction,
    DialoguePhase,
    LocalDialogue,
    Say,
    spoken_phone,
)
from boba_proto.model import EffectFailed
from tests.protocol.dialogue_harness import Conversation, builtin_menu

TARO = "taro milk tea"
BLACK = "black milk tea"


# --- situations ------------------------------------------------------------------------------


def fresh() -> Conversation:
    return Conversation()


def staged() -> Conversation:
    """A taro milk tea with boba, read back, waiting for the caller's OK."""
    c = Conversation()
    c.say("a taro milk tea with boba")
    assert c.dialogue.phase is DialoguePhase.CONFIRMING_DRINK
    return c


def one_in_cart() -> Conversation:
    c = staged()
    c.say("yes")
    assert len(c.cart) == 1
    return c


def two_in_cart() -> Conversation:
    c = one_in_cart()
    c.say("and a black milk tea with pudding, less ice")
    c.say("yes")
    assert len(c.cart) == 2
    return c


def asking_phone() -> Conversation:
    c = one_in_cart()
    c.say("that's all")
    assert c.dialogue.phase is DialoguePhase.ASKING_PHONE
    return c


def phone_read_back() -> Conversation:
    c = asking_phone()
    c.say("415 555 0142")
    assert c.dialogue.phase is DialoguePhase.CONFIRMING_PHONE
    return c


def placed() -> Conversation:
    c = phone_read_back()
    c.say("yes")
    assert c.dialogue.phase is DialoguePhase.PLACED
    return c


SITUATIONS: dict[str, Callable[[], Conversation]] = {
    "fresh": fresh, "staged": staged, "one_in_cart": one_in_cart,
    "two_in_cart": two_in_cart, "asking_phone": asking_phone,
    "phone_read_back": phone_read_back, "placed": placed,
}

Call = tuple[str, dict[str, Any]]


def add(flavor: str, **fields: Any) -> Call:
    return ("add_to_cart", {"flavor": flavor, **fields})


CONFIRM: Call = ("confirm_pending_to_cart", {})

# situation, what the caller says, the calls it makes (in order)
TABLE: list[tuple[str, str, list[Call]]] = [
    # flavors, by name and alias, with fillers
    ("fresh", "taro milk tea", [add(TARO)]),
    ("fresh", "Taro Milk Tea please", [add(TARO)]),
    ("fresh", "hi there, can I get a taro milk tea please", [add(TARO)]),
    ("fresh", "I'd like a black milk tea", [add(BLACK)]),
    ("fresh", "can I have a black tea", [add(BLACK)]),
    ("fresh", "a classic milk tea", [add(BLACK)]),
    ("fresh", "just a taro", [add(TARO)]),
    ("fresh", "hello! um, could I get the black one", [add(BLACK)]),
    ("fresh", "gimme a taro milk tea", [add(TARO)]),
    # toppings: names, aliases, multi-word
    ("fresh", "taro milk tea with boba", [add(TARO, toppings=["boba"])]),
    ("fresh", "a taro milk tea with tapioca pearls", [add(TARO, toppings=["boba"])]),
    ("fresh", "black milk tea with tapioca", [add(BLACK, toppings=["boba"])]),
    ("fresh", "black milk tea with pearls", [add(BLACK, toppings=["boba"])]),
    ("fresh", "taro with the crystal agar", [add(TARO, toppings=["crystal agar boba"])]),
    ("fresh", "taro with crystal agar boba", [add(TARO, toppings=["crystal agar boba"])]),
    ("fresh", "taro with crystal boba", [add(TARO, toppings=["crystal agar boba"])]),
    ("fresh", "black milk tea with egg pudding", [add(BLACK, toppings=["egg pudding"])]),
    ("fresh", "black milk tea with pudding", [add(BLACK, toppings=["egg pudding"])]),
    ("fresh", "taro with boba and pudding",
     [add(TARO, toppings=["boba", "egg pudding"])]),
    ("fresh", "taro milk tea with foam", [add(TARO, toppings=["vanilla cream"])]),
    ("fresh", "taro milk tea with vanilla cream and matcha stencil on top",
     [add(TARO, toppings=["vanilla cream"], addons=["matcha stencil on top"])]),
    ("fresh", "black tea, cream foam, matcha on top",
     [add(BLACK, toppings=["vanilla cream"], addons=["matcha stencil on top"])]),
    # sweetness: digits, words, aliases
    ("fresh", "taro milk tea 75%", [add(TARO, sweetness="75%")]),
    ("fresh", "taro milk tea, 75 % sweet", [add(TARO, sweetness="75%")]),
    ("fresh", "taro milk tea seventy five percent sweet", [add(TARO, sweetness="75%")]),
    ("fresh", "taro milk tea twenty five percent sugar", [add(TARO, sweetness="25%")]),
    ("fresh", "a black milk tea, fifty percent", [add(BLACK, sweetness="50%")]),
    ("fresh", "black milk tea one hundred percent sweet", [add(BLACK, sweetness="100%")]),
    ("fresh", "black milk tea a hundred percent", [add(BLACK, sweetness="100%")]),
    ("fresh", "taro half sweet", [add(TARO, sweetness="50%")]),
    ("fresh", "taro milk tea with no sugar", [add(TARO, sweetness="0%")]),
    ("fresh", "taro milk tea unsweetened", [add(TARO, sweetness="0%")]),
    ("fresh", "taro milk tea, zero percent sweetness", [add(TARO, sweetness="0%")]),
    ("fresh", "black milk tea without sugar", [add(BLACK, sweetness="0%")]),
    ("fresh", "black milk tea, quarter sweet", [add(BLACK, sweetness="25%")]),
    ("fresh", "black milk tea full sugar", [add(BLACK, sweetness="100%")]),
    ("fresh", "black milk tea 30% sweet", [add(BLACK, sweetness="30%")]),  # refused by tool
    # ice
    ("fresh", "taro milk tea less ice", [add(TARO, ice="less ice")]),
    ("fresh", "taro milk tea with light ice", [add(TARO, ice="less ice")]),
    ("fresh", "taro milk tea no ice", [add(TARO, ice="no ice")]),
    ("fresh", "taro milk tea without ice", [add(TARO, ice="no ice")]),
    ("fresh", "taro milk tea, hold the ice", [add(TARO, ice="no ice")]),
    ("fresh", "taro milk tea extra ice", [add(TARO, ice="extra ice")]),
    ("fresh", "black milk tea normal ice", [add(BLACK, ice="regular ice")]),
    # everything at once, in any order
    ("fresh", "less ice, 25% sweet, boba, black milk tea",
     [add(BLACK, toppings=["boba"], sweetness="25%", ice="less ice")]),
    ("fresh", "can I get a black milk tea with the crystal agar and matcha stencil on top, "
     "seventy five percent sweet, less ice please",
     [add(BLACK, toppings=["crystal agar boba"], addons=["matcha stencil on top"],
          sweetness="75%", ice="less ice")]),
    # off the menu: handed to the function, which refuses with its sentence
    ("fresh", "can I get a mango smoothie", [add("mango smoothie")]),
    ("fresh", "I want a coffee", [add("coffee")]),
    ("fresh", "taro milk tea with cheese foam", [add(TARO, toppings=["cheese foam"])]),
    ("fresh", "black milk tea with oreo crumbs", [add(BLACK, toppings=["oreo crumbs"])]),
    # an announced count creates nothing
    ("fresh", "I'd like to order two drinks", []),
    ("fresh", "hi, three drinks please", []),
    # two drinks in one sentence: the first is staged, the second waits its turn
    ("fresh", "a taro with boba and a black tea with pudding",
     [add(TARO, toppings=["boba"])]),
    ("fresh", "two taro milk teas", [add(TARO)]),
    # confirming a staged drink
    ("staged", "yes", [CONFIRM]),
    ("staged", "yeah that's right", [CONFIRM]),
    ("staged", "correct", [CONFIRM]),
    ("staged", "sounds good", [CONFIRM]),
    ("staged", "perfect", [CONFIRM]),
    ("staged", "yes that's all", [CONFIRM]),
    # changing a staged drink
    ("staged", "actually make it black milk tea",
     [("update_pending_item", {"flavor": BLACK})]),
    ("staged", "make it a black tea instead", [("update_pending_item", {"flavor": BLACK})]),
    ("staged", "no boba", [("update_pending_item", {"toppings": []})]),
    ("staged", "without the boba", [("update_pending_item", {"toppings": []})]),
    ("staged", "hold the tapioca", [("update_pending_item", {"toppings": []})]),
    ("staged", "no toppings", [("update_pending_item", {"toppings": []})]),
    ("staged", "add pudding", [("update_pending_item", {"toppings": ["boba", "egg pudding"]})]),
    ("staged", "swap the boba for pudding",
     [("update_pending_item", {"toppings": ["boba", "egg pudding"]})]),
    ("staged", "less ice", [("update_pending_item", {"ice": "less ice"})]),
    ("staged", "make it 25% sweet", [("update_pending_item", {"sweetness": "25%"})]),
    ("staged", "half sweet and no ice",
     [("update_pending_item", {"sweetness": "50%", "ice": "no ice"})]),
    ("staged", "never mind", [("clear_pending_item", {})]),
    ("staged", "yes, and a black milk tea", [CONFIRM, add(BLACK)]),
    ("staged", "also a black milk tea with pudding",
     [CONFIRM, add(BLACK, toppings=["egg pudding"])]),
    ("staged", "no", []),
    # drinks already in the order
    ("one_in_cart", "no boba", [("modify_cart_item", {"index": 0, "toppings": []})]),
    ("one_in_cart", "make it less ice", [("set_sweetness_ice", {"index": 0, "ice": "less ice"})]),
    ("one_in_cart", "actually make it black milk tea",
     [("modify_cart_item", {"index": 0, "flavor": BLACK})]),
    ("one_in_cart", "another taro milk tea", [add(TARO)]),
    ("one_in_cart", "another one", [add(TARO, toppings=["boba"], sweetness="50%",
                                        ice="regular ice")]),
    ("one_in_cart", "same again please", [add(TARO, toppings=["boba"], sweetness="50%",
                                              ice="regular ice")]),
    ("one_in_cart", "and a black milk tea", [add(BLACK)]),
    ("one_in_cart", "remove it", []),
    ("one_in_cart", "remove the first one", [("remove_from_cart", {"index": 0})]),
    ("two_in_cart", "remove the second one", [("remove_from_cart", {"index": 1})]),
    ("two_in_cart", "cancel the 2nd drink", [("remove_from_cart", {"index": 1})]),
    ("two_in_cart", "delete the last one", [("remove_from_cart", {"index": 1})]),
    ("two_in_cart", "remove the taro milk tea", [("remove_from_cart", {"index": 0})]),
    ("two_in_cart", "make the first one 25% sweet",
     [("set_sweetness_ice", {"index": 0, "sweetness": "25%"})]),
    ("two_in_cart", "no pudding on the second one",
     [("modify_cart_item", {"index": 1, "toppings": []})]),
    ("two_in_cart", "change the second drink to taro milk tea",
     [("modify_cart_item", {"index": 1, "flavor": TARO})]),
    ("two_in_cart", "what's in my order", [("get_cart", {})]),
    ("two_in_cart", "cancel my order",
     [("remove_from_cart", {"index": 0}), ("remove_from_cart", {"index": 0})]),
    ("staged", "actually cancel everything", [("clear_pending_item", {})]),
    ("two_in_cart", "what's the total", [("get_cart", {})]),
    ("two_in_cart", "what do I owe?", [("get_cart", {})]),
    ("two_in_cart", "can I pay by card", []),
    # a sweetness that is no level: asked, never guessed
    ("fresh", "a black milk tea, extra sweet", []),
    ("fresh", "taro milk tea with less sugar", []),
    ("staged", "make it sweeter", []),
    ("fresh", "can I get a large taro milk tea", [add(TARO)]),
    # finishing and the phone number
    ("one_in_cart", "that's all", []),
    ("one_in_cart", "no thanks", []),
    ("one_in_cart", "nothing else", []),
    ("asking_phone", "415 555 0142", [("save_phone_number", {"phone": "4155550142"})]),
    ("asking_phone", "my number is 415-555-0142",
     [("save_phone_number", {"phone": "4155550142"})]),
    ("asking_phone", "(415) 555-0142", [("save_phone_number", {"phone": "4155550142"})]),
    ("asking_phone", "four one five, five five five, zero one four two",
     [("save_phone_number", {"phone": "4155550142"})]),
    ("asking_phone", "four one five five five five oh one four two",
     [("save_phone_number", {"phone": "4155550142"})]),
    ("asking_phone", "four one five, double five five, zero one four two",
     [("save_phone_number", {"phone": "4155550142"})]),
    ("asking_phone", "it's 4 1 5 5 5 5 0 1 4 2",
     [("save_phone_number", {"phone": "4155550142"})]),
    ("asking_phone", "The caller typed 4 1 5 5 5 5 0 1 4 2",
     [("save_phone_number", {"phone": "4155550142"})]),
    ("asking_phone", "+1 415 555 0142", [("save_phone_number", {"phone": "14155550142"})]),
    ("asking_phone", "555 0142", [("save_phone_number", {"phone": "5550142"})]),  # refused
    ("asking_phone", "415", []),
    ("asking_phone", "123 456 7890", [("save_phone_number", {"phone": "1234567890"})]),
    ("phone_read_back", "yes", [("checkout_order", {})]),
    ("phone_read_back", "that's right", [("checkout_order", {})]),
    ("phone_read_back", "no", []),
    ("phone_read_back", "no, it's 415 555 1234",
     [("save_phone_number", {"phone": "4155551234"})]),
    # questions, anywhere
    ("fresh", "what's on the menu", [("menu_summary", {})]),
    ("fresh", "what flavors do you have?", [("menu_summary", {})]),
    ("staged", "what toppings are there", [("menu_summary", {})]),
    ("fresh", "do you have mango?", [("menu_summary", {})]),
    ("fresh", "is my order ready", [("order_status", {})]),
    ("fresh", "is order 4782 ready yet?", [("order_status", {"order_number": "4782"})]),
    ("placed", "is my order ready?", [("order_status", {})]),
    # goodbye
    ("placed", "no, bye", [("end_call", {})]),
    ("placed", "no thanks", [("end_call", {})]),
    ("placed", "that's all, goodbye", [("end_call", {})]),
    ("fresh", "bye", [("end_call", {})]),
    ("placed", "another taro milk tea", [add(TARO)]),  # refused: already placed
    # what it cannot place: a question back, no call
    ("fresh", "blah blah", []),
    ("fresh", "hmm", []),
    ("fresh", "", []),
    ("fresh", "milk tea please", []),
    ("staged", "purple monkey dishwasher", []),
]


@pytest.mark.parametrize(("situation", "said", "expected"), TABLE,
                         ids=[f"{s}: {t!r}" for s, t, _ in TABLE])
def test_phrasings(situation: str, said: str, expected: list[Call]) -> None:
    conversation = SITUATIONS[situation]()
    turn = conversation.say(said)
    assert [(name, args) for name, args, _ in turn.calls] == expected
    assert turn.says, "every turn ends with the agent saying something"


# --- what the agent says -----------------------------------------------------------------------


def test_a_staged_drink_is_read_back_with_its_price_and_a_question() -> None:
    turn = Conversation().say("a taro milk tea with tapioca pearls, 75% sweet, less ice")
    assert turn.text == ("Okay, a taro milk tea with boba, 75% sweet, less ice, $6.25. "
                         "Is that right?")


def test_refusals_read_the_functions_sentence() -> None:
    turn = Conversation().say("can I get a mango smoothie")
    error = turn.calls[0][2]["error"]
    assert turn.text == error
    assert "mango smoothie" in turn.text and "taro milk tea" in turn.text


def test_the_announced_count_is_remembered() -> None:
    c = Conversation()
    assert "two drinks" in c.say("I'd like to order two drinks").text
    c.say("a taro milk tea")
    assert "second drink" in c.say("yes").text
    c.say("a black milk tea")
    assert "Anything else?" in c.say("yes").text
    assert c.cart and len(c.cart) == 2


def test_a_repeated_drink_is_staged_and_confirmed_twice() -> None:
    c = Conversation()
    c.say("two taro milk teas with boba")
    second = c.say("yes")
    assert [name for name, _, _ in second.calls] == ["confirm_pending_to_cart", "add_to_cart"]
    assert "second one" in second.text
    c.say("yes")
    assert [d["flavor"] for d in c.cart] == [TARO, TARO]


def test_two_drinks_in_one_sentence_are_read_back_one_at_a_time() -> None:
    c = Conversation()
    c.say("a taro with boba and a black tea with pudding, less ice")
    turn = c.say("yes")
    assert turn.calls[1][1] == add(BLACK, toppings=["egg pudding"], ice="less ice")[1]
    c.say("yes")
    assert [d["flavor"] for d in c.cart] == [TARO, BLACK]


def test_an_addon_needing_a_topping_is_offered_and_yes_adds_both() -> None:
    c = Conversation()
    offer = c.say("a black milk tea with matcha")
    assert "only comes with vanilla cream" in offer.text
    turn = c.say("yes please")
    assert turn.calls[0][:2] == add(BLACK, toppings=["vanilla cream"],
                                    addons=["matcha stencil on top"])


def test_a_vague_sweetness_is_asked_and_the_answer_completes_the_drink() -> None:
    c = Conversation()
    ask = c.say("I'll have a black milk tea with boba, extra sweet")
    assert not ask.calls and ask.text.startswith("How sweet would you like it?")
    turn = c.say("75%")
    assert turn.calls[0][:2] == add(BLACK, toppings=["boba"], sweetness="75%")


def test_a_flavor_asked_for_later_keeps_what_was_said() -> None:
    c = Conversation()
    ask = c.say("with boba and less ice")
    assert not ask.calls and "Which flavor" in ask.text
    turn = c.say("the taro one")
    assert turn.calls[0][:2] == add(TARO, toppings=["boba"], ice="less ice")


def test_a_whole_order_checks_out_once_and_reads_the_number_digit_by_digit() -> None:
    c = Conversation(order_number="4782", ready_in_minutes=8)
    c.say("hi there, can I get a taro milk tea with tapioca pearls please")
    c.say("yes")
    ask = c.say("no, that's all")
    assert "$6.25" in ask.text and "phone number" in ask.text
    read_back = c.say("four one five, five five five, zero one four two")
    assert read_back.text == "I have 4 1 5, 5 5 5, 0 1 4 2. Is that right?"
    done = c.say("yes")  # no second "shall I place it?"
    assert [name for name, _, _ in done.calls] == ["checkout_order"]
    # CONTRACT §12: digit by digit, then the total and the wait.
    assert "order number is 4, 7, 8, 2. That's one drink for $6.25. It should be ready in " \
        "about 8 minutes." in done.text
    assert len(c.committed) == 1 and c.committed[0].phone == "+14155550142"
    bye = c.say("no thanks, bye")
    assert bye.names == ["end_call"] and "Goodbye" in bye.text
    assert c.dialogue.ended
    assert c.dialogue.on_user_text("hello?") == []


def test_a_failed_checkout_is_tried_again_when_the_caller_says_yes() -> None:
    c = phone_read_back()
    real = c._run
    failures = iter([True])

    def store_down_once(call: CallFunction) -> dict[str, object]:
        if call.name == "checkout_order" and next(failures, False):
            c.state, outcome = tools.dispatch(c.menu, c.state, call.name, call.arguments,
                                              request_id=call.id)
            assert isinstance(outcome, tools.ToolEffect)
            c.state, result = tools.complete_effect(
                c.menu, c.state, call.name,
                EffectFailed(request_id=call.id, reason="store down"),
            )
            return result
        return real(call)

    c._run = store_down_once  # type: ignore[method-assign]
    failed = c.say("yes")
    assert "couldn't place the order" in failed.text
    again = c.say("yes please")
    assert again.names == ["checkout_order"] and "order number is" in again.text
    assert len(c.committed) == 1


def test_a_phone_given_early_is_read_back_and_used_at_the_end() -> None:
    c = Conversation()
    c.say("a black milk tea")
    c.say("yes")
    c.say("my number is 415 555 0142")
    c.say("yes")
    done = c.say("that's all")
    assert done.names == ["checkout_order"]


def test_a_number_said_while_a_drink_waits_comes_back_to_the_drink() -> None:
    c = staged()
    c.say("my number is 415 555 0142")
    back = c.say("yes")
    assert back.text == ("Great, I've got your number. Shall I add a taro milk tea with boba, "
                         "50% sweet, regular ice?")
    assert c.say("yes").names == ["confirm_pending_to_cart"]
    assert c.say("that's all").names == ["checkout_order"]


def test_a_status_question_without_a_number_asks_for_it() -> None:
    c = Conversation()
    ask = c.say("is my order ready?")
    assert "What phone number" in ask.text
    answer = c.say("four one five five five five zero one four two")
    assert answer.names == ["save_phone_number", "order_status"]
    # a said number alone finds nothing (CONTRACT §5): the order number is needed too
    assert "order number" in answer.text


def test_a_said_number_with_its_order_number_hears_the_status() -> None:
    c = Conversation()
    c.past_orders.append(placed().committed[0])
    ask = c.say("is order 4782 ready yet?")
    assert "What phone number" in ask.text
    answer = c.say("four one five five five five zero one four two")
    assert answer.names == ["save_phone_number", "order_status"]
    assert answer.text.startswith("Order 4 7 8 2 is being prepared.")


def test_a_caller_with_a_number_hears_each_orders_status() -> None:
    c = Conversation(caller="+14155550142")
    placed_before = placed()
    order = placed_before.committed[0]
    c.past_orders.append(order)
    turn = c.say("is my order ready")
    assert turn.text.startswith("Order 4 7 8 2 is being prepared.")


def test_the_menu_summary_is_read() -> None:
    turn = Conversation().say("what's on the menu?")
    assert turn.text.startswith("We have taro milk tea and black milk tea, $5.50 each.")


def test_a_placed_order_cannot_change_and_the_caller_hears_why() -> None:
    c = placed()
    turn = c.say("add a black milk tea")
    assert "already placed" in turn.text
    assert len(c.committed) == 1


# --- the API's rules ---------------------------------------------------------------------------


def test_steps_end_with_at_most_one_function_call_and_wait_for_it() -> None:
    dialogue = LocalDialogue(builtin_menu())
    steps = dialogue.on_user_text("a taro milk tea")
    assert isinstance(steps[-1], CallFunction) and len(steps) == 1
    assert dialogue.awaiting_function == steps[-1].id
    with pytest.raises(LocalProtocolError):
        dialogue.on_user_text("yes")
    with pytest.raises(RemoteProtocolError):
        dialogue.on_function_result("not-that-one", "{}")
    result = {"ok": True, "staged": True, "pending_item": {
        "flavor": TARO, "toppings": [], "addons": [], "sweetness": "50%",
        "ice": "regular ice", "price": 5.5}}
    after = dialogue.on_function_result(steps[-1].id, json.dumps(result))
    assert all(isinstance(s, Say) for s in after)
    assert dialogue.awaiting_function is None


def test_a_garbled_function_result_is_a_refusal_not_a_crash() -> None:
    dialogue = LocalDialogue(builtin_menu())
    steps = dialogue.on_user_text("a taro milk tea")
    assert isinstance(steps[0], CallFunction)
    after = dialogue.on_function_result(steps[0].id, "not json")
    assert [type(s) for s in after] == [Say]


def test_spoken_phone_numbers() -> None:
    assert spoken_phone("+14155550142") == "4 1 5, 5 5 5, 0 1 4 2"
    assert spoken_phone("+442071838750") == "4 4 2 0 7 1 8 3 8 7 5 0"


# --- never a wrong drink -----------------------------------------------------------------------

MENU_WORDS = ["taro", "black", "milk", "tea", "boba", "pudding", "agar", "crystal", "cream",
              "foam", "matcha", "sweet", "ice", "less", "no", "half", "with", "and", "a",
              "please", "mango", "cheese", "latte", "yes", "not", "without", "extra", "two",
              "seventy", "five", "percent", "sugar", "the", "make", "it", "instead", "one"]


TOPPING_WORDS = {
    "boba": {"boba"},
    "egg pudding": {"pudding"},
    "crystal agar boba": {"crystal", "agar"},
    "vanilla cream": {"cream", "foam"},
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(MENU_WORDS), min_size=1, max_size=8))
def test_any_word_salad_stages_only_drinks_whose_every_part_was_said(words: list[str]) -> None:
    c = Conversation()
    text = " ".join(words)
    turn = c.say(text)
    for name, args, result in turn.calls:
        if name == "add_to_cart" and result.get("ok"):
            said = set(words)
            flavor = str(args["flavor"])
            assert said & set(flavor.split()), (text, args)
            for topping in args.get("toppings", []):
                assert said & TOPPING_WORDS[str(topping)], (text, args)
    assert not c.cart, "nothing is in the order before the caller confirms it"


PHRASES = ["yes", "no", "that's all", "a taro milk tea", "black milk tea with boba",
           "no boba", "less ice", "75%", "remove the second one", "actually make it taro",
           "what's on the menu", "is my order ready", "415 555 0142", "four one five",
           "never mind", "bye", "two drinks", "with matcha", "mango smoothie", "what?",
           "make the first one no sugar", "another one", "extra sweet", "what do I owe",
           "The caller typed 4 1 5 5 5 5 1 2 3 4", "and a black tea with pudding", ""]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PHRASES), min_size=1, max_size=25))
def test_any_conversation_keeps_the_rules(said: list[str]) -> None:
    """Whatever the caller says, in any order: every turn answers, the dialogue's picture
    of the order matches the functions', and at most one order is ever committed."""
    c = Conversation()
    for text in said:
        if c.dialogue.ended:
            assert c.dialogue.on_user_text(text) == []
            continue
        turn = c.say(text)
        assert turn.says
        assert c.dialogue.items == [d for d in _items_json(c)]
    assert len(c.committed) <= 1


def _items_json(c: Conversation) -> list[dict[str, Any]]:
    from boba_proto.model import drink_to_json

    return [drink_to_json(d) for d in c.state.cart.items]
