"""A fake Deepgram Voice Agent: a real WebSocket server speaking the v1 protocol from a script.

Each connection gets a `FakeAgentSession`. The server sends `Welcome` at once, waits for
one `Settings` (validated with Deepgram's own SDK models: a shape Deepgram would reject
gets an `Error` and a close, like the real service), answers `SettingsApplied`, and then
runs the test's *script*: an async function that drives the conversation with the helpers
below (speak a reply with audio in the declared output format, request a function call and
wait for its response, signal barge-in, drop the connection, ...). Everything the bridge
sent is recorded per session for assertions.

    async def script(agent: FakeAgentSession) -> None:
        await agent.say("Hi! What would you like?", seconds=0.3)
        result = await agent.call_function("add_to_cart", {"flavor": "taro milk tea"})
        ...

    async with fake_agent_server(script) as server:   # server.url -> ws://127.0.0.1:PORT/agent
        ...
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pydantic
import trio
import trio_websocket
from deepgram.agent.v1 import (
    AgentV1InjectAgentMessage,
    AgentV1InjectUserMessage,
    AgentV1KeepAlive,
    AgentV1SendFunctionCallResponse,
    AgentV1Settings,
    AgentV1UpdatePrompt,
)

Script = Callable[["FakeAgentSession"], Awaitable[None]]

# Every FakeAgentServer a test creates, so tests/conftest.py can fail the test when a script
# raised or the bridge broke the protocol (a fake that swallows its findings proves nothing).
# Test-side bookkeeping only: cleared by the conftest hook before each test.
CREATED_SERVERS: list[FakeAgentServer] = []

_CLIENT_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "Settings": AgentV1Settings,
    "FunctionCallResponse": AgentV1SendFunctionCallResponse,
    "KeepAlive": AgentV1KeepAlive,
    "InjectUserMessage": AgentV1InjectUserMessage,
    "InjectAgentMessage": AgentV1InjectAgentMessage,
    "UpdatePrompt": AgentV1UpdatePrompt,
}


class AgentScriptError(AssertionError):
    """The bridge did not behave as the script expected."""


def _extra_keys(model: Any, path: str = "$") -> list[str]:
    """Keys Deepgram's models accepted only because they allow extras (typos, EA leftovers)."""
    found: list[str] = []
    if isinstance(model, pydantic.BaseModel):
        for key in model.model_extra or {}:
            found.append(f"{path}.{key}")
        for name in type(model).model_fields:
            if name == "parameters":  # a JSON Schema object: anything goes
                continue
            found += _extra_keys(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list | tuple):
        for i, item in enumerate(model):
            found += _extra_keys(item, f"{path}[{i}]")
    return found


def validate_client_message(data: dict[str, Any]) -> str | None:
    """None if Deepgram's SDK models accept `data` (and it has no unknown keys), else why not."""
    model_cls = _CLIENT_MODELS.get(str(data.get("type")))
    if model_cls is None:
        return f"unknown client message type {data.get('type')!r}"
    try:
        model = model_cls.model_validate(data)
    except pydantic.ValidationError as exc:
        return f"invalid {data.get('type')}: {exc.errors()[0]}"
    extra = _extra_keys(model)
    if extra:
        return f"unknown keys in {data.get('type')}: {', '.join(extra)}"
    return None


def tone(seconds: float, rate: int, encoding: str, hz: float = 440.0) -> bytes:
    """Agent speech stand-in in the declared output format (linear16 little-endian or μ-law)."""
    n = round(seconds * rate)
    samples = (8000 * np.sin(2 * math.pi * hz * np.arange(n) / rate)).astype("<i2")
    if encoding == "linear16":
        return samples.tobytes()
    if encoding == "mulaw":
        return _ulaw_encode(samples)
    raise AgentScriptError(f"the fake agent cannot speak {encoding!r}")


def _ulaw_encode(samples: np.ndarray) -> bytes:
    """G.711 μ-law (the textbook algorithm; the fake must not depend on the code under test)."""
    bias, clip = 0x84, 32635
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), clip) + bias
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


