"""The local agent's end of the Deepgram Voice Agent protocol (notes/deepgram-agent.md §1-3).

`LocalAgentSession` is the sans-IO part: client frames in (`on_text`, `on_audio`), server
frames out (`str` = JSON, `bytes` = audio), so the bridge cannot tell it from Deepgram:

    open            -> Welcome
    Settings        -> SettingsApplied, then the greeting (ConversationText + audio cue +
                       AgentAudioDone); the output format declared in Settings is honoured
    InjectUserMessage -> ConversationText(user), then the dialogue's turn: one
                       FunctionCallRequest (client_side: true) at a time, each waiting for
                       its FunctionCallResponse, and finally one reply (ConversationText
                       assistant + AgentStartedSpeaking + audio cue + AgentAudioDone)
    InjectAgentMessage -> that message spoken the same way (InjectionRefused mid-turn)
    UpdatePrompt    -> PromptUpdated;  KeepAlive, audio -> nothing
    anything malformed, or Settings that cannot be served -> Error, then the socket closes

`serve_local_agent(socket, menu)` drives one session over any socket with `receive`,
`send` and `close` (the `/agent/local` WebSocket route of `boba_web.local_agent_route`).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, Protocol

import numpy as np
import trio

from boba_proto import agent, audio
from boba_proto.errors import LocalProtocolError, RemoteProtocolError
from boba_proto.local_agent.dialogue import LocalDialogue, Say, Step
from boba_proto.menu import FUNCTIONS, TRANSFER_FUNCTION, Menu
from boba_runtime.call.agent_link import AgentClosed

__all__ = [
    "InProcessAgentConnection",
    "LocalAgentSession",
    "in_process_connector",
    "serve_local_agent",
    "tone_cue",
]

log = logging.getLogger(__name__)

CUE_SECONDS: Final = 0.3
"""How long the audio cue of each reply lasts: long enough to exercise the audio path."""
CUE_CHUNK_SECONDS: Final = 0.1
"""Audio goes out in 100 ms binary frames, as a TTS stream would."""
MAX_QUEUED_TURNS: Final = 8
"""Caller messages held while a function result is awaited; more than this is a flood."""
SUPPORTED_ENCODINGS: Final = frozenset({"linear16", "mulaw"})
# transfer_to_staff is offered only with a transfer number (CONTRACT §12).
NEEDED_FUNCTIONS: Final = frozenset(fn.name for fn in FUNCTIONS) - {TRANSFER_FUNCTION}
"""The dialogue may call any CONTRACT §5 function, so Settings must declare them all."""

Outgoing = str | bytes


def tone_cue(encoding: str, sample_rate: int, seconds: float = CUE_SECONDS) -> bytes:
    """A soft two-note chime in the declared output format (raw, no container)."""
    n = max(1, int(sample_rate * seconds))
    t = np.arange(n, dtype=np.float64) / sample_rate
    half = n // 2
    freq = np.where(np.arange(n) < half, 660.0, 880.0)
    wave = np.sin(2 * math.pi * freq * t)
    ramp = max(1, int(sample_rate * 0.01))  # 10 ms fades: no clicks
    envelope = np.ones(n)
    envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
    envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
    pcm = np.round(wave * envelope * 0.2 * 32767).astype(np.int16)
    if encoding == "mulaw":
        return audio.ulaw_encode(pcm)
    return pcm.astype("<i2").tobytes()


class LocalAgentSession:
    """One agent connection; see the module docstring."""

    def __init__(self, menu: Menu, *, request_id: str | None = None) -> None:
        self.menu = menu
        self.request_id = request_id or str(uuid.uuid4())
        self.dialogue = LocalDialogue(menu)
        self.settings: agent.AgentSettings | None = None
        self.closed = False
        self.audio_bytes_received = 0
        self._cue = b""
        self._chunk_bytes = 1
        self._declared: frozenset[str] = frozenset()
        self._reply: list[str] = []
        self._queued: deque[str] = deque()

    # --- inputs ------------------------------------------------------------------------

    def start(self) -> list[Outgoing]:
        """What the agent says as soon as the socket is open."""
        return [agent.encode_server(agent.Welcome(request_id=self.request_id))]

    def on_audio(self, data: bytes) -> list[Outgoing]:
        """Caller audio: accepted and counted; the local agent understands text only."""
        self.audio_bytes_received += len(data)
        return []

    def on_text(self, frame: str) -> list[Outgoing]:
        if self.closed:
            return []
        try:
            return self._on_text(frame)
        except Exception:
            # Our own bug: end this session the way Deepgram does (the bridge apologises).
            log.exception("local agent: failed on a client message")
            return self._fail("INTERNAL_SERVER_ERROR", "The local agent failed.")

    def _on_text(self, frame: str) -> list[Outgoing]:
        try:
            message = agent.decode_client(frame)
        except RemoteProtocolError as exc:
            return self._fail("UNPARSABLE_CLIENT_MESSAGE", f"We could not parse that: {exc}")
        if isinstance(message, agent.AgentSettings):
            return self._on_settings(message)
        if self.settings is None:
            return self._fail(
                "SETTINGS_REQUIRED", f"{type(message).__name__} arrived before Settings"
            )
        match message:
            case agent.InjectUserMessage(content=content):
                return self._on_user(content)
            case agent.FunctionCallResponse(id=call_id, content=content):
                return self._on_function_response(call_id, content)
            case agent.InjectAgentMessage(message=text):
                if self.dialogue.awaiting_function is not None:
                    refused = agent.InjectionRefused(message="The agent is mid-turn.")
                    return [agent.encode_server(refused)]
                return self._speak(text)
            case agent.UpdatePrompt():
                return [agent.encode_server(agent.PromptUpdated())]
            case agent.KeepAlive():
                return []
        return []

    # --- settings ------------------------------------------------------------------------

    def _on_settings(self, settings: agent.AgentSettings) -> list[Outgoing]:
        if self.settings is not None:
            return self._fail("SETTINGS_ALREADY_APPLIED", "Settings may be sent only once.")
        output = settings.audio.output
        if output.encoding not in SUPPORTED_ENCODINGS or not 8000 <= output.sample_rate <= 48000:
            return self._fail(
                "INVALID_SETTINGS",
                f"the local agent speaks linear16 or mulaw at 8000-48000 Hz, not "
                f"{output.encoding} at {output.sample_rate} Hz",
            )
        if output.container not in ("none", ""):
            return self._fail("INVALID_SETTINGS", "the local agent sends raw audio only")
        self._declared = frozenset(f.name for f in settings.agent.think.functions)
        missing = sorted(NEEDED_FUNCTIONS - self._declared)
        if missing:
            return self._fail(
                "INVALID_SETTINGS",
                f"the local agent takes orders with the shop's functions; missing: "
                f"{', '.join(missing)}",
            )
        self.settings = settings
        self._cue = tone_cue(output.encoding, output.sample_rate)
        width = 2 if output.encoding == "linear16" else 1
        self._chunk_bytes = max(width, int(output.sample_rate * CUE_CHUNK_SECONDS) * width)
        out: list[Outgoing] = [agent.encode_server(agent.SettingsApplied())]
        greeting = settings.agent.greeting
        if isinstance(greeting, str) and greeting:
            out += self._speak(greeting)
        return out

    # --- turns ---------------------------------------------------------------------------

    def _on_user(self, content: str) -> list[Outgoing]:
        out: list[Outgoing] = [
            agent.encode_server(agent.ConversationText(role="user", content=content))
        ]
        if self.dialogue.awaiting_function is not None:
            if len(self._queued) >= MAX_QUEUED_TURNS:
                return out + self._fail("TOO_MANY_MESSAGES", "Too many messages mid-turn.")
            self._queued.append(content)
            return out
        return out + self._run(self.dialogue.on_user_text(content))

    def _on_function_response(self, call_id: str, content: str) -> list[Outgoing]:
        if call_id != self.dialogue.awaiting_function:
            log.info("local agent: ignoring a FunctionCallResponse for %r", call_id)
            return []
        return self._run(self.dialogue.on_function_result(call_id, content))

    def _run(self, steps: list[Step]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for step in steps:
            if isinstance(step, Say):
                self._reply.append(step.text)
                continue
            if step.name not in self._declared:
                raise LocalProtocolError(
                    f"the dialogue called {step.name!r}, which Settings did not declare"
                )
            request = agent.FunctionCallRequest(functions=[agent.FunctionCall(
                id=step.id, name=step.name, arguments=step.arguments, client_side=True,
            )])
            return [*out, agent.encode_server(request)]  # wait for its response
        text = " ".join(self._reply)
        self._reply.clear()
        if text:
            out += self._speak(text)
        while self._queued and self.dialogue.awaiting_function is None:
            user_text = self._queued.popleft()
            out += self._run(self.dialogue.on_user_text(user_text))
        return out

    def _speak(self, text: str) -> list[Outgoing]:
        out: list[Outgoing] = [
            agent.encode_server(agent.ConversationText(role="assistant", content=text)),
            # No latency figures: the metrics must not learn made-up numbers.
            agent.encode_server(agent.AgentStartedSpeaking()),
        ]
        cue, size = self._cue, self._chunk_bytes
        out += [cue[at : at + size] for at in range(0, len(cue), size)]
        out.append(agent.encode_server(agent.AgentAudioDone()))
        return out

    def _fail(self, code: str, description: str) -> list[Outgoing]:
        self.closed = True
        return [agent.encode_server(agent.AgentError(code=code, description=description))]


# --- the trio driver -------------------------------------------------------------------------


class AgentSocket(Protocol):
    async def receive(self) -> str | bytes: ...

    async def send(self, data: str | bytes) -> None: ...


async def serve_local_agent(
    socket: AgentSocket,
    menu: Menu,
    *,
    on_session: Callable[[LocalAgentSession], None] | None = None,
) -> None:
    """Speak the agent protocol on `socket` until the peer leaves or the session fails.

    Returns when the session has sent its `Error` (the caller then closes the socket);
    the peer closing the socket surfaces as whatever exception `receive` raises.
    """
    session = LocalAgentSession(menu)
    if on_session is not None:
        on_session(session)
    for frame in session.start():
        await socket.send(frame)
    while not session.closed:
        data = await socket.receive()
        replies = session.on_audio(data) if isinstance(data, bytes) else session.on_text(data)
        for frame in replies:
            await socket.send(frame)
        await trio.lowlevel.checkpoint()


# --- in-process, for when the loopback socket cannot be used ---------------------------------

IN_PROCESS_BUFFER: Final = 256
"""Frames the local agent may have ready for the bridge; more means the bridge is stuck."""


class InProcessAgentConnection:
    """An `agent_link.AgentConnection` to a `LocalAgentSession` in this process: the same
    frames as over `/agent/local`, without the socket (used when the server's own TLS
    certificate, issued for the public name, cannot be verified on 127.0.0.1)."""

    def __init__(self, session: LocalAgentSession) -> None:
        self._session = session
        self._send, self._receive = trio.open_memory_channel[Outgoing](IN_PROCESS_BUFFER)
        self._push(session.start())

    def _push(self, frames: list[Outgoing]) -> None:
        try:
            for frame in frames:
                self._send.send_nowait(frame)
        except trio.WouldBlock:
            self._send.close()
            raise AgentClosed("the bridge stopped reading the local agent") from None
        except trio.ClosedResourceError:
            raise AgentClosed("local agent connection closed") from None
        if self._session.closed:
            self._send.close()  # the Error goes out, then the connection ends

    async def receive(self) -> str | bytes:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise AgentClosed("local agent connection closed") from None

    async def send(self, data: str | bytes) -> None:
        await trio.lowlevel.checkpoint()
        if isinstance(data, bytes):
            self._push(self._session.on_audio(data))
        else:
            self._push(self._session.on_text(data))

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        await trio.lowlevel.checkpoint()


def in_process_connector(menu: Menu) -> Callable[[], AbstractAsyncContextManager[Any]]:
    """An `AgentConnector` that talks to a fresh `LocalAgentSession` per call, in process."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[InProcessAgentConnection]:
        connection = InProcessAgentConnection(LocalAgentSession(menu))
        try:
            yield connection
        finally:
            await connection.aclose()

    return connect
