"""A caller's voice: eSpeak NG speech as a phone carries it (μ-law 8 kHz, whole 20 ms
frames), for `boba call --voice`, the accuracy test and the voice tests."""

from __future__ import annotations

import numpy as np

from boba_proto import audio
from boba_runtime.agent.speech.synth import Synthesizer, Voice

__all__ = ["CALLER_VOICES", "phone_audio", "wav_bytes"]

CALLER_VOICES = (
    Voice(name="en-us+klatt4", words_per_minute=150, pitch=60),
    Voice(name="en-us+klatt2", words_per_minute=175, pitch=40),
)
"""Two voices unlike the agent's, for callers."""


def phone_audio(synth: Synthesizer, text: str, voice: Voice) -> bytes:
    """`text` spoken in `voice`, as μ-law 8 kHz in whole Twilio frames (blocking)."""
    samples = synth.speak(text, voice)
    converter = audio.resampler(synth.sample_rate, audio.TWILIO_RATE)
    narrow, _ = converter.process(samples, converter.initial_state())
    ulaw = audio.ulaw_encode(narrow)
    framed, state = audio.frame_ulaw(ulaw, audio.FramerState())
    tail, _ = audio.flush_ulaw(state)
    return framed + tail


def wav_bytes(pcm: bytes, sample_rate: int, *, mulaw: bool) -> bytes:
    """A mono 16-bit WAV file of raw agent audio (μ-law is decoded first)."""
    import io
    import wave

    samples = audio.ulaw_decode(pcm) if mulaw else np.frombuffer(pcm[: len(pcm) & ~1], "<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buffer.getvalue()