class FakeAgentSession:
    """One bridge connection as the fake agent sees it."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, headers: dict[str, str]) -> None:
        self.ws = ws
        self.headers = headers
        self.settings: dict[str, Any] | None = None
        self.received_json: list[dict[str, Any]] = []
        self.audio_bytes = 0
        self.audio_messages = 0
        self.audio_message_sizes: set[int] = set()
        self.keepalives = 0
        self.injected_user: list[str] = []
        self.function_responses: dict[str, dict[str, Any]] = {}
        self.protocol_errors: list[str] = []
        self.settings_applied_at: float | None = None  # trio time SettingsApplied was sent
        self.client_side_ids: set[str] = set()  # requested client-side calls (may be answered)
        self.cancelled_ids: set[str] = set()  # FunctionCallCancelled: must never be answered
        self.closed = trio.Event()
        self.close_time: float | None = None
        self._ids = itertools.count(1)
        self._response_arrived = trio.Event()
        self._audio_arrived = trio.Event()
        self._injected = trio.Event()

    # --- what the bridge declared --------------------------------------------------------

    @property
    def output_encoding(self) -> str:
        assert self.settings is not None
        return str(self.settings["audio"]["output"]["encoding"])

    @property
    def output_rate(self) -> int:
        assert self.settings is not None
        return int(self.settings["audio"]["output"]["sample_rate"])

    @property
    def input_rate(self) -> int:
        assert self.settings is not None
        return int(self.settings["audio"]["input"]["sample_rate"])

    @property
    def input_encoding(self) -> str:
        assert self.settings is not None
        return str(self.settings["audio"]["input"]["encoding"])

    @property
    def function_names(self) -> list[str]:
        assert self.settings is not None
        return [f["name"] for f in self.settings["agent"]["think"].get("functions", [])]

    def input_seconds(self) -> float:
        """Seconds of caller audio received so far (by the declared input format)."""
        width = 2 if self.input_encoding == "linear16" else 1
        return self.audio_bytes / (width * self.input_rate)

    # --- sending ------------------------------------------------------------------------------

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    async def say(self, text: str, *, seconds: float = 0.3, chunk_seconds: float = 0.1) -> None:
        """One agent turn: AgentStartedSpeaking, the text, audio in chunks, AgentAudioDone."""
        await self.send_json(
            {
                "type": "AgentStartedSpeaking",
                "total_latency": 0.5,
                "tts_latency": 0.1,
                "ttt_latency": 0.4,
            }
        )
        await self.send_json({"type": "ConversationText", "role": "assistant", "content": text})
        await self.send_audio(seconds, chunk_seconds=chunk_seconds)
        await self.send_json({"type": "AgentAudioDone"})

    async def send_audio(self, seconds: float, *, chunk_seconds: float = 0.1) -> None:
        audio = tone(seconds, self.output_rate, self.output_encoding)
        width = 2 if self.output_encoding == "linear16" else 1
        step = max(width, round(chunk_seconds * self.output_rate) * width)
        for start in range(0, len(audio), step):
            await self.ws.send_message(audio[start : start + step])

    async def user_says(self, text: str) -> None:
        """What Deepgram sends when it hears the caller: barge-in signal, then the transcript."""
        await self.send_json({"type": "UserStartedSpeaking"})
        await self.send_json({"type": "ConversationText", "role": "user", "content": text})

    async def call_function(
        self, name: str, arguments: dict[str, Any] | None = None, *, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Request one client-side function and return its decoded result."""
        [call_id] = await self.request_functions((name, arguments))
        return await self.function_result(call_id, timeout=timeout)

    async def request_functions(
        self, *calls: tuple[str, dict[str, Any] | None], client_side: bool | list[bool] = True
    ) -> list[str]:
        """One `FunctionCallRequest` holding several functions (Deepgram may batch them);
        `client_side` False for the ones Deepgram runs itself. Their ids, in order."""
        sides = client_side if isinstance(client_side, list) else [client_side] * len(calls)
        functions = []
        for (name, arguments), side in zip(calls, sides, strict=True):
            call_id = f"fc_{next(self._ids)}_{name}"
            if side:
                self.client_side_ids.add(call_id)
            functions.append({"id": call_id, "name": name,
                              "arguments": json.dumps(arguments or {}), "client_side": side})
        await self.send_json({"type": "FunctionCallRequest", "functions": functions})
        return [function["id"] for function in functions]

    async def cancel_functions(self, *call_ids: str) -> None:
        """`FunctionCallCancelled`: the caller kept talking, those calls are void."""
        self.cancelled_ids.update(call_ids)
        await self.send_json({
            "type": "FunctionCallCancelled",
            "functions": [{"id": call_id, "name": call_id.split("_", 2)[2]}
                          for call_id in call_ids],
        })

    async def server_side_result(self, call_id: str, content: dict[str, Any]) -> None:
        """Deepgram's echo of a function it ran itself (`client_side: false`)."""
        await self.send_json({"type": "FunctionCallResponse", "id": call_id,
                              "name": call_id.split("_", 2)[2], "content": json.dumps(content)})

    async def history(self, role: str | None = None, content: str | None = None, *,
                      function_calls: list[dict[str, Any]] | None = None) -> None:
        """A `History` message (sent by default, `flags.history`): a turn or function calls."""
        if function_calls is not None:
            await self.send_json({"type": "History", "function_calls": function_calls})
        else:
            await self.send_json({"type": "History", "role": role, "content": content})

    async def warning(self, code: str, description: str) -> None:
        """A non-fatal `Warning`; the call goes on."""
        await self.send_json({"type": "Warning", "code": code, "description": description})

    async def function_result(self, call_id: str, *, timeout: float = 5.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while call_id not in self.function_responses:
                if self.closed.is_set():
                    raise AgentScriptError(f"bridge closed before answering {call_id}")
                self._response_arrived = trio.Event()
                await self._response_arrived.wait()
        result: dict[str, Any] = json.loads(self.function_responses[call_id]["content"])
        return result

    async def wait_audio(self, seconds: float, *, timeout: float = 10.0) -> None:
        """Wait until the bridge has forwarded `seconds` of caller audio in total."""
        with trio.fail_after(timeout):
            while self.input_seconds() < seconds:
                if self.closed.is_set():
                    raise AgentScriptError("bridge closed while the agent was listening")
                self._audio_arrived = trio.Event()
                await self._audio_arrived.wait()

    async def wait_injected(self, count: int = 1, *, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            while len(self.injected_user) < count:
                if self.closed.is_set():
                    raise AgentScriptError("bridge closed before the caller's words arrived")
                self._injected = trio.Event()
                await self._injected.wait()

    async def error(self, code: str, description: str) -> None:
        """A fatal agent error, then the close Deepgram does after one."""
        await self.send_json({"type": "Error", "code": code, "description": description})
        await self.ws.aclose(code=1011, reason=code)

    async def drop(self) -> None:
        """Vanish mid-call (a network failure or a crash on the agent side)."""
        await self.ws.aclose(code=1011, reason="fake agent dropped the call")

    async def wait_closed(self, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            await self.closed.wait()

    # --- receiving -------------------------------------------------------------------------

    async def _reader(self) -> None:
        try:
            while True:
                message = await self.ws.get_message()
                if isinstance(message, bytes):
                    if self.settings is None:
                        self.protocol_errors.append("audio before Settings")
                    elif self.settings_applied_at is None and not self.audio_messages:
                        self.protocol_errors.append("audio before SettingsApplied")
                    self.audio_bytes += len(message)
                    self.audio_messages += 1
                    self.audio_message_sizes.add(len(message))
                    self._audio_arrived.set()
                    continue
                data = json.loads(message)
                problem = validate_client_message(data)
                if problem is not None:
                    self.protocol_errors.append(problem)
                    await self.send_json(
                        {
                            "type": "Error",
                            "code": "UNPARSABLE_CLIENT_MESSAGE",
                            "description": problem,
                        }
                    )
                    continue
                self.received_json.append(data)
                kind = data["type"]
                if kind == "KeepAlive":
                    self.keepalives += 1
                elif kind == "FunctionCallResponse":
                    if data["id"] in self.function_responses:
                        self.protocol_errors.append(f"second response for {data['id']}")
                    if data["id"] in self.cancelled_ids:
                        self.protocol_errors.append(f"response for cancelled {data['id']}")
                    elif data["id"] not in self.client_side_ids:
                        self.protocol_errors.append(
                            f"response for {data['id']}, never requested client-side")
                    self.function_responses[data["id"]] = data
                    self._response_arrived.set()
                elif kind == "InjectUserMessage":
                    if self.settings_applied_at is None:
                        self.protocol_errors.append("InjectUserMessage before SettingsApplied")
                    self.injected_user.append(data["content"])
                    self._injected.set()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            self.close_time = trio.current_time()
            self.closed.set()
            self._response_arrived.set()
            self._audio_arrived.set()
            self._injected.set()

    async def _handshake(self, settings_timeout: float) -> bool:
        await self.send_json({"type": "Welcome", "request_id": "fake-request-id"})
        with trio.move_on_after(settings_timeout):
            message = await self.ws.get_message()
            data = json.loads(message) if isinstance(message, str) else {"type": "<binary>"}
            problem = (
                validate_client_message(data)
                if data.get("type") == "Settings"
                else f"first message was {data.get('type')!r}, not Settings"
            )
            if problem is not None:
                self.protocol_errors.append(problem)
                await self.send_json(
                    {"type": "Error", "code": "INVALID_SETTINGS", "description": problem}
                )
                return False
            self.settings = data
            self.received_json.append(data)
            return True
        self.protocol_errors.append("no Settings within the timeout")
        return False


class FakeAgentServer:
    """The listening fake; `sessions` in connection order."""

    def __init__(
        self, script: Script, *, greeting_seconds: float, path: str,
        settings_applied_delay: float = 0.0,
    ) -> None:
        self.script = script
        self.greeting_seconds = greeting_seconds
        # Deepgram takes a while to apply Settings (model start-up); audio must wait.
        self.settings_applied_delay = settings_applied_delay
        self.path = path
        self.port = 0
        self.sessions: list[FakeAgentSession] = []
        self.rejected = 0
        self.reject_with: int | None = None  # set to e.g. 401 to refuse handshakes
        self.script_errors: list[BaseException] = []
        self.results: list[dict[str, Any]] = []
        # Problems a test provoked on purpose (e.g. a bad Settings) and has checked itself.
        self.expected_protocol_errors: list[str] = []
        CREATED_SERVERS.append(self)

    def problems(self) -> list[str]:
        """Script failures (with their tracebacks) and unexpected protocol errors."""
        import traceback

        found = [
            "fake agent script raised:\n" + "".join(traceback.format_exception(error)).rstrip()
            for error in self.script_errors
        ]
        for index, session in enumerate(self.sessions):
            found += [
                f"fake agent session {index}: protocol error: {error}"
                for error in session.protocol_errors
                if error not in self.expected_protocol_errors
            ]
        return found

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    async def handle(self, request: trio_websocket.WebSocketRequest) -> None:
        if self.reject_with is not None:
            self.rejected += 1
            await request.reject(self.reject_with)
            return
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        ws = await request.accept()
        session = FakeAgentSession(ws, headers)
        self.sessions.append(session)
        async with trio.open_nursery() as nursery:
            try:
                # Longer than the bridge's pre-open window (an agent link opened while
                # /voice is answered is closed unused after 5 s if no stream takes it; a close
                # before Settings is fine, a link held open without Settings is not).
                if not await session._handshake(settings_timeout=15.0):
                    await ws.aclose(code=1008, reason="bad settings")
                    return
            except trio_websocket.ConnectionClosed:
                session.closed.set()  # the bridge left before sending Settings
                return
            nursery.start_soon(session._reader)
            try:
                await trio.sleep(self.settings_applied_delay)
                await session.send_json({"type": "SettingsApplied"})
                session.settings_applied_at = trio.current_time()
                greeting = session.settings["agent"].get("greeting") if session.settings else None
                if greeting:
                    await session.say(greeting, seconds=self.greeting_seconds)
                await self.script(session)
            except trio_websocket.ConnectionClosed:
                pass
            except Exception as exc:  # kept for the test to look at (one call's failure
                self.script_errors.append(exc)  # must not take the other calls down)
            finally:
                # The script is done: keep listening until the bridge hangs up.
                await session.closed.wait()


async def idle_script(agent: FakeAgentSession) -> None:
    """Listen until the bridge hangs up."""
    await agent.closed.wait()


@asynccontextmanager
async def fake_agent_server(
    script: Script = idle_script,
    *,
    greeting_seconds: float = 0.2,
    path: str = "/v1/agent/converse",
    settings_applied_delay: float = 0.0,
) -> AsyncIterator[FakeAgentServer]:
    server = FakeAgentServer(script, greeting_seconds=greeting_seconds, path=path,
                             settings_applied_delay=settings_applied_delay)
    async with trio.open_nursery() as nursery:
        ws_server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                server.handle,
                "127.0.0.1",
                0,
                None,
                max_message_size=1 << 20,
                task_status=task_status,
            )
        )
        server.port = ws_server.port
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
