"""One phone call as a sans-IO state machine: Twilio Media Streams <-> Deepgram Voice Agent.

`CallSession(config).handle(event) -> list[Action]` is the whole API. It never awaits,
never reads a clock and never does I/O: the runtime feeds it every input (decoded frames,
agent audio, timer firings, effect results) and carries out the actions it returns, in
order. Two sessions share nothing (each owns its resampler states, cart and marks).

Inputs (the `CallEvent` union)
    Twilio: `twilio.Connected | Start | Media | Dtmf | Mark | Stop | UnknownTwilioEvent`,
        and `TwilioMalformed(reason)` when the runtime got a `RemoteProtocolError` decoding a
        frame (it counts toward the 50 malformed messages that end a call).
    Agent: every `agent.*` server message and `UnknownAgentMessage`; `AgentAudio(data)` for a
        binary frame (`Welcome` among them: see the last rule); `AgentConnected()` once the
        agent socket is open (before or after Twilio `start`); `AgentLost(reason)` when it
        could not be reached or dropped.
    Runtime: `TimerFired(name)` for a timer the session asked for, `CallerHungUp()` when the
        Twilio socket closed without `stop`, `PhoneStuck(reason)` when the phone side stopped
        reading its socket (its send queue overflowed), `CallerText(text)` for words the
        caller typed (the `/phone/ws` softphone and `boba call`: sent to the agent as
        `InjectUserMessage`, held until `SettingsApplied`), and
        `model.OrderCommitted | OrdersFound | EffectFailed` for effects the session requested.

Outputs (the `Action` union)
    `SendToTwilio(text, kind)`: a text frame already `twilio.encode`d. `kind` is MEDIA, MARK
        or CLEAR; on CLEAR the runtime should drop any MEDIA frames still queued for Twilio
        and send the clear first (barge-in).
    `SendToAgent(text)`: a JSON text frame already `agent.encode`d.
    `SendAgentAudio(data)`: a binary frame of caller audio (40 ms) for the agent.
    `RequestEffect(effect)`: run `model.CommitOrder | LookupOrders`, then feed the result back
        through `handle` (same `request_id`).
    `StartTimer(name, seconds)`: (re)arm a one-shot timer; starting a running name restarts
        it. `CancelTimer(name)`: stop it if running. Feed `TimerFired(name)` when one fires.
    `EndCall(reason)`: close both sockets; `reason.apologise` tells `/voice/after` whether
        the caller hears the apology. The session is CLOSED; stop all its timers.
    Observations, for logs, metrics and transcripts only: `Transcript(role, content)`,
    `FunctionCalled(id, name, arguments, result)`, `AgentLatency(total_seconds)`,
    `AgentErrorReported(code, description)`, `AgentWarningReported(code, description)`.

Lifecycle (`CallState`)
    AWAITING_START --Twilio start--> CONNECTING_AGENT --AgentConnected--> CONFIGURING
    (one `Settings` sent) --SettingsApplied--> CONVERSING --end_call / time limit--> ENDING
    --goodbye mark echoed or timer--> CLOSED. Any state --stop, hang-up, agent error or
    loss, a stuck phone, 50 malformed Twilio messages--> CLOSED. `AgentConnected` before `start` is
    remembered and `Settings` goes out with `start`.

Rules, all from CONTRACT §5
    - Caller audio reaches the agent only after `SettingsApplied` (earlier frames are
      dropped), in 40 ms messages: 320 μ-law bytes (`mulaw`, untouched) or 1920 samples of
      linear16 at 48 kHz through the streaming resampler (`linear16`).
    - Agent audio (linear16 24 kHz -> resampler -> μ-law, or μ-law untouched) goes to Twilio
      as soon as whole 160-byte frames exist, in media messages of at most 800 bytes (100
      ms). `AgentAudioDone` pads the last partial frame and sends a `mark` named
      `utt-N`; echoes move marks to `played_marks`.
    - `UserStartedSpeaking`: a `clear` at once, pending marks move to `cleared_marks` (their
      echoes are not "played"), held audio and the outbound resampler state are dropped.
    - Each client-side function call is answered exactly once, with its own `id` and
      `name`; repeated ids and `client_side: false` are ignored; a cancelled id is never
      answered. Store-bound functions (`checkout_order`, `order_status`) emit
      `RequestEffect` with `request_id` = the function call id, and are answered when the
      result comes back (if the call was cancelled meanwhile, the cart still learns of a
      committed order, but nothing is sent).
    - DTMF digits are sent as `InjectUserMessage("The caller typed 4 1 5 ...")` after a 2 s
      pause or on `#`.
    - A 1 s `tick` timer runs from `start`; after 5 ticks without caller audio to the
      agent, a `KeepAlive` goes out. A `call_limit` timer ends the call politely: the agent
      is asked to say goodbye (`InjectAgentMessage`), and the call ends when the mark of
      the first utterance that starts after that comes back (or after 10 s), TIME_LIMIT.
    - `end_call` is answered, then the call ends when the mark after the next
      `AgentAudioDone` comes back (played or cleared: the goodbye was decided), or after 5 s.
    - No frame at all from the phone side (Twilio sends media continuously, silence
      included) for more than `phone_silence_seconds` (15 s) ends the call, PHONE_SILENT:
      the stream is dead, and its slot is freed long before the call limit.
    - The agent's `Error` or loss ends the call with AGENT_FAILED (apology), except while
      ENDING, when the goodbye was already under way. 50 malformed or unknown Twilio
      messages (media or dtmf before `start`, media for another `streamSid` included) end it
      with TOO_MANY_MALFORMED.
    - After CLOSED, `handle` raises `LocalProtocolError`: feeding a closed session is a bug
      in the caller of this module. In particular, an effect still running when the call
      ends (a commit after the caller hung up) must complete in the runtime, but its result
      is not fed back: check `session.state is CallState.CLOSED` first.
    - `Settings` goes out once `start` has arrived and the agent has greeted: Deepgram
      wants nothing sent before its `Welcome`. With `config.welcome_timeout_seconds` > 0
      (what the runtime uses), `AgentConnected` starts a `welcome` timer and `Settings`
      waits for `Welcome` or for that timer, whichever comes first (an agent that never
      says Welcome still gets its Settings). With 0 (the default, and what the golden
      sessions were recorded with) `Settings` goes out at `AgentConnected` and a later
      `Welcome` is ignored.
    - `PhoneStuck` ends the call with PHONE_STUCK: not the agent's failure, so no apology
      (the caller's own line is what stopped reading).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from boba_proto import agent, audio, model, tools, twilio
from boba_proto.errors import LocalProtocolError
from boba_proto.menu import Menu
from boba_proto.shop import Availability

__all__ = [
    "CALLER_CHUNK_BYTES",
    "MAX_MALFORMED",
    "MAX_TWILIO_MEDIA_BYTES",
    "PHONE_SILENCE_SECONDS",
    "WELCOME_TIMEOUT_SECONDS",
    "Action",
    "AgentAudio",
    "AgentConnected",
    "AgentErrorReported",
    "AgentLatency",
    "AgentLost",
    "AgentWarningReported",
    "AvailabilityChanged",
    "CallConfig",
    "CallEvent",
    "CallSession",
    "CallState",
    "CallerHungUp",
    "CallerText",
    "CancelTimer",
    "EndCall",
    "EndReason",
    "FunctionCalled",
    "PhoneStuck",
    "RequestEffect",
    "RuntimeEvent",
    "SendAgentAudio",
    "SendToAgent",
    "SendToTwilio",
    "StartTimer",
    "TimerFired",
    "Transcript",
    "TwilioFrameKind",
    "TwilioMalformed",
    "handle_media_batch",
]

CALLER_CHUNK_BYTES = 320
"""40 ms of caller μ-law at 8 kHz: what one agent audio message carries (CONTRACT §5)."""
MAX_TWILIO_MEDIA_BYTES = 800
"""100 ms of μ-law: the largest media message sent to Twilio (a multiple of 160)."""
MAX_MALFORMED = 50
"""Malformed or unknown Twilio messages tolerated before the call is ended."""
TICK_SECONDS = 1.0
KEEPALIVE_TICKS = 5
"""Ticks without caller audio to the agent before a KeepAlive (CONTRACT: 5 s)."""
DTMF_PAUSE_SECONDS = 2.0
GOODBYE_SECONDS = 5.0
"""How long `end_call` waits for the goodbye mark before hanging up anyway."""
TIME_LIMIT_GOODBYE_SECONDS = 10.0
"""The time-limit goodbye is spoken from an injected message, so it gets longer to arrive."""
PHONE_SILENCE_SECONDS = 15.0
"""Twilio sends media continuously (silence included): a stream quiet this long is dead."""
SETTINGS_TIMEOUT_SECONDS = 10.0
"""An agent that does not apply `Settings` within this long counts as failed."""
WELCOME_TIMEOUT_SECONDS = 5.0
"""The runtime's `CallConfig.welcome_timeout_seconds`: how long `Settings` waits for
`Welcome` before it is sent anyway."""
TIME_LIMIT_MESSAGE = (
    "I'm sorry, we've reached the time limit for a phone order, so I have to end the call "
    "now. Thank you for calling, goodbye!"
)

TIMER_TICK = "tick"
TIMER_DTMF = "dtmf"
TIMER_GOODBYE = "goodbye"
TIMER_CALL_LIMIT = "call_limit"
TIMER_SETTINGS = "settings"
TIMER_WELCOME = "welcome"
_TIMERS = frozenset(
    {TIMER_TICK, TIMER_DTMF, TIMER_GOODBYE, TIMER_CALL_LIMIT, TIMER_SETTINGS, TIMER_WELCOME}
)


# --------------------------------------------------------------------------- inputs


class _RuntimeEventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Inputs made by the runtime rather than decoded from a peer's frame."""


