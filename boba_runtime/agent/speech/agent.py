"""The local agent with ears and a voice: `serve_speaking_agent` (CONTRACT §9).

It wraps the text agent (`LocalAgentSession`) in the two stages a real voice agent has,
and still speaks the Deepgram Voice Agent protocol to the bridge, which does not change:

- **listen**: caller audio, in the encoding and rate `Settings.audio.input` declared
  (linear16 48 kHz or μ-law 8 kHz), is resampled with our resampler to 16 kHz and fed to
  the voice-activity detector. Speech starting sends `UserStartedSpeaking` at once
  (barge-in: the bridge clears Twilio's queue, and the reply being spoken stops). Each
  finished utterance is recognised in a worker thread, constrained by the grammar of what
  the dialogue expects now (`boba_proto.local_agent.speech_grammar`), and handed to the session as
  the caller's words (`ConversationText` user, as Deepgram does); when nothing in the
  grammar fits, the agent says it did not catch that.
- **speak**: each reply the session produces (`ConversationText` assistant,
  `AgentStartedSpeaking`, audio, `AgentAudioDone`) has its placeholder audio replaced by
  eSpeak NG speech of the same text, synthesised in a worker thread, converted to the
  encoding and rate `Settings.audio.output` declared, and sent in 100 ms chunks no more
  than `LEAD_S` ahead of real time, as a streaming TTS would.

One nursery per call: the socket reader (which feeds the detector), the recogniser and
the speaker. The session is only touched from the trio thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import trio

from boba_proto import agent, audio
from boba_proto.local_agent.dialogue import DialoguePhase, LocalDialogue
from boba_proto.local_agent.speech_grammar import Listen
from boba_proto.local_agent.vad import SpeechStarted, UtteranceEnded, VoiceActivityDetector
from boba_proto.menu import Menu
from boba_runtime.agent.server import AgentSocket, LocalAgentSession
from boba_runtime.agent.speech import SpeechEngines
from boba_runtime.agent.speech.recognize import SAMPLE_RATE, CallDecoder
from boba_runtime.call.agent_link import sole_exception

__all__ = ["CallSpeechStats", "listen_for", "serve_speaking_agent"]

log = logging.getLogger(__name__)

CHUNK_S: Final = 0.1
"""Agent audio goes out in 100 ms binary frames."""
LEAD_S: Final = 0.5
"""How far ahead of real time the agent's audio may be sent (a TTS stream's lead)."""
UTTERANCE_QUEUE: Final = 4
"""Utterances waiting for the recogniser; a caller cannot outrun it by more than this."""
SPEECH_QUEUE: Final = 16
NOT_UNDERSTOOD: Final = "Sorry, I didn't catch that. Could you say it again?"


def listen_for(dialogue: LocalDialogue) -> Listen:
    """What the caller may say at this point of the dialogue."""
    phase = dialogue.phase
    if phase in (DialoguePhase.ASKING_PHONE, DialoguePhase.CONFIRMING_PHONE,
                 DialoguePhase.STATUS_PHONE):
        return Listen.DIGITS
    if phase is DialoguePhase.CONFIRMING_DRINK:
        return Listen.DRINKS | Listen.CHANGES | Listen.REMOVE
    if phase is DialoguePhase.PLACED:
        return Listen.QUESTIONS | Listen.DIGITS
    if phase is DialoguePhase.ENDED:
        return Listen(0)
    return Listen.DRINKS | Listen.CHANGES | Listen.REMOVE | Listen.QUESTIONS


@dataclass
class CallSpeechStats:
    """CPU seconds the call's speech cost (worker threads), for the benchmark."""

    recognise_cpu_s: float = 0.0
    synthesise_cpu_s: float = 0.0
    utterances: int = 0
    not_understood: int = 0
    replies: int = 0
    heard: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Speak:
    """A reply to be spoken: its text, and the barge-in generation it belongs to."""

    text: str
    generation: int


_Outgoing = str | _Speak


