"""`handle_media_batch`: many calls' caller audio in one resampling step per round (issue
#18), the same actions as `handle` one by one, linear16 audio within 1 LSB."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from boba_proto.call import (
    MAX_MALFORMED,
    Action,
    CallSession,
    CallState,
    SendAgentAudio,
    handle_media_batch,
)
from tests.protocol.test_call import LINEAR16, MULAW, conversing, media, start


def _pcm(actions: list[Action]) -> list[np.ndarray]:
    return [
        np.frombuffer(action.data, dtype="<i2")
        for action in actions
        if isinstance(action, SendAgentAudio)
    ]


def _same_within_one_lsb(one_by_one: list[Action], batched: list[Action]) -> None:
    assert [type(a) for a in one_by_one] == [type(a) for a in batched]
    for expected, got in zip(_pcm(one_by_one), _pcm(batched), strict=True):
        assert expected.shape == got.shape
        assert int(np.max(np.abs(expected.astype(np.int32) - got), initial=0)) <= 1
    rest = [a for a in one_by_one if not isinstance(a, SendAgentAudio)]
    assert rest == [a for a in batched if not isinstance(a, SendAgentAudio)]


payloads = st.binary(min_size=0, max_size=700)


@settings(max_examples=60, deadline=None)
@given(
    calls=st.integers(min_value=1, max_value=6),
    rounds=st.lists(st.lists(st.tuples(st.integers(0, 5), payloads), max_size=8), max_size=6),
)
def test_batched_caller_audio_equals_one_by_one_within_one_lsb(
    calls: int, rounds: list[list[tuple[int, bytes]]]
) -> None:
    # Random frames for random calls, in random batches (a call may appear twice in one).
    one_by_one = [conversing(LINEAR16) for _ in range(calls)]
    batched = [conversing(LINEAR16) for _ in range(calls)]
    for batch in rounds:
        items = [(who % calls, payload) for who, payload in batch]
        expected = [one_by_one[who].handle(media(payload)) for who, payload in items]
        got = handle_media_batch([(batched[who], media(payload)) for who, payload in items])
        assert len(got) == len(expected)
        for want, have in zip(expected, got, strict=True):
            _same_within_one_lsb(want, have)


def test_a_tick_of_many_calls_is_one_step_and_nearly_always_exact() -> None:
    rng = np.random.default_rng(7)
    one_by_one = [conversing(LINEAR16) for _ in range(20)]
    batched = [conversing(LINEAR16) for _ in range(20)]
    differing = total = 0
    for _ in range(25):  # 25 ticks of 40 ms, every call speaking
        frames = [rng.integers(0, 256, 320, dtype=np.uint8).tobytes() for _ in range(20)]
        expected = [s.handle(media(f)) for s, f in zip(one_by_one, frames, strict=True)]
        got = handle_media_batch(list(zip(batched, map(media, frames), strict=True)))
        for want, have in zip(expected, got, strict=True):
            _same_within_one_lsb(want, have)
            for a, b in zip(_pcm(want), _pcm(have), strict=True):
                differing += int(np.count_nonzero(a != b))
                total += len(a)
    assert total == 25 * 20 * 1920
    assert differing <= total // 1000  # float32 rounding: almost always the same sample


def test_mulaw_and_gated_and_malformed_frames_match_handle() -> None:
    mulaw_a, mulaw_b = conversing(MULAW), conversing(MULAW)
    waiting_a, waiting_b = CallSession(mulaw_a.config), CallSession(mulaw_b.config)
    for session in (waiting_a, waiting_b):
        session.handle(start())  # no SettingsApplied yet: audio is held back
    frames = [
        (mulaw_a, mulaw_b, media(b"\x7f" * 400)),
        (waiting_a, waiting_b, media(b"\x7f" * 320)),
        (mulaw_a, mulaw_b, media(b"\x7f" * 320, sid="MZ-other")),
    ]
    expected = [one.handle(frame) for one, _, frame in frames]
    got = handle_media_batch([(other, frame) for _, other, frame in frames])
    assert got == expected
    assert got[0] == [SendAgentAudio(data=b"\x7f" * 320)]
    assert got[1] == []
    assert mulaw_b.malformed_count == 1


def test_a_session_closed_by_malformed_frames_gets_nothing_more() -> None:
    session = conversing(LINEAR16)
    wrong = media(b"\x00" * 320, sid="MZ-other")
    results = handle_media_batch([(session, wrong)] * MAX_MALFORMED + [(session, media(b""))])
    assert results[-1] == []
    assert session.state is CallState.CLOSED
