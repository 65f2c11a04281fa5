"""The per-process call registry (slots for BOBA_MAX_CALLS, stream tokens, outcomes) and the
agent `Settings` a call starts with, without a server."""

from __future__ import annotations

import pytest

from boba_runtime.call.registry import (
    ENDED_MEMORY,
    PENDING_SECONDS,
    CallOutcome,
    CallRegistry,
    CallsFull,
)
from tests.helpers.server import settings_for_test


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry(max_calls: int = 2) -> tuple[CallRegistry, Clock]:
    clock = Clock()
    return CallRegistry(max_calls=max_calls, secret_key=b"k" * 32, clock=clock), clock


def test_reserved_slots_count_until_the_stream_starts_or_they_expire() -> None:
    calls, clock = registry(2)
    calls.reserve("CA1")
    calls.reserve("CA2")
    with pytest.raises(CallsFull):
        calls.reserve("CA3")
    calls.reserve("CA1")  # a webhook retry keeps its slot
    clock.now += PENDING_SECONDS + 1  # neither stream ever came
    calls.reserve("CA3")
    assert calls.load == 1


def test_active_call_takes_over_its_reserved_slot() -> None:
    calls, _ = registry(2)
    calls.reserve("CA1")
    calls.reserve("CA2")
    with calls.active("CA1"):
        assert calls.active_count == 1
        assert calls.load == 2
        with pytest.raises(CallsFull):
            calls.reserve("CA3")
    assert calls.active_count == 0
    assert calls.load == 1  # CA2 still pending
    calls.release("CA2")
    assert calls.load == 0


def test_unannounced_streams_need_a_free_slot() -> None:
    calls, _ = registry(1)
    with calls.active(None):
        assert calls.active_count == 1
        with pytest.raises(CallsFull), calls.active(None):
            pass
        with pytest.raises(CallsFull), calls.active("CA9"):
            pass
    assert calls.active_count == 0


def test_outcomes_keep_failures_and_are_bounded() -> None:
    calls, clock = registry()
    calls.record_end("CA1", CallOutcome.FAILED)
    calls.record_end("CA1", CallOutcome.NORMAL)  # a later normal end does not hide it
    assert calls.outcome("CA1") is CallOutcome.FAILED
    assert calls.outcome("CA2") is None
    for n in range(ENDED_MEMORY + 10):
        calls.record_end(f"CAx{n}", CallOutcome.NORMAL)
    assert calls.outcome("CA1") is None  # oldest forgotten first
    calls.record_end("CA3", CallOutcome.FAILED)
    clock.now += 3600
    assert calls.outcome("CA3") is None


def test_tokens_bind_call_caller_and_expiry() -> None:
    wall = FakeWallClock()
    calls = CallRegistry(max_calls=2, secret_key=b"k" * 32, wall_clock=wall)
    other = CallRegistry(max_calls=2, secret_key=b"other key", wall_clock=wall)
    token = calls.token_for("CA1", "+14155551234")
    assert calls.token_problem("CA1", "+14155551234", token) is None
    assert calls.token_problem("CA2", "+14155551234", token) is not None
    assert calls.token_problem("CA1", "+14155550000", token) is not None  # another caller
    assert calls.token_problem("CA1", "+14155551234", token.upper()) is not None
    assert calls.token_problem("CA1", "+14155551234", "") is not None
    assert other.token_problem("CA1", "+14155551234", token) is not None
    wall.now += 59
    assert calls.token_problem("CA1", "+14155551234", token) is None
    wall.now += 1  # 60 s after issue
    assert calls.token_problem("CA1", "+14155551234", token) == "the stream's token has expired"


class FakeWallClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def settings(tmp_path, **env: str):
    return settings_for_test(tmp_path, env)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BOBA_THINK_PROVIDER": "openai"}, "BOBA_THINK_PROVIDER"),
        ({"BOBA_THINK_PROVIDER": "Google"}, "BOBA_THINK_PROVIDER"),
    ],
)
def test_agent_settings_deepgram_would_refuse_stop_the_start(tmp_path, env, variable) -> None:
    from boba_runtime.call.runner import call_config_from_settings
    from boba_runtime.config.settings import SettingsError
    from boba_runtime.services import load_menu

    try:
        s = settings(tmp_path, **env)
    except SettingsError as error:  # refused even earlier, by the settings loader: fine
        assert error.variable == variable
        return
    with pytest.raises(SettingsError) as info:
        call_config_from_settings(s, load_menu(s))
    assert info.value.variable == variable


def test_call_config_from_default_settings(tmp_path) -> None:
    from boba_proto.agent import AudioProfile
    from boba_runtime.call.runner import call_config_from_settings
    from boba_runtime.services import load_menu

    s = settings(tmp_path, BOBA_AUDIO="mulaw", BOBA_MAX_CALL_SECONDS="120")
    config = call_config_from_settings(s, load_menu(s))
    assert config.profile is AudioProfile.MULAW
    assert config.max_call_seconds == 120
    assert config.agent_settings.agent.think.provider.model == s.think_model
    assert config.caller == "" and config.call_sid == ""  # filled from each call's start


def test_a_second_stream_for_a_running_call_is_refused() -> None:
    from boba_runtime.call.registry import StreamAlreadyRunning

    calls, _ = registry(5)
    calls.reserve("CA1")
    with calls.active("CA1"):
        with pytest.raises(StreamAlreadyRunning), calls.active("CA1"):
            pass
        assert calls.active_count == 1
    with calls.active("CA1"):  # once it is over, the call may stream again
        pass
    assert calls.active_count == 0
