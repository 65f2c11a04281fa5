"""Deepgram Voice Agent API v1 wire types, decoded and encoded with msgspec.

Server messages are frozen Structs in one tagged union on `"type"` (Deepgram's type values
are the class names, except `Error`/`Warning`, which become `AgentError`/`AgentWarning`).
Deepgram adds message types often, so an unknown type decodes to `UnknownAgentMessage`
instead of failing; a known type with a bad body raises `RemoteProtocolError` naming the
field. The retired early-access function-call shape (`function_name`, `function_call_id`,
`input`) is recognised and rejected with an error that says so, because silently dropping
function calls is the classic v1 migration bug.

Client messages are separate Structs; `build_settings` turns plain data (audio profile,
model names, prompt, functions, greeting) into the one `Settings` message. Binary frames
(audio) never pass through here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final, Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from boba_proto._wire import as_bytes, explain
from boba_proto.errors import InvalidAgentSetting, RemoteProtocolError

__all__ = [
    "KNOWN_THINK_PROVIDERS",
    "AgentAudioDone",
    "AgentClientMessage",
    "AgentError",
    "AgentMessage",
    "AgentRole",
    "AgentSettings",
    "AgentStartedSpeaking",
    "AgentThinking",
    "AgentWarning",
    "AudioConfig",
    "AudioInput",
    "AudioOutput",
    "AudioProfile",
    "CancelledFunction",
    "ConversationText",
    "FunctionCall",
    "FunctionCallCancelled",
    "FunctionCallRequest",
    "FunctionCallResponse",
    "FunctionCallResponseEcho",
    "FunctionSpec",
    "History",
    "HistoryFunctionCall",
    "InjectAgentMessage",
    "InjectUserMessage",
    "InjectionRefused",
    "KeepAlive",
    "LatencyReport",
    "Listen",
    "ListenProvider",
    "PromptUpdated",
    "SettingsAgent",
    "SettingsApplied",
    "Speak",
    "SpeakProvider",
    "SpeakUpdated",
    "Think",
    "ThinkProvider",
    "UnknownAgentMessage",
    "UpdatePrompt",
    "UserStartedSpeaking",
    "Welcome",
    "build_settings",
    "decode",
    "decode_client",
    "encode",
    "encode_server",
]


class AgentRole(enum.StrEnum):
    """`ConversationText.role` / `History.role` values (kept as plain `str` on the wire type)."""

    USER = "user"
    ASSISTANT = "assistant"


# ---------------------------------------------------------------------------------------
# Server -> us
# ---------------------------------------------------------------------------------------


class _Server(msgspec.Struct, tag_field="type", frozen=True, omit_defaults=True):
    """Base of every JSON message the agent sends; the tag defaults to the class name."""


class Welcome(_Server, kw_only=True, frozen=True):
    """First message on the socket; log `request_id`, Deepgram support asks for it."""

    request_id: str


class SettingsApplied(_Server, kw_only=True, frozen=True):
    """Our `Settings` were accepted; only now may caller audio flow."""


class ConversationText(_Server, kw_only=True, frozen=True):
    """The transcript of one turn (`role` is `user` or `assistant`, see `AgentRole`)."""

    role: str
    content: str
    conversational_behavior: str = "default"


class UserStartedSpeaking(_Server, kw_only=True, frozen=True):
    """The caller started talking: barge-in, clear Twilio's buffer at once."""


class AgentThinking(_Server, kw_only=True, frozen=True):
    """The LLM is working; not reliably sent, so nothing may depend on it."""

    content: str = ""


class FunctionCall(msgspec.Struct, frozen=True, kw_only=True):
    """One requested call; `arguments` is a JSON-encoded *string*, decoded by the tools layer."""

    id: str
    name: str
    arguments: str
    client_side: bool


class FunctionCallRequest(_Server, kw_only=True, frozen=True):
    """v1 shape: answer each `client_side` call with one `FunctionCallResponse` (same id)."""

    functions: list[FunctionCall]


class CancelledFunction(msgspec.Struct, frozen=True, kw_only=True):
    """A call that became void (the caller kept talking); it must get no response."""

    id: str
    name: str = ""


class FunctionCallCancelled(_Server, kw_only=True, frozen=True):
    functions: list[CancelledFunction]