class _SpeakingCall:
    def __init__(self, socket: AgentSocket, session: LocalAgentSession,
                 engines: SpeechEngines) -> None:
        self.socket = socket
        self.session = session
        self.engines = engines
        self.stats = CallSpeechStats()
        self.decoder: CallDecoder | None = None
        self.vad = VoiceActivityDetector()
        self.generation = 0  # bumped by each barge-in
        self._send_lock = trio.Lock()
        self._reply_text = ""
        self._resampler: audio.Resampler | None = None
        self._resampler_state: audio.ResamplerState | None = None
        self._mulaw_in = False
        self._out_encoding = "linear16"
        self._out_rate = 24000
        self._speech_in, self._speech_out = trio.open_memory_channel[_Outgoing](SPEECH_QUEUE)
        self._utterances_in, self._utterances_out = trio.open_memory_channel[UtteranceEnded](
            UTTERANCE_QUEUE
        )

    async def send(self, frame: str | bytes) -> None:
        async with self._send_lock:
            await self.socket.send(frame)

    # --- session output: replies get their voice --------------------------------------------

    async def route(self, frames: list[str | bytes]) -> None:
        """Session frames to the speaker, in order; placeholder audio is dropped."""
        for frame in frames:
            if isinstance(frame, bytes):
                continue  # the text agent's tone cue: we speak instead
            message = agent.decode(frame)
            if isinstance(message, agent.SettingsApplied):
                self._configure()
            elif isinstance(message, agent.ConversationText) and message.role == "assistant":
                self._reply_text = message.content
                log.debug("local agent says %r", message.content)
            elif isinstance(message, agent.AgentAudioDone):
                await self._speech_in.send(_Speak(self._reply_text, self.generation))
                self._reply_text = ""
                continue  # the speaker sends it after the audio
            await self._speech_in.send(frame)

    def _configure(self) -> None:
        settings = self.session.settings
        assert settings is not None
        source = settings.audio.input
        self._mulaw_in = source.encoding == "mulaw"
        self._resampler = audio.resampler(source.sample_rate, SAMPLE_RATE)
        self._resampler_state = self._resampler.initial_state()
        self._out_encoding = settings.audio.output.encoding
        self._out_rate = settings.audio.output.sample_rate

    async def speaker(self) -> None:
        async with self._speech_out:
            async for item in self._speech_out:
                if isinstance(item, str):
                    await self.send(item)
                    continue
                if item.text and item.generation == self.generation:
                    await self._speak(item)
                await self.send(agent.encode_server(agent.AgentAudioDone()))

    async def _speak(self, item: _Speak) -> None:
        pcm = await trio.to_thread.run_sync(self._synthesise, item.text)
        width = 1 if self._out_encoding == "mulaw" else 2
        chunk = max(1, round(self._out_rate * CHUNK_S)) * width
        started = trio.current_time()
        for n, at in enumerate(range(0, len(pcm), chunk)):
            if item.generation != self.generation:
                return  # the caller barged in: the rest of this reply is not said
            await trio.sleep_until(started + max(0.0, n * CHUNK_S - LEAD_S))
            if item.generation != self.generation:
                return
            await self.send(pcm[at : at + chunk])
        self.stats.replies += 1

    def _synthesise(self, text: str) -> bytes:
        """Worker thread: text -> audio in the declared output encoding and rate."""
        cpu = time.thread_time()
        synth = self.engines.synthesizer
        samples = synth.speak(text, self.engines.voice)
        converter = audio.resampler(synth.sample_rate, self._out_rate)
        converted, _ = converter.process(samples, converter.initial_state())
        if self._out_encoding == "mulaw":
            out = audio.ulaw_encode(converted)
        else:
            out = converted.astype("<i2").tobytes()
        self.stats.synthesise_cpu_s += time.thread_time() - cpu
        return out

    # --- caller audio: the detector and the recogniser ---------------------------------------

    async def on_audio(self, data: bytes) -> None:
        self.session.on_audio(data)
        if self._resampler is None or self._resampler_state is None:
            return  # before Settings: nothing to hear yet
        samples: npt.NDArray[np.int16]
        if self._mulaw_in:
            samples = audio.ulaw_decode(data)
        else:
            samples = np.frombuffer(data[: len(data) & ~1], dtype="<i2").astype(np.int16)
        converted, self._resampler_state = self._resampler.process(
            samples, self._resampler_state
        )
        for event in self.vad.feed(converted):
            if isinstance(event, SpeechStarted):
                self.generation += 1
                await self.send(agent.encode_server(agent.UserStartedSpeaking()))
            else:
                try:
                    self._utterances_in.send_nowait(event)
                except trio.WouldBlock:
                    log.warning("local agent: the recogniser is behind; an utterance dropped")

    async def recogniser(self) -> None:
        self.decoder = await trio.to_thread.run_sync(self.engines.recognizer.decoder)
        async with self._utterances_out:
            async for utterance in self._utterances_out:
                if self.session.closed:
                    return
                await self._recognise(utterance)

    async def _recognise(self, utterance: UtteranceEnded) -> None:
        assert self.decoder is not None
        listen = listen_for(self.session.dialogue)
        samples = np.frombuffer(utterance.samples, dtype="<i2").astype(np.int16)
        heard = await trio.to_thread.run_sync(self.decoder.recognize, samples, listen)
        self.stats.recognise_cpu_s += heard.cpu_seconds
        self.stats.utterances += 1
        log.debug("local agent heard %r (%.1f s, %s)", heard.text, utterance.seconds, listen)
        if self.session.closed:
            return
        if heard.text is not None:
            self.stats.heard.append(heard.text)
            message = agent.encode(agent.InjectUserMessage(content=heard.text))
        else:
            self.stats.not_understood += 1
            if self.session.dialogue.awaiting_function is not None:
                return
            message = agent.encode(agent.InjectAgentMessage(message=NOT_UNDERSTOOD))
        await self.route(self.session.on_text(message))

    # --- the socket -------------------------------------------------------------------------

    async def reader(self) -> None:
        while not self.session.closed:
            data = await self.socket.receive()
            if isinstance(data, bytes):
                await self.on_audio(data)
            else:
                await self.route(self.session.on_text(data))
            await trio.lowlevel.checkpoint()
        await self._speech_in.aclose()


async def serve_speaking_agent(
    socket: AgentSocket,
    menu: Menu,
    engines: SpeechEngines,
    *,
    on_session: Callable[[LocalAgentSession], None] | None = None,
    on_stats: Callable[[CallSpeechStats], None] | None = None,
) -> None:
    """Like `serve_local_agent`, with speech in and out (see the module docstring)."""
    session = LocalAgentSession(menu)
    if on_session is not None:
        on_session(session)
    call = _SpeakingCall(socket, session, engines)
    if on_stats is not None:
        on_stats(call.stats)
    for frame in session.start():
        await call.send(frame)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.recogniser)
            async with trio.open_nursery() as speaking:
                speaking.start_soon(call.speaker)
                await call.reader()
            # The session has ended (its Error went out): nothing more to hear.
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The peer leaving surfaces as what `receive` raised, as in `serve_local_agent`.
        sole = sole_exception(group)
        if sole is group:
            raise
        raise sole from None
    finally:
        call._utterances_in.close()
