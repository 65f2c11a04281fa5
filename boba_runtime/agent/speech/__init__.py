"""Offline speech for the local agent (CONTRACT §9): eSpeak NG speaks, PocketSphinx listens,
both from PyPI wheels with their data inside (`pip install .[speech]`).

`load_speech(menu)` returns the engines, or None (logged once, at start) when they are not
installed: the local agent then works by text as before. See `boba_runtime.agent.speech.agent`
for how a call uses them.
"""

from __future__ import annotations

import functools
import logging

from boba_proto.menu import Menu
from boba_runtime.agent.speech.recognize import Recognizer
from boba_runtime.agent.speech.synth import SpeechUnavailable, Synthesizer, Voice

__all__ = ["AGENT_VOICE", "SpeechEngines", "SpeechUnavailable", "load_speech", "synthesizer"]

log = logging.getLogger(__name__)

AGENT_VOICE = Voice(name="en-us+klatt3", words_per_minute=165, pitch=50)
"""The agent's voice: eSpeak NG's Klatt voices are the clearest over a phone line."""


@functools.cache
def synthesizer() -> Synthesizer:
    """libespeak-ng is one synthesizer per process; so is this (raises SpeechUnavailable)."""
    return Synthesizer()


class SpeechEngines:
    """The synthesizer, and the recogniser built for one menu (shared by every call)."""

    def __init__(self, menu: Menu) -> None:
        self.synthesizer = synthesizer()
        self.recognizer = Recognizer(menu, self.synthesizer)
        self.voice = AGENT_VOICE


def load_speech(menu: Menu) -> SpeechEngines | None:
    """The engines, or None with one log line saying the agent works by text only."""
    try:
        engines = SpeechEngines(menu)
    except SpeechUnavailable as exc:
        log.warning("local agent: text only, no offline speech (%s)", exc)
        return None
    log.info("local agent: offline speech on (eSpeak NG + PocketSphinx)")
    return engines