class FunctionCallResponseEcho(_Server, tag="FunctionCallResponse", kw_only=True, frozen=True):
    """The server's echo of a server-side (`client_side: false`) call; informational."""

    id: str = ""
    name: str = ""
    content: str = ""


class AgentStartedSpeaking(_Server, kw_only=True, frozen=True):
    """Latencies in seconds; optional because older payloads omitted them."""

    total_latency: float | None = None
    tts_latency: float | None = None
    ttt_latency: float | None = None


class LatencyReport(_Server, kw_only=True, frozen=True):
    """Per-turn latency breakdown in seconds (newer servers); every field optional."""

    stt_latency: float | None = None
    ttt_token_latency: float | None = None
    ttt_text_latency: float | None = None
    ttt_tool_latency: float | None = None
    ttt_thinking_latency: float | None = None
    tts_latency: float | None = None
    total_latency: float | None = None


class AgentAudioDone(_Server, kw_only=True, frozen=True):
    """The last audio frame of this turn was sent; Twilio may still be playing it."""


class PromptUpdated(_Server, kw_only=True, frozen=True):
    """Ack of `UpdatePrompt`."""


class SpeakUpdated(_Server, kw_only=True, frozen=True):
    """Ack of `UpdateSpeak`."""


class InjectionRefused(_Server, kw_only=True, frozen=True):
    """An inject was refused because a turn was in progress."""

    message: str = ""


class HistoryFunctionCall(msgspec.Struct, frozen=True, kw_only=True):
    """One function call in a `History` message; lenient, it is only logged or replayed."""

    id: str = ""
    name: str = ""
    client_side: bool = True
    arguments: str = ""
    response: str = ""


class History(_Server, kw_only=True, frozen=True):
    """Conversation history: either `role` + `content`, or `function_calls`."""

    role: str | None = None
    content: str | None = None
    function_calls: list[HistoryFunctionCall] | None = None


class AgentError(_Server, tag="Error", kw_only=True, frozen=True):
    """Fatal: the agent closes the session next. Lenient, so any `Error` ends the call."""

    description: str = ""
    code: str = ""


class AgentWarning(_Server, tag="Warning", kw_only=True, frozen=True):
    """Non-fatal, e.g. `PROMPT_TOO_LONG`: log it."""

    description: str = ""
    code: str = ""


AgentMessage = (
    Welcome
    | SettingsApplied
    | ConversationText
    | UserStartedSpeaking
    | AgentThinking
    | FunctionCallRequest
    | FunctionCallCancelled
    | FunctionCallResponseEcho
    | AgentStartedSpeaking
    | LatencyReport
    | AgentAudioDone
    | PromptUpdated
    | SpeakUpdated
    | InjectionRefused
    | History
    | AgentError
    | AgentWarning
)


class UnknownAgentMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message type this code does not know (Deepgram adds them often): log and skip it."""

    type: str
    raw: bytes


# ---------------------------------------------------------------------------------------
# Us -> server
# ---------------------------------------------------------------------------------------


class _Client(msgspec.Struct, tag_field="type", frozen=True):
    """Base of every JSON message we send; the tag is the class name."""


class AudioInput(msgspec.Struct, frozen=True, kw_only=True):
    encoding: str
    sample_rate: int


class AudioOutput(msgspec.Struct, frozen=True, kw_only=True):
    """`container` is always sent: `"none"` means raw frames, with no WAV header clicks."""

    encoding: str
    sample_rate: int
    container: str = "none"


class AudioConfig(msgspec.Struct, frozen=True, kw_only=True):
    input: AudioInput
    output: AudioOutput


class ListenProvider(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "deepgram"
    version: str = "v1"
    model: str


class Listen(msgspec.Struct, frozen=True, kw_only=True):
    provider: ListenProvider


class ThinkProvider(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    model: str


class FunctionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A client-side function (no `endpoint`): Deepgram asks us to run it."""

    name: str
    description: str
    parameters: dict[str, Any]


class Think(msgspec.Struct, frozen=True, kw_only=True):
    provider: ThinkProvider
    prompt: str
    functions: tuple[FunctionSpec, ...] = ()


