"""Agent messages the happy path never sends, over real loopback calls (CONTRACT §5):
`FunctionCallCancelled`, `client_side: false`, several functions in one request,
`History`, `Warning`, and a `SettingsApplied` that takes its time. The fake agent fails
the test if the bridge answers a cancelled or server-side call, answers one twice, or sends
audio or typed words before `SettingsApplied` (tests/conftest.py reads its findings)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from tests.fakes.fake_agent import FakeAgentSession
from tests.fakes.twilio_client import make_call_sid
from tests.web.test_call_loopback import drink, shop_line

CALLER = "+14155550123"


async def place_call(tmp_path: Path, script: object, n: int, **options: object) -> object:
    async with shop_line(tmp_path, script, **options) as line:  # type: ignore[arg-type]
        sid = make_call_sid(n)
        with trio.fail_after(30):
            async with line.dial(sid, CALLER) as stream:
                await stream.closed.wait()
            await line.after(sid, CALLER)
        return await line.server.services.store.list_orders(status="all")


async def test_a_cancelled_checkout_is_never_answered_and_commits_once(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_audio(0.1)
        assert (await agent.call_function("add_to_cart", drink("taro milk tea", "boba")))["ok"]
        assert (await agent.call_function("confirm_pending_to_cart"))["ok"]
        assert (await agent.call_function("save_phone_number", {"phone": CALLER}))["ok"]
        # The caller kept talking: Deepgram voids the checkout it had just requested.
        [checkout_id] = await agent.request_functions(("checkout_order", None))
        await agent.cancel_functions(checkout_id)
        # The commit already under way still completes and the cart learns of it: a new
        # checkout answers "busy" until then, and then the placed order, never a second one.
        with trio.fail_after(10):
            while True:
                again = await agent.call_function("checkout_order")
                if again.get("order_number"):
                    break
                assert not again["ok"], again
        seen["order_number"] = again["order_number"]
        seen["cancelled_answered"] = checkout_id in agent.function_responses
        await agent.call_function("end_call")
        await agent.say("Goodbye!", seconds=0.2)

    orders = await place_call(tmp_path, script, 0xC1)
    assert seen["cancelled_answered"] is False
    assert [o.order_number for o in orders] == [seen["order_number"]]  # type: ignore[attr-defined]


async def test_batched_server_side_history_and_warning_messages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    seen: dict[str, object] = {}

    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_audio(0.1)
        await agent.history("user", "a black milk tea with egg pudding please")
        # Three functions in one request; Deepgram runs the third itself.
        staged, confirmed, server_side = await agent.request_functions(
            ("add_to_cart", drink("black milk tea", "egg pudding")),
            ("confirm_pending_to_cart", None),
            ("lookup_weather", {"city": "SF"}),
            client_side=[True, True, False],
        )
        seen["staged"] = await agent.function_result(staged)
        seen["confirmed"] = await agent.function_result(confirmed)
        await agent.server_side_result(server_side, {"forecast": "fog"})
        await agent.history(function_calls=[{
            "id": server_side, "name": "lookup_weather", "client_side": False,
            "arguments": '{"city": "SF"}', "response": '{"forecast": "fog"}'}])
        await agent.warning("THINK_REQUEST_FAILED", "the LLM timed out once; retried")
        assert (await agent.call_function("save_phone_number", {"phone": CALLER}))["ok"]
        checkout = await agent.call_function("checkout_order")
        assert checkout["ok"], (checkout, seen)
        seen["order_number"] = checkout["order_number"]
        seen["answered"] = list(agent.function_responses)
        await agent.call_function("end_call")
        await agent.say("Goodbye!", seconds=0.2)

    orders = await place_call(tmp_path, script, 0xC2)
    assert seen["staged"]["ok"] and seen["confirmed"]["ok"], seen  # type: ignore[index]
    answered = seen["answered"]
    assert isinstance(answered, list) and not any("lookup_weather" in a for a in answered)
    assert answered[:2] == sorted(answered[:2])  # in the request's order
    [order] = orders  # type: ignore[misc]
    assert order.order_number == seen["order_number"]
    assert [item.flavor for item in order.items] == ["black milk tea"]
    assert "THINK_REQUEST_FAILED" in caplog.text  # logged, and the call went on


async def test_caller_audio_and_digits_wait_for_a_slow_settings_applied(tmp_path: Path) -> None:
    seen: dict[str, float] = {}

    async def script(agent: FakeAgentSession) -> None:
        assert agent.settings_applied_at is not None
        await agent.wait_injected(1, timeout=15)
        seen["typed"] = trio.current_time() - agent.settings_applied_at
        await agent.call_function("end_call")
        await agent.say("Goodbye!", seconds=0.2)

    async with shop_line(tmp_path, script,
                         agent_options={"settings_applied_delay": 1.5}) as line:
        sid = make_call_sid(0xC3)
        with trio.fail_after(30):
            async with line.dial(sid, CALLER) as stream:
                for digit in "4155550123#":  # keyed while Deepgram is still applying Settings
                    await stream.send_dtmf(digit)
                await stream.closed.wait()
        session = line.agent.sessions[0]
        assert session.audio_messages > 0
        assert session.injected_user == ["The caller typed 4 1 5 5 5 5 0 1 2 3"], \
            session.injected_user
    # The fake records audio or words before SettingsApplied as protocol errors (conftest).
    assert seen["typed"] >= 0


async def test_listen_and_speak_models_reach_the_settings_message(tmp_path: Path) -> None:
    """CONTRACT §2/§5: BOBA_LISTEN_MODEL and BOBA_SPEAK_MODEL, as Deepgram receives them."""

    async def script(agent: FakeAgentSession) -> None:
        await agent.call_function("end_call")
        await agent.say("Goodbye!", seconds=0.1)

    env = {"BOBA_LISTEN_MODEL": "nova-2-phonecall", "BOBA_SPEAK_MODEL": "aura-2-thalia-en"}
    async with shop_line(tmp_path, script, **env) as line:
        sid = make_call_sid(0xC4)
        with trio.fail_after(30):
            async with line.dial(sid, CALLER) as stream:
                await stream.closed.wait()
        settings = line.agent.sessions[0].settings
        assert settings is not None
        agent = settings["agent"]
        listen, speak = agent["listen"]["provider"], agent["speak"]["provider"]
        assert (listen["type"], listen["model"]) == ("deepgram", "nova-2-phonecall"), listen
        assert (speak["type"], speak["model"]) == ("deepgram", "aura-2-thalia-en"), speak
