"""Where a caller's utterances start and end: an energy voice-activity detector with
hangover, for the local agent's offline speech (CONTRACT §9).

Pure: feed it 16-bit samples in any chunking, get `SpeechStarted` (send
`UserStartedSpeaking` at once: barge-in) and `UtteranceEnded` (the utterance's samples,
with a little audio before the start and after the end, ready for the recogniser).

A 20 ms frame is speech when its level is well above the line's noise floor (tracked
slowly, so a hum or hiss does not count) and above an absolute floor. Speech must last
`start_frames` frames to start an utterance (a click does not), and an utterance ends
after `hangover_s` of non-speech (the pause between words does not end it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = ["SpeechStarted", "UtteranceEnded", "VadConfig", "VoiceActivityDetector"]

Int16Array = npt.NDArray[np.int16]

_FULL_SCALE: Final = 32768.0


class SpeechStarted(msgspec.Struct, frozen=True):
    """The caller started speaking (`at_s`: seconds of audio fed before this point)."""

    at_s: float


class UtteranceEnded(msgspec.Struct, frozen=True):
    """One utterance's samples (with pre-roll and tail), and why it ended."""

    samples: bytes  # int16 little-endian at the detector's rate
    sample_rate: int
    cut_short: bool = False  # it went on past `max_utterance_s`

    @property
    def seconds(self) -> float:
        return len(self.samples) / 2 / self.sample_rate


VadEvent = SpeechStarted | UtteranceEnded


@dataclass(frozen=True)
class VadConfig:
    sample_rate: int = 16000
    frame_s: float = 0.02
    margin_db: float = 12.0  # above the noise floor
    absolute_db: float = -50.0  # dBFS: quieter than this is never speech
    start_frames: int = 4  # 80 ms of speech starts an utterance
    hangover_s: float = 0.7  # this much non-speech ends it
    pre_roll_s: float = 0.25  # audio kept from before the start
    min_speech_s: float = 0.2  # shorter bursts are dropped as noise
    max_utterance_s: float = 15.0
    floor_rise_db_per_s: float = 3.0  # the floor follows a louder line slowly


class VoiceActivityDetector:
    """One caller's detector; `feed` returns the events its samples complete."""

    def __init__(self, config: VadConfig = VadConfig()) -> None:
        self.config = config
        self._frame = max(1, round(config.sample_rate * config.frame_s))
        self._held = np.zeros(0, dtype=np.int16)
        self._floor_db = config.absolute_db - config.margin_db
        self._pre_roll: deque[Int16Array] = deque(
            maxlen=max(1, round(config.pre_roll_s / config.frame_s))
        )
        self._onset: list[Int16Array] = []
        self._utterance: list[Int16Array] = []
        self._speech_frames = 0
        self._silent_frames = 0
        self._frames_seen = 0
        self.in_speech = False

    def feed(self, samples: Int16Array) -> list[VadEvent]:
        data = np.concatenate([self._held, samples]) if len(self._held) else samples
        whole = len(data) - len(data) % self._frame
        self._held = data[whole:].copy()
        events: list[VadEvent] = []
        for start in range(0, whole, self._frame):
            event = self._frame_in(data[start : start + self._frame])
            if event is not None:
                events.append(event)
        return events

    def _level_db(self, frame: Int16Array) -> float:
        rms = float(np.sqrt(np.mean(np.square(frame.astype(np.float64)))))
        return float(20.0 * np.log10(max(rms, 1.0) / _FULL_SCALE))

    def _frame_in(self, frame: Int16Array) -> VadEvent | None:
        c = self.config
        self._frames_seen += 1
        level = self._level_db(frame)
        loud = level > max(self._floor_db + c.margin_db, c.absolute_db)
        # The floor falls at once to a quieter line and rises slowly towards a louder one,
        # even while it counts as speech: a steady hum ends up below the margin.
        rise = c.floor_rise_db_per_s * c.frame_s
        self._floor_db = level if level < self._floor_db else min(level, self._floor_db + rise)
        if not self.in_speech:
            if loud:
                self._onset.append(frame)
                if len(self._onset) >= c.start_frames:
                    self.in_speech = True
                    self._utterance = [*self._pre_roll, *self._onset]
                    self._speech_frames = len(self._onset)
                    self._silent_frames = 0
                    self._onset = []
                    self._pre_roll.clear()
                    at = (self._frames_seen - c.start_frames) * c.frame_s
                    return SpeechStarted(at_s=round(at, 3))
                return None
            self._pre_roll.extend(self._onset)
            self._onset = []
            self._pre_roll.append(frame)
            return None
        self._utterance.append(frame)
        if loud:
            self._speech_frames += 1
            self._silent_frames = 0
        else:
            self._silent_frames += 1
        too_long = len(self._utterance) * c.frame_s >= c.max_utterance_s
        if self._silent_frames * c.frame_s >= c.hangover_s or too_long:
            return self._end(cut_short=too_long)
        return None

    def _end(self, *, cut_short: bool) -> UtteranceEnded | None:
        c = self.config
        frames, speech = self._utterance, self._speech_frames
        self.in_speech = False
        self._utterance = []
        self._speech_frames = 0
        self._silent_frames = 0
        if speech * c.frame_s < c.min_speech_s:
            return None
        pcm = np.concatenate(frames).astype("<i2").tobytes()
        return UtteranceEnded(samples=pcm, sample_rate=c.sample_rate, cut_short=cut_short)