class SpeakProvider(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "deepgram"
    model: str


class Speak(msgspec.Struct, frozen=True, kw_only=True):
    provider: SpeakProvider


class SettingsAgent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`AgentSettings.agent`; `greeting` is left out entirely when there is none."""

    listen: Listen
    think: Think
    speak: Speak
    greeting: str | UnsetType = UNSET


class AgentSettings(_Client, tag="Settings", kw_only=True, frozen=True):
    """The `Settings` message: sent exactly once, after `Welcome`; audio must wait for
    `SettingsApplied`. (Named `AgentSettings` here so it is never mistaken for the
    runtime's `boba_runtime.config.settings.Settings`, what a process is started with.)"""

    audio: AudioConfig
    agent: SettingsAgent


class FunctionCallResponse(_Client, kw_only=True, frozen=True):
    """The answer to one client-side call; `content` is a JSON string (CONTRACT §5: has `ok`)."""

    id: str
    name: str
    content: str


class KeepAlive(_Client, kw_only=True, frozen=True):
    """Sent when no audio has flowed for a while, so the agent does not time us out."""


class InjectAgentMessage(_Client, omit_defaults=True, kw_only=True, frozen=True):
    """Make the agent say `message` (the field is `message`, not `content`, in v1)."""

    message: str
    behavior: Literal["default", "queue", "interrupt"] | UnsetType = UNSET


class InjectUserMessage(_Client, kw_only=True, frozen=True):
    """Make the agent respond as if the caller said `content` (used for DTMF digits)."""

    content: str


class UpdatePrompt(_Client, kw_only=True, frozen=True):
    """Adds to the think prompt mid-session; acked with `PromptUpdated`."""

    prompt: str


AgentClientMessage = (
    AgentSettings
    | FunctionCallResponse
    | KeepAlive
    | InjectAgentMessage
    | InjectUserMessage
    | UpdatePrompt
)


class AudioProfile(enum.Enum):
    """What audio crosses the agent socket (`BOBA_AUDIO`, CONTRACT §2)."""

    LINEAR16 = "linear16"
    MULAW = "mulaw"

    @property
    def input_encoding(self) -> str:
        return self.value

    @property
    def output_encoding(self) -> str:
        return self.value

    @property
    def input_rate(self) -> int:
        """Caller audio rate sent to the agent (Hz)."""
        return 48000 if self is AudioProfile.LINEAR16 else 8000

    @property
    def output_rate(self) -> int:
        """Agent audio rate received from the agent (Hz)."""
        return 24000 if self is AudioProfile.LINEAR16 else 8000

    @property
    def sample_width(self) -> int:
        """Bytes per sample in both directions: 2 for linear16, 1 for μ-law."""
        return 2 if self is AudioProfile.LINEAR16 else 1

    def audio_config(self) -> AudioConfig:
        return AudioConfig(
            input=AudioInput(encoding=self.input_encoding, sample_rate=self.input_rate),
            output=AudioOutput(encoding=self.output_encoding, sample_rate=self.output_rate),
        )


KNOWN_THINK_PROVIDERS: Final = frozenset(
    {"open_ai", "anthropic", "google", "groq", "aws_bedrock", "deepgram", "x_ai"}
)


def build_settings(
    *,
    profile: AudioProfile,
    listen_model: str,
    think_provider: str,
    think_model: str,
    speak_model: str,
    prompt: str,
    functions: Sequence[FunctionSpec],
    greeting: str,
) -> AgentSettings:
    """The one `Settings` message of a call, from configuration data.

    Raises `InvalidAgentSetting` (a `LocalProtocolError` that names the field) for settings
    Deepgram would reject mid-call (unknown think provider, empty model names, a function
    without a description or an object schema, duplicate function names), so bad
    configuration fails at start, not on the phone.
    `functions` usually come from `menu.function_specs`; each schema is copied, so the
    caller's dicts stay theirs.
    """
    if think_provider not in KNOWN_THINK_PROVIDERS:
        raise InvalidAgentSetting(
            "think_provider",
            f"unknown think provider {think_provider!r}; expected one of "
            f"{', '.join(sorted(KNOWN_THINK_PROVIDERS))}"
        )
    for field, value in (
        ("listen_model", listen_model),
        ("think_model", think_model),
        ("speak_model", speak_model),
    ):
        if not value.strip():
            raise InvalidAgentSetting(field, f"the {field.replace('_', ' ')} must not be empty")
    seen: set[str] = set()
    for spec in functions:
        if spec.name in seen:
            raise InvalidAgentSetting("functions", f"function {spec.name!r} is declared twice")
        seen.add(spec.name)
        if not spec.description.strip():
            raise InvalidAgentSetting("functions", f"function {spec.name!r} needs a description")
        if spec.parameters.get("type") != "object":
            raise InvalidAgentSetting(
                "functions",
                f"function {spec.name!r}: parameters must be a JSON schema with type 'object'",
            )
    return AgentSettings(
        audio=profile.audio_config(),
        agent=SettingsAgent(
            listen=Listen(provider=ListenProvider(model=listen_model)),
            think=Think(
                provider=ThinkProvider(type=think_provider, model=think_model),
                prompt=prompt,
                functions=tuple(
                    FunctionSpec(
                        name=spec.name,
                        description=spec.description,
                        parameters=dict(spec.parameters),
                    )
                    for spec in functions
                ),
            ),
            speak=Speak(provider=SpeakProvider(model=speak_model)),
            greeting=greeting if greeting else UNSET,
        ),
    )


# ---------------------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------------------


class _Envelope(msgspec.Struct):
    """Only the tag, plus the keys that give away the retired early-access shapes."""

    type: str
    function_call_id: Any = None
    function_name: Any = None
    input: Any = None
    session_id: Any = None


_DECODER: Final[msgspec.json.Decoder[AgentMessage]] = msgspec.json.Decoder(AgentMessage)
_CLIENT_DECODER: Final[msgspec.json.Decoder[AgentClientMessage]] = msgspec.json.Decoder(
    AgentClientMessage
)
_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_ENCODER: Final = msgspec.json.Encoder()
_KNOWN_TYPES: Final = frozenset(str(cls.__struct_config__.tag) for cls in get_args(AgentMessage))

def _early_access_hint(envelope: _Envelope) -> str | None:
    if envelope.type == "FunctionCallRequest" and (
        envelope.function_call_id is not None
        or envelope.function_name is not None
        or envelope.input is not None
    ):
        return (
            "the agent sent a FunctionCallRequest in the retired early-access shape "
            "(flat `function_name`/`function_call_id`/`input`); Voice Agent v1 sends "
            "`functions: [{id, name, arguments, client_side}]`. Is the agent URL the old "
            "early-access endpoint instead of /v1/agent/converse?"
        )
    if envelope.type == "Welcome" and envelope.session_id is not None:
        return (
            "the agent sent an early-access Welcome (`session_id`, no `request_id`); "
            "this bridge speaks Voice Agent v1 (/v1/agent/converse)"
        )
    return None


def decode(frame: str | bytes) -> AgentMessage | UnknownAgentMessage:
    """Parse one JSON text frame from the agent.

    Returns a typed message, or `UnknownAgentMessage` for a type we don't know. Raises
    `RemoteProtocolError` (the agent's fault) for malformed JSON, a non-object, a missing
    or non-string `type`, a known type with a missing or mistyped field (the message names
    it as a JSON path), or the early-access function-call shape (the message says so).
    """
    data = as_bytes(frame, "the agent")
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        try:
            envelope = _ENVELOPE.decode(data)
        except (msgspec.DecodeError, RecursionError):
            raise RemoteProtocolError(
                f"the agent sent an invalid message: {explain(exc)}"
            ) from exc
        hint = _early_access_hint(envelope)
        if hint is not None:
            raise RemoteProtocolError(hint) from exc
        if envelope.type in _KNOWN_TYPES:
            raise RemoteProtocolError(
                f"the agent sent an invalid {envelope.type!r} message: {explain(exc)}"
            ) from exc
        return UnknownAgentMessage(type=envelope.type, raw=data)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"the agent sent malformed JSON: {exc}") from exc
    except RecursionError as exc:  # msgspec's depth guard, also hit while skipping fields
        raise RemoteProtocolError(f"the agent sent JSON nested too deeply: {exc}") from exc


def encode(msg: AgentClientMessage) -> str:
    """One client message as a JSON text frame."""
    return _ENCODER.encode(msg).decode("utf-8")


def decode_client(frame: str | bytes) -> AgentClientMessage:
    """Parse a frame *we* send to the agent; for fake agents and recordings.

    Raises `RemoteProtocolError` (from the fake's point of view the client is the peer).
    """
    data = as_bytes(frame, "the agent client")
    try:
        return _CLIENT_DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise RemoteProtocolError(f"invalid agent client message: {explain(exc)}") from exc


def encode_server(msg: AgentMessage) -> str:
    """A server message as the agent would send it; for fake agents and recordings."""
    return _ENCODER.encode(msg).decode("utf-8")