class AgentConnected(_RuntimeEventBase, tag="agent_connected", frozen=True, kw_only=True):
    """The agent socket is open and `Settings` may be sent."""


class AgentLost(_RuntimeEventBase, tag="agent_lost", frozen=True, kw_only=True):
    """The agent could not be reached, or its socket closed mid-call."""

    reason: str


class AgentAudio(_RuntimeEventBase, tag="agent_audio", frozen=True, kw_only=True):
    """One binary frame from the agent: its speech in the profile's output format."""

    data: bytes


class TimerFired(_RuntimeEventBase, tag="timer_fired", frozen=True, kw_only=True):
    """A timer this session started with `StartTimer(name, ...)` has run out."""

    name: str


class TwilioMalformed(_RuntimeEventBase, tag="twilio_malformed", frozen=True, kw_only=True):
    """A Twilio frame that did not decode (`RemoteProtocolError`); counted, then skipped."""

    reason: str


class CallerHungUp(_RuntimeEventBase, tag="caller_hung_up", frozen=True, kw_only=True):
    """The Twilio socket closed without a `stop`."""


class PhoneStuck(_RuntimeEventBase, tag="phone_stuck", frozen=True, kw_only=True):
    """The phone side stopped reading its socket: control frames for it piled up."""

    reason: str


