"""`boba call --voice`: the caller's lines spoken into the call as audio (CONTRACT §9).

Each scripted line is spoken by eSpeak NG in a caller's voice, as a phone carries it
(μ-law 8 kHz), and sent as Twilio `media` frames every 20 ms, with silence between lines
as a real line has (the agent finds the end of each utterance by the pause after it).
Needs the speech extra: `pip install .[speech]`.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Final

import trio
import trio_websocket

from boba_proto import twilio as tw
from boba_runtime.agent.speech import SpeechUnavailable, synthesizer
from boba_runtime.agent.speech.caller import CALLER_VOICES, phone_audio, wav_bytes

__all__ = ["CallerVoice", "SpeechUnavailable", "save_wav"]

FRAME_BYTES: Final = 160
FRAME_S: Final = 0.02
SILENCE: Final = b"\xff" * FRAME_BYTES


class CallerVoice:
    """The caller's microphone: speech when a line is being said, silence otherwise."""

    def __init__(self) -> None:
        self._synth = synthesizer()  # SpeechUnavailable without the extra
        self._frames: deque[bytes] = deque()
        self._drained = trio.Event()
        self._drained.set()

    async def say(self, text: str) -> None:
        """Speak `text` into the call; returns once its last frame has been sent."""
        ulaw = await trio.to_thread.run_sync(phone_audio, self._synth, text, CALLER_VOICES[0])
        self._frames.extend(ulaw[at : at + FRAME_BYTES] for at in range(0, len(ulaw), FRAME_BYTES))
        self._drained = trio.Event()
        await self._drained.wait()

    async def pump(self, ws: trio_websocket.WebSocketConnection, stream_sid: str) -> None:
        """A frame every 20 ms on an absolute schedule, until cancelled or the call ends."""
        start = trio.current_time()
        n = 0
        while True:
            payload = self._frames.popleft() if self._frames else SILENCE
            if not self._frames:
                self._drained.set()
            n += 1
            media = tw.Media(stream_sid=stream_sid, sequence_number=str(n + 1),
                             media=tw.MediaInfo(track="inbound", chunk=str(n),
                                                timestamp=str((n - 1) * 20), payload=payload))
            try:
                await ws.send_message(tw.encode_event(media))
            except trio_websocket.ConnectionClosed:
                self._drained.set()
                return
            await trio.sleep_until(start + n * FRAME_S)


def save_wav(path: str, ulaw: bytes) -> None:
    """The agent's audio as the caller heard it (μ-law 8 kHz), as a 16-bit WAV file."""
    Path(path).write_bytes(wav_bytes(ulaw, 8000, mulaw=True))
