"""Deepgram Voice Agent v1 wire types, checked against the official deepgram-sdk models.

The SDK's pydantic models accept unknown keys silently (`extra="allow"`), so every check
also walks the validated model and fails on any key the models do not declare.
"""

from __future__ import annotations

import importlib.resources
import json
import warnings
from pathlib import Path
from typing import Any

import pydantic
import pytest

from boba_proto import agent, menu
from boba_proto.agent import (
    AgentAudioDone,
    AgentError,
    AgentRole,
    AgentSettings,
    AgentStartedSpeaking,
    AgentThinking,
    AgentWarning,
    AudioProfile,
    CancelledFunction,
    ConversationText,
    FunctionCall,
    FunctionCallCancelled,
    FunctionCallRequest,
    FunctionCallResponse,
    FunctionCallResponseEcho,
    FunctionSpec,
    History,
    HistoryFunctionCall,
    InjectAgentMessage,
    InjectionRefused,
    InjectUserMessage,
    KeepAlive,
    LatencyReport,
    PromptUpdated,
    SettingsApplied,
    SpeakUpdated,
    UnknownAgentMessage,
    UpdatePrompt,
    UserStartedSpeaking,
    Welcome,
)
from boba_proto.errors import LocalProtocolError, RemoteProtocolError

with warnings.catch_warnings():
    # deepgram-sdk imports `websockets.legacy`, which warns on import; not our concern.
    warnings.simplefilter("ignore", DeprecationWarning)
    from deepgram.agent.v1 import (
        AgentV1InjectAgentMessage,
        AgentV1InjectUserMessage,
        AgentV1KeepAlive,
        AgentV1SendFunctionCallResponse,
        AgentV1Settings,
        AgentV1UpdatePrompt,
    )
    from deepgram.agent.v1.socket_client import V1SocketClientResponse

DATA = Path(__file__).parent / "data"
SERVER_V1 = [
    line for line in (DATA / "agent-server-v1.jsonl").read_text().splitlines() if line.strip()
]
SERVER_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(V1SocketClientResponse)

CLIENT_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "Settings": AgentV1Settings,
    "FunctionCallResponse": AgentV1SendFunctionCallResponse,
    "KeepAlive": AgentV1KeepAlive,
    "InjectAgentMessage": AgentV1InjectAgentMessage,
    "InjectUserMessage": AgentV1InjectUserMessage,
    "UpdatePrompt": AgentV1UpdatePrompt,
}


# --- the undeclared-key walker --------------------------------------------------------