class CallerText(_RuntimeEventBase, tag="caller_text", frozen=True, kw_only=True):
    """Words the caller typed instead of saying them (CONTRACT §9 `{"event": "text"}`)."""

    text: str


class AvailabilityChanged(
    _RuntimeEventBase, tag="availability_changed", frozen=True, kw_only=True
):
    """What is sold out now (CONTRACT §12); the runtime feeds it before a function call
    whenever it differs from what the session last heard."""

    availability: Availability


RuntimeEvent = (
    AgentConnected
    | AgentLost
    | AgentAudio
    | TimerFired
    | TwilioMalformed
    | CallerHungUp
    | PhoneStuck
    | CallerText
    | AvailabilityChanged
)

CallEvent = (
    twilio.TwilioEvent
    | twilio.UnknownTwilioEvent
    | agent.AgentMessage
    | agent.UnknownAgentMessage
    | RuntimeEvent
    | model.EffectResult
)
"""Everything `CallSession.handle` accepts (a type alias only; never build a Decoder from it)."""


# --------------------------------------------------------------------------- outputs


class EndReason(enum.Enum):
    """Why a call ended; `/voice/after` apologises only when `apologise` is true."""

    COMPLETED = "completed"  # end_call, Twilio stop, caller hung up
    TIME_LIMIT = "time_limit"
    TOO_MANY_MALFORMED = "too_many_malformed"
    AGENT_FAILED = "agent_failed"  # agent Error, unreachable, dropped, or never applied Settings
    PHONE_STUCK = "phone_stuck"  # the phone side stopped reading (not the agent's failure)
    PHONE_SILENT = "phone_silent"  # no Twilio frame for PHONE_SILENCE_SECONDS: a dead stream
    TRANSFER = "transfer"  # transfer_to_staff: `/voice/after` dials the shop's number

    @property
    def apologise(self) -> bool:
        return self is EndReason.AGENT_FAILED


class TwilioFrameKind(enum.Enum):
    MEDIA = "media"
    MARK = "mark"
    CLEAR = "clear"


