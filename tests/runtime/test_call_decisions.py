"""`run_call` carries out the core's decisions: it feeds `AgentConnected` at once and lets
the core wait for `Welcome` (giving up after 5 s), and a phone that stops reading ends
the call as PHONE_STUCK, not as an agent failure (issue 12)."""

from __future__ import annotations

from pathlib import Path

import trio

from boba_proto.call import WELCOME_TIMEOUT_SECONDS, EndReason
from boba_runtime.call.registry import CallOutcome
from boba_runtime.metrics import Metrics
from tests.runtime.test_call_runner import SID, MemoryAgent, MemoryPhone, Store, make_deps, run


class StuckPhone(MemoryPhone):
    """Accepts the call, then never finishes sending a frame (its peer stopped reading)."""

    async def send(self, text: str) -> None:
        await trio.sleep_forever()


async def test_settings_wait_for_welcome_then_go_anyway(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    phone, agent = MemoryPhone(), MemoryAgent()
    deps = make_deps(tmp_path, Store())
    assert deps.config.welcome_timeout_seconds == WELCOME_TIMEOUT_SECONDS
    phone.start()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, phone, deps, agent)
        await trio.sleep(WELCOME_TIMEOUT_SECONDS - 0.5)
        assert agent.json_messages() == []  # nothing before Welcome (Deepgram's rule)
        started = trio.current_time()
        await agent.wait_for("Settings")  # no Welcome ever came: sent anyway
        assert trio.current_time() - started <= 1.0
        phone.inbound_send.close()


async def test_welcome_releases_settings_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    phone, agent = MemoryPhone(), MemoryAgent()
    deps = make_deps(tmp_path, Store())
    phone.start()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, phone, deps, agent)
        await trio.sleep(0.1)
        started = trio.current_time()
        agent.say({"type": "Welcome", "request_id": "r"})
        await agent.wait_for("Settings")
        assert trio.current_time() - started < 0.1
        phone.inbound_send.close()


async def test_a_stuck_phone_is_not_an_agent_failure(tmp_path: Path) -> None:
    phone, agent = StuckPhone(), MemoryAgent()
    metrics = Metrics(function_names=[])
    deps = make_deps(tmp_path, Store())
    deps = type(deps)(**{**deps.__dict__, "metrics": metrics})
    phone.start()
    agent.say({"type": "Welcome", "request_id": "r"})
    agent.say({"type": "SettingsApplied"})
    for _ in range(400):  # each utterance ends with a mark: control frames pile up
        agent.to_bridge_send.send_nowait(b"\xff" * 160)
        agent.say({"type": "AgentAudioDone"})
    with trio.fail_after(5):
        report = await run(phone, deps, agent)
    assert report.end_reason is EndReason.PHONE_STUCK
    assert deps.registry.outcome(SID) is CallOutcome.NORMAL  # no apology at /voice/after
    assert b"boba_agent_errors_total 0.0" in metrics.render(None)
