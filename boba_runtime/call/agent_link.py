"""The agent side of a call: a WebSocket to the Deepgram Voice Agent (or anything speaking it).

`run_call` does not care what is behind the link: Deepgram, the fake agent of the tests,
or the built-in local agent (reached at `ws://127.0.0.1:{port}/agent/local`, or in-process
through any object with the same three methods). It only needs an `AgentConnector`: an
async context manager factory that yields an `AgentConnection` and closes it on exit.

The real connector is `open_agent_link`: trio-websocket, `Authorization: Token <key>` when
a key is set (no auth otherwise, for fakes and the local agent), a connect timeout, a
message-size cap, and a bounded close (CONTRACT §5: the agent socket is closed within 2 s
of the caller leaving). KeepAlive is a decision of the call core (it knows when audio last
flowed); this module only carries frames.

`check_think_model` is the start-up check of CONTRACT §2 (`boba serve` refuses to start
when Deepgram does not offer `BOBA_THINK_MODEL`).
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import trio
import trio_websocket

from boba_runtime.config.settings import DEEPGRAM_AGENT_URL as DEEPGRAM_AGENT_URL

log = logging.getLogger(__name__)

THINK_MODELS_PATH = "/v1/agent/settings/think/models"
CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 2.0
THINK_CHECK_TIMEOUT_S = 3.0


class AgentUnreachable(Exception):
    """The agent could not be reached: connection refused, timeout, rejected handshake."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgentClosed(Exception):
    """The agent socket is gone (closed by the agent, the network, or us)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgentConnection(Protocol):
    """What `run_call` needs from the agent side of a call."""

    async def receive(self) -> str | bytes:
        """The next message: `str` for JSON, `bytes` for audio; `AgentClosed` at the end."""
        ...

    async def send(self, data: str | bytes) -> None:
        """Send one message (text = JSON, bytes = audio); `AgentClosed` if the socket is gone."""
        ...

    async def aclose(self) -> None:
        """Close the link (idempotent, bounded in time)."""
        ...


AgentConnector = Callable[[], AbstractAsyncContextManager[AgentConnection]]
"""Opens one agent connection per call; raises `AgentUnreachable` when it cannot."""


class WebSocketAgentConnection:
    """An `AgentConnection` over a trio-websocket client connection."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, close_timeout: float) -> None:
        self._ws = ws
        self._close_timeout = close_timeout

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise AgentClosed(describe_close(exc.reason)) from None

    async def send(self, data: str | bytes) -> None:
        try:
            await self._ws.send_message(data)
        except trio_websocket.ConnectionClosed as exc:
            raise AgentClosed(describe_close(exc.reason)) from None

    async def aclose(self) -> None:
        # Shielded so a hang-up (a cancellation) still sends the close frame, but bounded.
        with trio.move_on_after(self._close_timeout, shield=True):
            await self._ws.aclose()


def describe_close(reason: trio_websocket.CloseReason | None) -> str:
    if reason is None:
        return "agent connection closed"
    text = f"agent closed the connection (code {reason.code}"
    return text + (f": {reason.reason})" if reason.reason else ")")


def auth_headers(api_key: str | None) -> list[tuple[bytes, bytes]]:
    """`Authorization: Token <key>` for Deepgram; nothing when no key is configured."""
    if not api_key:
        return []
    return [(b"Authorization", b"Token " + api_key.encode("ascii"))]


@asynccontextmanager
async def open_agent_link(
    url: str,
    *,
    api_key: str | None,
    max_message_bytes: int,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    close_timeout: float = CLOSE_TIMEOUT_S,
    verify_tls: bool = True,
) -> AsyncIterator[AgentConnection]:
    """Connect to the agent at `url`; close within `close_timeout` on exit (also on cancel).

    `verify_tls=False` is only for the local agent: our own server on a loopback address,
    whose certificate names the public host, not 127.0.0.1.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"ws", "wss"}:
        raise AgentUnreachable(f"agent URL must be ws:// or wss://, got {parts.scheme}://")
    failure: AgentUnreachable | None = None
    connected = False
    try:
        async with trio.open_nursery() as nursery:
            # The connection's reader task lives in this nursery; it ends with the block.
            try:
                with trio.fail_after(connect_timeout):
                    ws = await trio_websocket.connect_websocket_url(
                        nursery,
                        url,
                        ssl_context=_tls_context(verify_tls) if parts.scheme == "wss" else None,
                        extra_headers=auth_headers(api_key),
                        message_queue_size=16,
                        max_message_size=max_message_bytes,
                    )
            except (trio.TooSlowError, trio_websocket.HandshakeError, OSError) as exc:
                failure = _unreachable(exc, netloc=parts.netloc, connect_timeout=connect_timeout)
                nursery.cancel_scope.cancel()
            else:
                connected = True
                link = WebSocketAgentConnection(ws, close_timeout)
                try:
                    yield link
                finally:
                    await link.aclose()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Whatever the caller's block raised comes back alone, not wrapped by our nursery;
        # a rejected handshake surfaces here too (raised by the connection's reader task).
        sole = sole_exception(group)
        if not connected and isinstance(sole, trio_websocket.HandshakeError | OSError):
            raise _unreachable(sole, netloc=parts.netloc, connect_timeout=connect_timeout) from None
        raise sole from None
    if failure is not None:
        raise failure


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _unreachable(exc: BaseException, *, netloc: str, connect_timeout: float) -> AgentUnreachable:
    if isinstance(exc, trio.TooSlowError):
        return AgentUnreachable(f"agent did not answer within {connect_timeout:g} s")
    if isinstance(exc, trio_websocket.ConnectionRejected):
        hint = " (check DEEPGRAM_API_KEY)" if exc.status_code in (401, 403) else ""
        return AgentUnreachable(f"agent refused the connection: HTTP {exc.status_code}{hint}")
    if isinstance(exc, trio_websocket.HandshakeError):
        return AgentUnreachable(f"agent handshake failed: {exc!r}")
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return AgentUnreachable(f"cannot reach the agent at {netloc}: {why}")


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside (nested) single-member groups, else the group itself."""
    current: BaseException = group
    while isinstance(current, BaseExceptionGroup) and len(current.exceptions) == 1:
        current = current.exceptions[0]
    return current