class Action(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of everything `handle` returns."""


class SendToTwilio(Action, tag="send_to_twilio", frozen=True, kw_only=True):
    text: str
    kind: TwilioFrameKind


class SendToAgent(Action, tag="send_to_agent", frozen=True, kw_only=True):
    text: str


class SendAgentAudio(Action, tag="send_agent_audio", frozen=True, kw_only=True):
    data: bytes


class RequestEffect(Action, tag="request_effect", frozen=True, kw_only=True):
    effect: model.CommitOrder | model.LookupOrders


class StartTimer(Action, tag="start_timer", frozen=True, kw_only=True):
    name: str
    seconds: float


class CancelTimer(Action, tag="cancel_timer", frozen=True, kw_only=True):
    name: str


class EndCall(Action, tag="end_call", frozen=True, kw_only=True):
    reason: EndReason


class Transcript(Action, tag="transcript", frozen=True, kw_only=True):
    role: str
    content: str


class FunctionCalled(Action, tag="function_called", frozen=True, kw_only=True):
    id: str
    name: str
    arguments: str
    result: str


class AgentLatency(Action, tag="agent_latency", frozen=True, kw_only=True):
    total_seconds: float


class AgentErrorReported(Action, tag="agent_error", frozen=True, kw_only=True):
    code: str
    description: str


class AgentWarningReported(Action, tag="agent_warning", frozen=True, kw_only=True):
    code: str
    description: str


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class CallConfig:
    """Everything one call needs, built once by the runtime (or from a recording's header).

    `caller` and `call_sid` may be left empty: they are then taken from the Twilio `start`
    (`customParameters.caller`, `start.callSid`). Every field is plain data, so a
    recording's header can hold it all and `boba replay` needs no other file.
    """

    profile: agent.AudioProfile
    agent_settings: agent.AgentSettings
    menu: Menu
    max_call_seconds: float = 600.0
    caller: str = ""
    call_sid: str = ""
    welcome_timeout_seconds: float = 0.0
    """> 0: `Settings` waits this long for the agent's `Welcome` (see the module docstring)."""
    sms_countries: tuple[str, ...] = ()
    """Where `save_phone_number` accepts numbers (`BOBA_SMS_COUNTRIES`; empty: anywhere)."""
    phone_silence_seconds: float | None = PHONE_SILENCE_SECONDS
    """End the call after this long without a frame from the phone side (None: never, for
    a softphone that sends nothing while the caller types)."""
    transfer_enabled: bool = False  # BOBA_TRANSFER_NUMBER is set: offer transfer_to_staff


class CallState(enum.Enum):
    AWAITING_START = "awaiting_start"
    CONNECTING_AGENT = "connecting_agent"
    CONFIGURING = "configuring"
    CONVERSING = "conversing"
    ENDING = "ending"
    CLOSED = "closed"


_AUDIO_FLOWS = frozenset({CallState.CONVERSING, CallState.ENDING})


class CallSession:
    """The state of one call; see the module docstring for the contract."""

    def __init__(self, config: CallConfig) -> None:
        self.config = config
        self._state = CallState.AWAITING_START
        self.end_reason: EndReason | None = None
        self.caller = config.caller
        self.call_sid = config.call_sid
        self.stream_sid = ""
        self.malformed_count = 0
        self._agent_connected = False
        self._agent_greeted = False  # Welcome came, or was not waited for, or timed out
        self._linear16 = config.profile is agent.AudioProfile.LINEAR16
        # caller -> agent
        self._caller_held = bytearray()
        self._in_rate = config.profile.input_rate
        self._in_state = audio.resampler(audio.TWILIO_RATE, self._in_rate).initial_state()
        self._ticks_without_audio = 0
        self._ticks_without_phone = 0  # ticks since the last frame of any kind from Twilio
        # agent -> caller
        self._out_rate = config.profile.output_rate
        self._out_state = audio.resampler(self._out_rate, audio.TWILIO_RATE).initial_state()
        self._framer = audio.FramerState()
        self._utterance_bytes = 0
        self._marks_sent = 0
        self._pending_marks: deque[str] = deque()
        self._cleared_unechoed: set[str] = set()
        self._played_marks: list[str] = []
        self._cleared_marks: list[str] = []
        # ending
        self._ending_reason = EndReason.COMPLETED
        self._goodbye_mark: str | None = None
        self._goodbye_must_start_later = False  # time limit: not the utterance under way
        self._utterance_started_ending = False
        # functions
        self._tools = tools.initial_state(
            config.caller or None,
            call_sid=config.call_sid,
            sms_regions=config.sms_countries,
            transfer_enabled=config.transfer_enabled,
        )
        self._answered: set[str] = set()
        self._cancelled: set[str] = set()
        self._awaiting_effect: dict[str, agent.FunctionCall] = {}
        # dtmf, and typed words (both wait for SettingsApplied)
        self._digits: list[str] = []
        self._typed: list[str] = []

    # --- visible state ----------------------------------------------------------------------

    @property
    def state(self) -> CallState:
        return self._state

    @property
    def pending_marks(self) -> tuple[str, ...]:
        """Marks sent whose echo has not come back (audio Twilio may still be playing)."""
        return tuple(self._pending_marks)

    @property
    def played_marks(self) -> tuple[str, ...]:
        """Marks echoed after their audio played."""
        return tuple(self._played_marks)

    @property
    def cleared_marks(self) -> tuple[str, ...]:
        """Marks whose audio a `clear` discarded (their echo does not mean "played")."""
        return tuple(self._cleared_marks)

    @property
    def tool_state(self) -> tools.ToolState:
        """The cart, staged drink, phone and placed order of this call."""
        return self._tools

    # --- the one entry point ----------------------------------------------------------------

    def handle(self, event: CallEvent) -> list[Action]:
        """Take one input and return what to do about it, in order."""
        if self._state is CallState.CLOSED:
            raise LocalProtocolError(
                f"call session is closed ({self._reason_text()}); "
                f"refusing {type(event).__name__}"
            )
        match event:
            # the hot paths first: caller audio every 20 ms, agent audio in bursts
            case twilio.Media():
                self._ticks_without_phone = 0
                return self._on_media(event)
            case AgentAudio(data=data):
                return self._on_agent_audio(data)
            case twilio.Mark():
                self._ticks_without_phone = 0
                return self._on_mark(event)
            case TimerFired(name=name):
                return self._on_timer(name)
            case twilio.Start():
                return self._on_start(event)
            case twilio.Dtmf():
                self._ticks_without_phone = 0
                return self._on_dtmf(event)
            case CallerText(text=text):
                self._ticks_without_phone = 0
                return self._on_caller_text(text)
            case AvailabilityChanged(availability=availability):
                self._tools = msgspec.structs.replace(self._tools, availability=availability)
                return []
            case twilio.Stop() | CallerHungUp():
                return self._close(EndReason.COMPLETED)
            case PhoneStuck():
                return self._close(EndReason.PHONE_STUCK)
            case twilio.Connected():
                self._ticks_without_phone = 0
                return []
            case twilio.UnknownTwilioEvent(event=name):
                self._ticks_without_phone = 0
                return self._malformed(f"unknown Twilio event {name!r}")
            case TwilioMalformed(reason=reason):
                self._ticks_without_phone = 0
                return self._malformed(reason)
            case AgentConnected():
                return self._on_agent_connected()
            case AgentLost():
                return self._agent_gone()
            case model.OrderCommitted() | model.OrdersFound() | model.EffectFailed():
                return self._on_effect_result(event)
            case _:
                return self._on_agent_message(event)

    # --- Twilio -----------------------------------------------------------------------------

    def _on_start(self, event: twilio.Start) -> list[Action]:
        if self._state is not CallState.AWAITING_START:
            return self._malformed("a second Twilio start")
        info = event.start
        self.stream_sid = info.stream_sid or event.stream_sid
        self.call_sid = self.call_sid or info.call_sid
        self.caller = self.caller or info.custom_parameters.get("caller", "")
        self._tools = tools.initial_state(
            self.caller or None,
            call_sid=self.call_sid,
            sms_regions=self.config.sms_countries,
            transfer_enabled=self.config.transfer_enabled,
            availability=self._tools.availability,
        )
        self._state = CallState.CONNECTING_AGENT
        actions: list[Action] = [
            StartTimer(name=TIMER_TICK, seconds=TICK_SECONDS),
            StartTimer(name=TIMER_CALL_LIMIT, seconds=float(self.config.max_call_seconds)),
        ]
        if self._agent_greeted:
            actions += self._send_settings()
        return actions

    def _on_media(self, event: twilio.Media) -> list[Action]:
        gated = self._media_gate(event)
        if gated is not None:
            return gated
        chunks = self._hold_caller_audio(event.media.payload)
        if not self._linear16:
            return [SendAgentAudio(data=chunk) for chunk in chunks]
        actions: list[Action] = []
        for chunk in chunks:
            data, self._in_state = audio.caller_to_agent(
                chunk, self._in_state, agent_rate=self._in_rate
            )
            actions.append(SendAgentAudio(data=data))
        return actions

    def _media_gate(self, event: twilio.Media) -> list[Action] | None:
        """What a media event gets instead of audio handling (malformed, or gated), or None."""
        if self._state is CallState.AWAITING_START:
            return self._malformed("media before start")
        if event.stream_sid != self.stream_sid:
            return self._malformed("media for another stream")
        if self._state not in _AUDIO_FLOWS:
            return []  # gated until SettingsApplied
        return None

    def _hold_caller_audio(self, payload: bytes) -> list[bytes]:
        """The whole 40 ms μ-law chunks the caller's audio now makes (not yet converted)."""
        held = self._caller_held
        held += payload
        if len(held) < CALLER_CHUNK_BYTES:
            return []
        chunks: list[bytes] = []
        while len(held) >= CALLER_CHUNK_BYTES:
            chunks.append(bytes(held[:CALLER_CHUNK_BYTES]))
            del held[:CALLER_CHUNK_BYTES]
        self._ticks_without_audio = 0
        return chunks

    def _on_mark(self, event: twilio.Mark) -> list[Action]:
        name = event.mark.name
        if name in self._cleared_unechoed:
            self._cleared_unechoed.discard(name)
        elif name in self._pending_marks:
            # Twilio plays in order: every mark before this one has played too.
            while self._pending_marks:
                done = self._pending_marks.popleft()
                self._played_marks.append(done)
                if done == name:
                    break
        else:
            return []  # not ours (or echoed twice): nothing to learn
        if self._state is CallState.ENDING and name == self._goodbye_mark:
            return self._close(self._ending_reason)
        return []

    def _on_dtmf(self, event: twilio.Dtmf) -> list[Action]:
        if self._state is CallState.AWAITING_START:
            return self._malformed("dtmf before start")
        digit = event.dtmf.digit
        if digit == "#":
            return [CancelTimer(name=TIMER_DTMF), *self._flush_digits()]
        self._digits.append(digit)
        return [StartTimer(name=TIMER_DTMF, seconds=DTMF_PAUSE_SECONDS)]

    def _on_caller_text(self, text: str) -> list[Action]:
        if self._state is CallState.AWAITING_START:
            return self._malformed("text before start")
        if not text.strip():
            return []
        if self._state not in _AUDIO_FLOWS:
            self._typed.append(text)  # sent once the agent applied Settings
            return []
        return [SendToAgent(text=agent.encode(agent.InjectUserMessage(content=text)))]

    def _flush_digits(self) -> list[Action]:
        if not self._digits or self._state not in _AUDIO_FLOWS:
            return []  # before SettingsApplied the digits wait (see _on_agent_message)
        typed = " ".join(self._digits)
        self._digits.clear()
        message = agent.InjectUserMessage(content=f"The caller typed {typed}")
        return [SendToAgent(text=agent.encode(message))]

    def _malformed(self, reason: str) -> list[Action]:
        del reason  # the runtime logs the frame it could not use; the core only counts
        self.malformed_count += 1
        if self.malformed_count >= MAX_MALFORMED:
            return self._close(EndReason.TOO_MANY_MALFORMED)
        return []

    # --- agent ------------------------------------------------------------------------------

    def _on_agent_connected(self) -> list[Action]:
        if self._agent_connected:
            raise LocalProtocolError("AgentConnected fed twice to one call session")
        self._agent_connected = True
        if self.config.welcome_timeout_seconds > 0:
            return [StartTimer(name=TIMER_WELCOME, seconds=self.config.welcome_timeout_seconds)]
        return self._agent_greets()

    def _agent_greets(self) -> list[Action]:
        """`Welcome` came (or is not waited for, or its timer ran out): `Settings` may go."""
        if self._agent_greeted or not self._agent_connected:
            return []
        self._agent_greeted = True
        if self._state is CallState.CONNECTING_AGENT:
            return self._send_settings()
        return []

    def _send_settings(self) -> list[Action]:
        self._state = CallState.CONFIGURING
        return [
            SendToAgent(text=agent.encode(self.config.agent_settings)),
            StartTimer(name=TIMER_SETTINGS, seconds=SETTINGS_TIMEOUT_SECONDS),
        ]

    def _on_agent_message(self, event: CallEvent) -> list[Action]:
        match event:
            case agent.ConversationText(role=role, content=content):
                return [Transcript(role=role, content=content)]
            case agent.UserStartedSpeaking():
                return self._barge_in()
            case agent.AgentAudioDone():
                return self._end_utterance()
            case agent.FunctionCallRequest(functions=functions):
                return self._on_function_calls(functions)
            case agent.FunctionCallCancelled(functions=cancelled):
                for function in cancelled:
                    if function.id not in self._answered:
                        self._cancelled.add(function.id)
                return []
            case agent.Welcome():
                if self._agent_greeted or not self._agent_connected:
                    return []
                return [CancelTimer(name=TIMER_WELCOME), *self._agent_greets()]
            case agent.AgentStartedSpeaking(total_latency=latency):
                return [] if latency is None else [AgentLatency(total_seconds=latency)]
            case agent.SettingsApplied():
                if self._state is not CallState.CONFIGURING:
                    return []
                self._state = CallState.CONVERSING
                actions: list[Action] = [CancelTimer(name=TIMER_SETTINGS)]
                for typed in self._typed:
                    inject = agent.InjectUserMessage(content=typed)
                    actions.append(SendToAgent(text=agent.encode(inject)))
                self._typed.clear()
                if self._digits:
                    actions.append(StartTimer(name=TIMER_DTMF, seconds=DTMF_PAUSE_SECONDS))
                return actions
            case agent.AgentError(code=code, description=description):
                return [
                    AgentErrorReported(code=code, description=description),
                    *self._close(EndReason.AGENT_FAILED),
                ]
            case agent.AgentWarning(code=code, description=description):
                return [AgentWarningReported(code=code, description=description)]
            case agent.UnknownAgentMessage():
                return []  # Deepgram adds message types often; skipping them is the contract
            case _ if type(event).__module__ == agent.__name__:
                return []  # Welcome, AgentThinking, PromptUpdated, History, ...: nothing to do
        raise LocalProtocolError(f"CallSession cannot handle {type(event).__name__}")

    def _agent_gone(self) -> list[Action]:
        if self._state is CallState.ENDING:
            return self._close(self._ending_reason)  # the goodbye was already under way
        return self._close(EndReason.AGENT_FAILED)

    # --- agent audio -> Twilio --------------------------------------------------------------

    def _on_agent_audio(self, data: bytes) -> list[Action]:
        if not self.stream_sid:
            return []  # no stream to play it on (cannot happen before Settings went out)
        if self._linear16:
            ulaw, self._out_state = audio.agent_to_caller(
                data, self._out_state, agent_rate=self._out_rate
            )
        else:
            ulaw = data
        frames, self._framer = audio.frame_ulaw(ulaw, self._framer)
        return self._media(frames)

    def _media(self, frames: bytes) -> list[Action]:
        if self._utterance_bytes == 0 and frames:
            self._utterance_started_ending = self._state is CallState.ENDING
        self._utterance_bytes += len(frames)
        sid = self.stream_sid
        return [
            SendToTwilio(
                text=twilio.encode(
                    twilio.SendMedia(
                        stream_sid=sid, payload=frames[at : at + MAX_TWILIO_MEDIA_BYTES]
                    )
                ),
                kind=TwilioFrameKind.MEDIA,
            )
            for at in range(0, len(frames), MAX_TWILIO_MEDIA_BYTES)
        ]

    def _end_utterance(self) -> list[Action]:
        tail, self._framer = audio.flush_ulaw(self._framer)
        actions = self._media(tail) if tail else []
        if self._utterance_bytes == 0:
            return actions  # nothing was played, so there is nothing to wait for
        self._utterance_bytes = 0
        self._marks_sent += 1
        name = f"utt-{self._marks_sent}"
        self._pending_marks.append(name)
        if (
            self._state is CallState.ENDING
            and self._goodbye_mark is None
            and (self._utterance_started_ending or not self._goodbye_must_start_later)
        ):
            self._goodbye_mark = name
        mark = twilio.SendMark(stream_sid=self.stream_sid, name=name)
        actions.append(SendToTwilio(text=twilio.encode(mark), kind=TwilioFrameKind.MARK))
        return actions

    def _barge_in(self) -> list[Action]:
        if not self.stream_sid:
            return []
        for name in self._pending_marks:
            self._cleared_marks.append(name)
            self._cleared_unechoed.add(name)
        self._pending_marks.clear()
        self._framer = audio.FramerState()
        self._out_state = audio.resampler(self._out_rate, audio.TWILIO_RATE).initial_state()
        self._utterance_bytes = 0
        clear = twilio.SendClear(stream_sid=self.stream_sid)
        return [SendToTwilio(text=twilio.encode(clear), kind=TwilioFrameKind.CLEAR)]

    # --- function calls ---------------------------------------------------------------------

    def _on_function_calls(self, functions: list[agent.FunctionCall]) -> list[Action]:
        actions: list[Action] = []
        for call in functions:
            if not call.client_side:
                continue  # Deepgram runs server-side functions itself
            if (
                call.id in self._answered
                or call.id in self._awaiting_effect
                or call.id in self._cancelled
            ):
                continue  # exactly once per id
            self._tools, outcome = tools.dispatch(
                self.config.menu, self._tools, call.name, call.arguments, request_id=call.id
            )
            match outcome:
                case tools.ToolEffect(effect=effect):
                    self._awaiting_effect[effect.request_id] = call
                    actions.append(RequestEffect(effect=effect))
                case tools.ToolEndCall(result=result):
                    actions += self._answer(call, result)
                    if self._state is not CallState.ENDING:
                        actions += self._begin_ending(
                            EndReason.COMPLETED, GOODBYE_SECONDS, later_utterance=False
                        )
                case tools.ToolTransfer(result=result):
                    # Like end_call: the stream ends once the agent's one sentence played.
                    actions += self._answer(call, result)
                    if self._state is not CallState.ENDING:
                        actions += self._begin_ending(
                            EndReason.TRANSFER, GOODBYE_SECONDS, later_utterance=False
                        )
                case tools.ToolReply(result=result):
                    actions += self._answer(call, result)
        return actions

    def _on_effect_result(self, result: model.EffectResult) -> list[Action]:
        call = self._awaiting_effect.pop(result.request_id, None)
        if call is None:
            raise LocalProtocolError(
                f"effect result for request {result.request_id!r}, which this call never asked for"
            )
        self._tools, reply = tools.complete_effect(self.config.menu, self._tools, call.name, result)
        if call.id in self._cancelled:
            return []  # the agent withdrew the call; the state still knows what was committed
        return self._answer(call, reply)

    def _answer(self, call: agent.FunctionCall, result: dict[str, object]) -> list[Action]:
        self._answered.add(call.id)
        content = msgspec.json.encode(result).decode("utf-8")
        response = agent.FunctionCallResponse(id=call.id, name=call.name, content=content)
        return [
            SendToAgent(text=agent.encode(response)),
            FunctionCalled(id=call.id, name=call.name, arguments=call.arguments, result=content),
        ]

    # --- timers and ending ------------------------------------------------------------------

    def _on_timer(self, name: str) -> list[Action]:
        if name not in _TIMERS:
            raise LocalProtocolError(f"TimerFired({name!r}) for a timer this session never starts")
        if name == TIMER_TICK:
            self._ticks_without_phone += 1
            silence = self.config.phone_silence_seconds
            if silence is not None and self._ticks_without_phone * TICK_SECONDS > silence:
                return self._close(EndReason.PHONE_SILENT)  # ticks come 1 s apart: > 15 s
            actions: list[Action] = [StartTimer(name=TIMER_TICK, seconds=TICK_SECONDS)]
            self._ticks_without_audio += 1
            if self._ticks_without_audio >= KEEPALIVE_TICKS and self._state in _AUDIO_FLOWS:
                self._ticks_without_audio = 0
                actions.append(SendToAgent(text=agent.encode(agent.KeepAlive())))
            return actions
        if name == TIMER_DTMF:
            return self._flush_digits()
        if name == TIMER_WELCOME:
            return self._agent_greets()
        if name == TIMER_SETTINGS:
            if self._state is CallState.CONFIGURING:
                return self._close(EndReason.AGENT_FAILED)
            return []
        if name == TIMER_CALL_LIMIT:
            if self._state is CallState.CONVERSING:
                inject = agent.InjectAgentMessage(message=TIME_LIMIT_MESSAGE)
                return [
                    SendToAgent(text=agent.encode(inject)),
                    *self._begin_ending(
                        EndReason.TIME_LIMIT, TIME_LIMIT_GOODBYE_SECONDS, later_utterance=True
                    ),
                ]
            if self._state is CallState.ENDING:
                return []
            return self._close(EndReason.TIME_LIMIT)
        # TIMER_GOODBYE
        if self._state is CallState.ENDING:
            return self._close(self._ending_reason)
        return []

    def _begin_ending(
        self, reason: EndReason, seconds: float, *, later_utterance: bool
    ) -> list[Action]:
        """Wait for the goodbye: the mark after the next AgentAudioDone (`end_call`), or
        after the next utterance that *starts* from now (the time-limit goodbye is injected,
        so a reply already under way is not it)."""
        self._state = CallState.ENDING
        self._ending_reason = reason
        self._goodbye_mark = None
        self._goodbye_must_start_later = later_utterance
        return [StartTimer(name=TIMER_GOODBYE, seconds=seconds)]

    def _close(self, reason: EndReason) -> list[Action]:
        self._state = CallState.CLOSED
        self.end_reason = reason
        return [EndCall(reason=reason)]

    def _reason_text(self) -> str:
        return self.end_reason.value if self.end_reason is not None else "unknown reason"


# --- many calls' caller audio at once ---------------------------------------------------------


def handle_media_batch(batch: Sequence[tuple[CallSession, twilio.Media]]) -> list[list[Action]]:
    """`session.handle(media)` for many calls' media frames at once, in the given order.

    Each result is what `handle` would have returned for that item, except that the
    linear16 caller audio of every call is resampled together, one batched step per round
    (`audio.caller_to_agent_batch`: numpy's per-call overhead is paid once, not once per
    call), equal to the per-call path within 1 LSB. A session closed before its item is
    reached (50 malformed frames) gets `[]`, where `handle` would refuse the event.
    """
    results: list[list[Action]] = []
    # Per session, its chunks in order, each with the index of the item it came from.
    queued: dict[int, tuple[CallSession, list[tuple[int, bytes]]]] = {}
    for index, (session, event) in enumerate(batch):
        if session._state is CallState.CLOSED:
            results.append([])
            continue
        session._ticks_without_phone = 0  # a frame from the phone, as in `handle`
        gated = session._media_gate(event)
        if gated is not None:
            results.append(gated)
            continue
        chunks = session._hold_caller_audio(event.media.payload)
        if not session._linear16:
            results.append([SendAgentAudio(data=chunk) for chunk in chunks])
            continue
        results.append([])
        if chunks:
            entry = queued.setdefault(id(session), (session, []))
            entry[1].extend((index, chunk) for chunk in chunks)
    depth = 0
    while True:
        # Round `depth`: the depth-th chunk of every session (a session's chunks go in order).
        by_rate: dict[int, list[tuple[CallSession, int, bytes]]] = {}
        for session, in_order in queued.values():
            if depth < len(in_order):
                index, chunk = in_order[depth]
                by_rate.setdefault(session._in_rate, []).append((session, index, chunk))
        if not by_rate:
            return results
        for rate, members in by_rate.items():
            if len(members) == 1 or not audio.resampler(audio.TWILIO_RATE, rate).batchable:
                for session, index, one in members:
                    data, session._in_state = audio.caller_to_agent(
                        one, session._in_state, agent_rate=rate
                    )
                    results[index].append(SendAgentAudio(data=data))
                continue
            converted, states = audio.caller_to_agent_batch(
                [chunk for _, _, chunk in members],
                [session._in_state for session, _, _ in members],
                agent_rate=rate,
            )
            for (session, index, _), data, state in zip(members, converted, states, strict=True):
                session._in_state = state
                results[index].append(SendAgentAudio(data=data))
        depth += 1
