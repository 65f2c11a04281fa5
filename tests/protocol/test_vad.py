"""The energy voice-activity detector: starts, ends with hangover, ignores clicks (issue 19)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from boba_proto.local_agent.vad import SpeechStarted, UtteranceEnded, VoiceActivityDetector

RATE = 16000


def tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.round(np.sin(2 * np.pi * 220 * t) * level * 32767).astype(np.int16)


def silence(seconds: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, noise * 32767, int(RATE * seconds))).astype(np.int16)


def feed_in_chunks(vad: VoiceActivityDetector, samples: np.ndarray, chunk: int) -> list[object]:
    events: list[object] = []
    for at in range(0, len(samples), chunk):
        events += vad.feed(samples[at : at + chunk])
    return events


def test_an_utterance_starts_and_ends_after_the_hangover() -> None:
    vad = VoiceActivityDetector()
    audio = np.concatenate([silence(1.0, 0.001), tone(1.0), silence(0.3, 0.001), tone(0.5),
                            silence(1.0, 0.001)])
    events = feed_in_chunks(vad, audio, 320)
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnded]  # the pause is kept
    started, ended = events
    assert isinstance(started, SpeechStarted) and 0.95 <= started.at_s <= 1.05
    assert isinstance(ended, UtteranceEnded) and 2.0 <= ended.seconds <= 2.8


def test_a_click_is_not_speech_and_a_steady_hum_is_not_either() -> None:
    vad = VoiceActivityDetector()
    click = np.concatenate([silence(0.5), tone(0.04), silence(1.0)])
    assert feed_in_chunks(vad, click, 160) == []
    hum = tone(12.0, level=0.01)  # steady: the noise floor rises to it within seconds
    events = feed_in_chunks(VoiceActivityDetector(), hum, 320)
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnded]
    assert isinstance(events[1], UtteranceEnded) and events[1].seconds < 6


def test_speech_that_never_stops_is_cut_at_the_limit() -> None:
    vad = VoiceActivityDetector()
    syllables = np.concatenate([np.concatenate([tone(0.2), silence(0.1)])] * 55)  # 16.5 s
    events = feed_in_chunks(vad, syllables, 640)
    ended = [e for e in events if isinstance(e, UtteranceEnded)]
    assert ended and ended[0].cut_short and ended[0].seconds <= 15.5


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=1, max_value=2000))
def test_any_chunking_gives_the_same_events(chunk: int) -> None:
    audio = np.concatenate([silence(0.5, 0.001), tone(0.8), silence(1.0, 0.001)])
    whole = VoiceActivityDetector().feed(audio)
    assert feed_in_chunks(VoiceActivityDetector(), audio, chunk) == whole