def undeclared_keys(value: object, path: str = "$") -> list[str]:
    """Every key the SDK models accepted only as `model_extra` (i.e. do not declare)."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found += [f"{path}.{key}" for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += undeclared_keys(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found += undeclared_keys(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        # Free-form dicts (a function's JSON-schema `parameters`) hold no models, so
        # their keys are data, not schema; only models nested inside are walked.
        for key, item in value.items():
            found += undeclared_keys(item, f"{path}.{key}")
    return found


def validate_client_frame(frame: str) -> pydantic.BaseModel:
    """Validate one outbound frame with the SDK model for its type; fail on undeclared keys."""
    obj = json.loads(frame)
    model = CLIENT_MODELS[obj["type"]].model_validate(obj)
    assert undeclared_keys(model) == []
    return model


def _settings(profile: AudioProfile = AudioProfile.LINEAR16, **overrides: Any) -> AgentSettings:
    args: dict[str, Any] = {
        "profile": profile,
        "listen_model": "nova-3",
        "think_provider": "google",
        "think_model": "gemini-3.5-flash",
        "speak_model": "aura-2-odysseus-en",
        "prompt": "You take boba orders.",
        "functions": [
            FunctionSpec(
                name="get_cart",
                description="Read the cart.",
                parameters={"type": "object", "properties": {}},
            )
        ],
        "greeting": "Hey! I am your Deepgram BobaRista. What would you like to order?",
    }
    args.update(overrides)
    return agent.build_settings(**args)


def _builtin_menu() -> menu.Menu:
    text = importlib.resources.files("boba_proto").joinpath("menu.toml").read_text()
    return menu.parse_menu(text, source="menu.toml")


# --- outbound messages against the SDK ------------------------------------------------


@pytest.mark.parametrize("profile", list(AudioProfile))
def test_settings_validate_against_the_sdk(profile: AudioProfile) -> None:
    model = validate_client_frame(agent.encode(_settings(profile)))
    assert isinstance(model, AgentV1Settings)


def test_settings_with_the_real_menu_functions_validate_against_the_sdk() -> None:
    shop = _builtin_menu()
    settings = _settings(functions=menu.function_specs(shop), prompt=menu.build_prompt(shop))
    validate_client_frame(agent.encode(settings))
    assert {f.name for f in settings.agent.think.functions} >= {"add_to_cart", "end_call"}


@pytest.mark.parametrize(
    "msg",
    [
        FunctionCallResponse(id="fc_1", name="get_cart", content='{"ok": true, "items": []}'),
        KeepAlive(),
        InjectAgentMessage(message="One moment while I check."),
        InjectAgentMessage(message="Still there?", behavior="queue"),
        InjectUserMessage(content="The caller typed 4 1 5 5 5 5 1 2 3 4"),
        UpdatePrompt(prompt="Also offer extra ice."),
    ],
    ids=lambda m: type(m).__name__,
)
def test_control_messages_validate_against_the_sdk(msg: agent.AgentClientMessage) -> None:
    validate_client_frame(agent.encode(msg))


def test_walker_catches_an_undeclared_key() -> None:
    obj = json.loads(agent.encode(_settings()))
    obj["agent"]["think"]["instructions"] = "early-access name of the prompt"
    obj["audio"]["output"]["bitrate_kbps"] = 64
    model = AgentV1Settings.model_validate(obj)  # the SDK alone lets both through
    assert sorted(undeclared_keys(model)) == [
        "$.agent.think.instructions",
        "$.audio.output.bitrate_kbps",
    ]


def test_walker_does_not_flag_json_schema_keys() -> None:
    spec = FunctionSpec(
        name="f",
        description="d",
        parameters={"type": "object", "properties": {"x": {"type": "string", "enum": ["a"]}}},
    )
    model = AgentV1Settings.model_validate(json.loads(agent.encode(_settings(functions=[spec]))))
    assert undeclared_keys(model) == []


def test_sdk_rejects_the_wrong_inject_field() -> None:
    """Shows the SDK check has teeth: `content` instead of `message` is refused."""
    with pytest.raises(pydantic.ValidationError):
        AgentV1InjectAgentMessage.model_validate({"type": "InjectAgentMessage", "content": "x"})


# --- Settings built from data ---------------------------------------------------------


def test_linear16_profile_on_the_wire() -> None:
    wire = json.loads(agent.encode(_settings(AudioProfile.LINEAR16)))
    assert wire["type"] == "Settings"
    assert wire["audio"] == {
        "input": {"encoding": "linear16", "sample_rate": 48000},
        "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
    }


def test_mulaw_profile_on_the_wire() -> None:
    wire = json.loads(agent.encode(_settings(AudioProfile.MULAW)))
    assert wire["audio"] == {
        "input": {"encoding": "mulaw", "sample_rate": 8000},
        "output": {"encoding": "mulaw", "sample_rate": 8000, "container": "none"},
    }


def test_providers_prompt_functions_and_greeting_on_the_wire() -> None:
    wire = json.loads(agent.encode(_settings()))["agent"]
    assert wire["listen"] == {"provider": {"type": "deepgram", "version": "v1", "model": "nova-3"}}
    assert wire["think"]["provider"] == {"type": "google", "model": "gemini-3.5-flash"}
    assert wire["think"]["prompt"] == "You take boba orders."
    assert wire["think"]["functions"] == [
        {
            "name": "get_cart",
            "description": "Read the cart.",
            "parameters": {"type": "object", "properties": {}},
        }
    ]
    assert "endpoint" not in wire["think"]["functions"][0]  # client-side
    assert wire["speak"] == {"provider": {"type": "deepgram", "model": "aura-2-odysseus-en"}}
    assert wire["greeting"].startswith("Hey! I am your Deepgram BobaRista.")


def test_empty_greeting_is_left_out() -> None:
    wire = json.loads(agent.encode(_settings(greeting="")))
    assert "greeting" not in wire["agent"]


def test_audio_profile_rates() -> None:
    assert (AudioProfile.LINEAR16.input_rate, AudioProfile.LINEAR16.output_rate) == (48000, 24000)
    assert (AudioProfile.MULAW.input_rate, AudioProfile.MULAW.output_rate) == (8000, 8000)
    assert (AudioProfile.LINEAR16.sample_width, AudioProfile.MULAW.sample_width) == (2, 1)
    assert AudioProfile("mulaw") is AudioProfile.MULAW


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"think_provider": "openai"}, "unknown think provider 'openai'"),
        ({"think_model": " "}, "think model"),
        ({"listen_model": ""}, "listen model"),
        (
            {"functions": [FunctionSpec(name="f", description="", parameters={"type": "object"})]},
            "needs a description",
        ),
        (
            {"functions": [FunctionSpec(name="f", description="d", parameters={})]},
            "type 'object'",
        ),
        (
            {
                "functions": [
                    FunctionSpec(name="f", description="d", parameters={"type": "object"}),
                    FunctionSpec(name="f", description="e", parameters={"type": "object"}),
                ]
            },
            "declared twice",
        ),
    ],
)
def test_bad_settings_are_our_fault(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        _settings(**overrides)
    assert needle in info.value.message


@pytest.mark.parametrize(
    "msg",
    [
        _settings(),
        FunctionCallResponse(id="a", name="b", content="{}"),
        KeepAlive(),
        InjectAgentMessage(message="m", behavior="interrupt"),
        InjectUserMessage(content="c"),
        UpdatePrompt(prompt="p"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_client_messages_round_trip_for_fakes(msg: agent.AgentClientMessage) -> None:
    assert agent.decode_client(agent.encode(msg)) == msg


def test_decode_client_rejects_the_early_access_response() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        agent.decode_client(
            '{"type": "FunctionCallResponse", "function_call_id": "1", "output": "x"}'
        )
    assert "`$.id`" in info.value.message


# --- server messages ------------------------------------------------------------------


EXPECTED_SERVER = [
    Welcome(request_id="fc553ec9-5874-49ca-a47c-b670d525a4b1"),
    SettingsApplied(),
    ConversationText(
        role="assistant", content="Hey! I am your Deepgram BobaRista. What would you like to order?"
    ),
    UserStartedSpeaking(),
    ConversationText(role="user", content="Can I get a taro milk tea with boba?"),
    AgentThinking(content="The caller wants a taro milk tea with boba."),
    FunctionCallRequest(
        functions=[
            FunctionCall(
                id="fc_1",
                name="add_to_cart",
                arguments='{"flavor": "taro milk tea", "toppings": ["boba"]}',
                client_side=True,
            )
        ]
    ),
    FunctionCallCancelled(functions=[CancelledFunction(id="fc_1", name="add_to_cart")]),
    FunctionCallResponseEcho(id="fc_9", name="server_side_lookup", content='{"ok": true}'),
    AgentStartedSpeaking(total_latency=1.21, tts_latency=0.31, ttt_latency=0.9),
    LatencyReport(stt_latency=0.2, tts_latency=0.31, total_latency=1.21),
    AgentAudioDone(),
    PromptUpdated(),
    SpeakUpdated(),
    InjectionRefused(message="Cannot inject while the user is speaking."),
    History(role="user", content="Can I get a taro milk tea with boba?"),
    History(
        function_calls=[
            HistoryFunctionCall(
                id="fc_2",
                name="get_cart",
                client_side=True,
                arguments="{}",
                response='{"ok": true, "items": []}',
            )
        ]
    ),
    AgentWarning(description="Prompt was truncated.", code="PROMPT_TOO_LONG"),
    AgentError(
        description="We waited too long for a websocket message. Please ensure that you're "
        "sending binary messages containing user speech.",
        code="CLIENT_MESSAGE_TIMEOUT",
    ),
]


def test_server_fixtures_are_valid_v1_per_the_sdk() -> None:
    for line in SERVER_V1:
        assert undeclared_keys(SERVER_ADAPTER.validate_python(json.loads(line))) == [], line


def test_server_fixtures_decode_to_typed_messages() -> None:
    assert [agent.decode(line) for line in SERVER_V1] == EXPECTED_SERVER


def test_every_server_type_is_covered_by_a_fixture() -> None:
    covered = {type(m) for m in EXPECTED_SERVER}
    assert covered == set(agent.AgentMessage.__args__)


def test_encode_server_output_is_valid_v1_and_round_trips() -> None:
    for msg in EXPECTED_SERVER:
        frame = agent.encode_server(msg)
        assert agent.decode(frame) == msg
        assert undeclared_keys(SERVER_ADAPTER.validate_python(json.loads(frame))) == [], frame


def test_roles_compare_as_plain_strings() -> None:
    text = agent.decode('{"type": "ConversationText", "role": "user", "content": "hi"}')
    assert isinstance(text, ConversationText)
    assert text.role == AgentRole.USER


def test_lenient_server_payloads() -> None:
    assert agent.decode('{"type": "AgentStartedSpeaking"}') == AgentStartedSpeaking()
    assert agent.decode('{"type": "InjectionRefused"}') == InjectionRefused()
    assert agent.decode('{"type": "Error", "message": "old style"}') == AgentError()
    assert agent.decode('{"type": "AgentThinking", "new": 1}') == AgentThinking()


def test_unknown_type_is_a_value_with_the_raw_frame() -> None:
    frame = b'{"type": "FrustrationDetected", "count": 2, "escalated": false}'
    assert agent.decode(frame) == UnknownAgentMessage(type="FrustrationDetected", raw=frame)


def test_early_access_function_call_is_rejected_clearly() -> None:
    frame = json.dumps(
        {
            "type": "FunctionCallRequest",
            "function_name": "add_to_cart",
            "function_call_id": "abc",
            "input": {"flavor": "taro milk tea"},
        }
    )
    with pytest.raises(RemoteProtocolError) as info:
        agent.decode(frame)
    assert "early-access" in info.value.message
    assert "function_call_id" in info.value.message


def test_early_access_welcome_is_rejected_clearly() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        agent.decode('{"type": "Welcome", "session_id": "s"}')
    assert "early-access" in info.value.message


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (
            '{"type": "FunctionCallRequest", "functions": '
            '[{"id": "1", "name": "f", "arguments": {}, "client_side": true}]}',
            "`$.functions[0].arguments`",
        ),
        (
            '{"type": "FunctionCallRequest", "functions": '
            '[{"name": "f", "arguments": "{}", "client_side": true}]}',
            "`$.functions[0].id`",
        ),
        (
            '{"type": "FunctionCallRequest", "functions": '
            '[{"id": "1", "name": "f", "arguments": "{}", "client_side": "yes"}]}',
            "`$.functions[0].client_side`",
        ),
        ('{"type": "FunctionCallRequest"}', "`$.functions`"),
        ('{"type": "Welcome"}', "`$.request_id`"),
        ('{"type": "ConversationText", "role": "user"}', "`$.content`"),
        ('{"type": "AgentStartedSpeaking", "total_latency": "fast"}', "`$.total_latency`"),
        ('{"type": "FunctionCallCancelled", "functions": [{}]}', "`$.functions[0].id`"),
        ('{"type": 5}', "`$.type`"),
        ('{"request_id": "x"}', "`$.type`"),
        ("[]", "Expected `object`"),
        ('{"type": "Welcome"', "malformed JSON"),
        (b"\x80", "malformed JSON"),
        ("\udfff", "not valid Unicode"),
    ],
)
def test_bad_server_messages_are_the_agents_fault(frame: str | bytes, needle: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        agent.decode(frame)
    assert needle in info.value.message