def websocket_connector(
    url: str,
    *,
    api_key: str | None,
    max_message_bytes: int,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    close_timeout: float = CLOSE_TIMEOUT_S,
    verify_tls: bool = True,
) -> AgentConnector:
    """An `AgentConnector` that opens one WebSocket per call to `url`."""

    def connect() -> AbstractAsyncContextManager[AgentConnection]:
        return open_agent_link(
            url,
            api_key=api_key,
            max_message_bytes=max_message_bytes,
            connect_timeout=connect_timeout,
            close_timeout=close_timeout,
            verify_tls=verify_tls,
        )

    return connect


def local_agent_url(server_host: str, server_port: int, *, tls: bool = False) -> str:
    """Where `BOBA_AGENT_URL=local` lives: the `/agent/local` route of this very server."""
    host = server_host
    if host in {"", "0.0.0.0", "::"}:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'wss' if tls else 'ws'}://{host}:{server_port}/agent/local"


# --- the start-up check of BOBA_THINK_MODEL ------------------------------------------------


class ThinkModelUnavailable(Exception):
    """Deepgram's list of think models does not offer the configured one."""


def is_deepgram_url(agent_url: str) -> bool:
    return urlsplit(agent_url).hostname == urlsplit(DEEPGRAM_AGENT_URL).hostname


def think_models_url(agent_url: str) -> str:
    """The REST list of think models on the agent's host (`wss://h/...` → `https://h/...`)."""
    parts = urlsplit(agent_url)
    scheme = "https" if parts.scheme in {"wss", "https"} else "http"
    return urlunsplit((scheme, parts.netloc, THINK_MODELS_PATH, "", ""))


def fetch_think_models(url: str, api_key: str, timeout: float) -> list[dict[str, object]]:
    """GET the list (blocking: run it in a worker thread)."""
    request = urllib.request.Request(
        url, headers={"Authorization": f"Token {api_key}", "Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.loads(response.read().decode("utf-8"))
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise ValueError("the think-model list has no 'models' array")
    return [m for m in models if isinstance(m, dict)]


async def check_think_model(
    *,
    agent_url: str,
    api_key: str | None,
    provider: str,
    model: str,
    timeout: float = THINK_CHECK_TIMEOUT_S,
    fetch: Callable[[str, str, float], list[dict[str, object]]] = fetch_think_models,
) -> str | None:
    """Check BOBA_THINK_MODEL against Deepgram's list (CONTRACT §2).

    Returns `None` when the model is offered or the check does not apply (not Deepgram's
    URL, or no key), a warning sentence when the list could not be fetched (the caller
    logs it and starts anyway), and raises `ThinkModelUnavailable` naming the setting when
    Deepgram does not offer the model.
    """
    if not api_key or not is_deepgram_url(agent_url):
        return None
    url = think_models_url(agent_url)
    models: list[dict[str, object]] | None = None
    with trio.move_on_after(timeout):
        try:
            models = await trio.to_thread.run_sync(
                fetch, url, api_key, timeout, abandon_on_cancel=True
            )
        except (OSError, ValueError, urllib.error.URLError) as exc:
            return (
                f"could not fetch Deepgram's think-model list ({type(exc).__name__}); "
                "not checking BOBA_THINK_MODEL"
            )
    if models is None:
        return (
            f"Deepgram's think-model list did not answer within {timeout:g} s; "
            "not checking BOBA_THINK_MODEL"
        )
    problem = think_model_problem(models, provider=provider, model=model)
    if problem is not None:
        raise ThinkModelUnavailable(problem)
    return None


def think_model_problem(
    models: list[dict[str, object]], *, provider: str, model: str
) -> str | None:
    """None when the list offers `model` for `provider`, else the sentence saying so
    (it starts with the setting's name). Shared by `boba serve` and `boba check`."""
    offered = [(str(m.get("provider", "")), str(m["id"])) for m in models if m.get("id")]
    if any(mid == model and (not prov or prov == provider) for prov, mid in offered):
        return None
    same_provider = sorted(mid for prov, mid in offered if prov == provider)
    choices = ", ".join(same_provider) if same_provider else "none"
    return (
        f"BOBA_THINK_MODEL: Deepgram does not offer {model!r} for provider {provider!r} "
        f"(offered for {provider}: {choices})"
    )
