"""A fake of Deepgram's REST list of think models (`GET /v1/agent/settings/think/models`).

A real HTTP server on 127.0.0.1 in a daemon thread. It checks `Authorization: Token <key>`
as Deepgram does (401 with Deepgram's error JSON otherwise) and answers `{"models": [...]}`
with `id`, `name`, `provider` per model. `status` makes it answer an error instead.
Point `BOBA_AGENT_URL` at `fake.agent_url` (ws://…, the list lives on the same host).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS: list[dict[str, str]] = [
    {"id": "gpt-4o-mini", "name": "GPT-4o mini", "provider": "open_ai"},
    {"id": "claude-4-5-haiku-latest", "name": "Claude Haiku 4.5", "provider": "anthropic"},
    {"id": "gemini-3.5-flash", "name": "Gemini 3.5 Flash", "provider": "google"},
    {"id": "gemini-3.5-pro", "name": "Gemini 3.5 Pro", "provider": "google"},
]
PATH = "/v1/agent/settings/think/models"


class FakeThinkModels:
    def __init__(self, *, api_key: str = "fake-deepgram-key",
                 models: list[dict[str, str]] | None = None) -> None:
        self.api_key = api_key
        self.models = list(MODELS if models is None else models)
        self.status: int | None = None  # e.g. 500: answer that instead of the list
        self.seen_keys: list[str | None] = []
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def agent_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent/converse"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeThinkModels:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeThinkModels


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        header = self.headers.get("Authorization")
        fake.seen_keys.append(header)
        if self.path.split("?", 1)[0] != PATH:
            self._answer(404, {"err_code": "NOT_FOUND", "err_msg": "Not found."})
        elif header != f"Token {fake.api_key}":
            self._answer(401, {
                "err_code": "INVALID_AUTH",
                "err_msg": "Invalid credentials.",
                "request_id": "00000000-0000-0000-0000-000000000000",
            })
        elif fake.status is not None:
            self._answer(fake.status, {"err_code": "INTERNAL", "err_msg": "Scripted failure."})
        else:
            self._answer(200, {"models": fake.models})

    def _answer(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
