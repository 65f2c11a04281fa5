"""The floor `boba bench --baseline` measures us against: a bare relay, same libraries.

Hypercorn (trio worker) + Quart-Trio for `/voice` and `WS /twilio`, trio-websocket for the
agent leg, msgspec for JSON: the stack `boba serve` is built on, with none of its work —
no protocol core, no resampling (μ-law 8 kHz both ways), no store, no signatures, no
metrics. It still does what the contract makes any bridge do on the wire, so the two carry
the same bytes: caller audio to the agent in 40 ms messages, agent audio to Twilio in
μ-law messages of at most 100 ms in multiples of 160 bytes (the last one padded with
silence at `AgentAudioDone`), and a `mark` after each utterance.

What our server costs above this floor is what the core, the DSP and the bookkeeping
cost; the ratio survives a noisy machine better than absolute figures do.

    python -m boba_runtime.cli.bench_baseline --agent-url ws://127.0.0.1:PORT/v1/agent/converse
"""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

import msgspec
import trio
import trio_websocket
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request, websocket
from quart_trio import QuartTrio

BANNER = "Baseline relay is open on"
FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
CALLER_BATCH = 2 * FRAME_BYTES  # 40 ms messages to the agent
MAX_TWILIO_BYTES = 5 * FRAME_BYTES  # 100 ms messages to Twilio
MULAW_SILENCE = b"\xff"

_json = msgspec.json.Decoder()
_encode = msgspec.json.encode


def _settings() -> bytes:
    """The smallest Settings a Voice Agent accepts, μ-law 8 kHz both ways."""
    return _encode({
        "type": "Settings",
        "audio": {"input": {"encoding": "mulaw", "sample_rate": 8000},
                  "output": {"encoding": "mulaw", "sample_rate": 8000, "container": "none"}},
        "agent": {"listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
                  "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini"}},
                  "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
                  "greeting": "Hello."},
    })


def create_relay(agent_url: str) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/voice")
    async def voice() -> Response:
        # Read the form, as any webhook does: a response sent before Hypercorn has the
        # whole body leaves the kept-alive connection unusable (the driver's next /voice
        # on it waited for its 10 s timeout: a "ReadTimeout" baseline call under load).
        await request.get_data()
        url = f"ws://{request.host}/twilio"
        twiml = ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
                 f'<Stream url="{url}"><Parameter name="token" value="baseline"/>'
                 "</Stream></Connect></Response>")
        return Response(twiml, content_type="text/xml")

    @app.websocket("/twilio")
    async def twilio() -> None:
        stream_sid = ""
        while not stream_sid:
            event: Any = _json.decode(await websocket.receive())
            if event.get("event") == "start":
                stream_sid = event["streamSid"]
        async with trio_websocket.open_websocket_url(agent_url) as agent:
            await agent.get_message()  # Welcome
            await agent.send_message(_settings().decode())
            while True:
                message = await agent.get_message()
                if isinstance(message, str) and '"SettingsApplied"' in message:
                    break
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_agent_to_twilio, agent, stream_sid)
                await _twilio_to_agent(agent)
                nursery.cancel_scope.cancel()

    return app


async def _twilio_to_agent(agent: trio_websocket.WebSocketConnection) -> None:
    pending = bytearray()
    while True:
        event: Any = _json.decode(await websocket.receive())
        kind = event.get("event")
        if kind == "media":
            pending += base64.b64decode(event["media"]["payload"])
            if len(pending) >= CALLER_BATCH:
                await agent.send_message(bytes(pending))
                pending.clear()
        elif kind == "stop":
            return


async def _agent_to_twilio(agent: trio_websocket.WebSocketConnection, stream_sid: str) -> None:
    pending = bytearray()
    marks = 0

    async def send_media(audio: bytes) -> None:
        for at in range(0, len(audio), MAX_TWILIO_BYTES):
            payload = base64.b64encode(audio[at:at + MAX_TWILIO_BYTES]).decode()
            await websocket.send(_encode({"event": "media", "streamSid": stream_sid,
                                          "media": {"payload": payload}}).decode())

    while True:
        message = await agent.get_message()
        if isinstance(message, bytes):
            pending += message
            whole = len(pending) - len(pending) % FRAME_BYTES
            if whole:
                await send_media(bytes(pending[:whole]))
                del pending[:whole]
        elif '"AgentAudioDone"' in message:
            if pending:
                pending += MULAW_SILENCE * (FRAME_BYTES - len(pending))
                await send_media(bytes(pending))
                pending.clear()
            marks += 1
            await websocket.send(_encode({"event": "mark", "streamSid": stream_sid,
                                          "mark": {"name": f"utt-{marks}"}}).decode())


async def _main(host: str, port: int, agent_url: str) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"  # tracebacks to stderr: the bench keeps them in its log file
    config.websocket_max_message_size = 65536
    app = create_relay(agent_url)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serve, app, config)
        print(f"{BANNER} {binds[0]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boba_runtime.cli.bench_baseline")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--agent-url", required=True)
    options = parser.parse_args(argv)
    try:
        trio.run(_main, options.host, options.port, options.agent_url)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
