"""The agent side of a call: a WebSocket to the Deepgram Voice Agent (or anything speaking it).

`run_call` does not care what is behind the link: Deepgram, the fake agent of the tests,
or the built-in local agent (reached at `ws://127.0.0.1:{port}/agent/local`, or in-process
through any object with the same three methods). It only needs an `AgentConnector`: an
async context manager factory that yields an `AgentConnection` and closes it on exit.

The real connector is `open_agent_link`: the `websockets` package's sans-I/O protocol over
a trio stream, read by the call's own agent task (no reader task, no channel per frame),
`Authorization: Token <key>` when a key is set (no auth otherwise, for fakes and the
local agent), a connect timeout, a
message-size cap, and a bounded close (CONTRACT §5: the agent socket is closed within 2 s
of the caller leaving). KeepAlive is a decision of the call core (it knows when audio last
flowed); this module only carries frames.

`check_think_model` is the start-up check of CONTRACT §2 (`boba serve` refuses to start
when Deepgram does not offer `BOBA_THINK_MODEL`).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import urllib.error
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit, urlunsplit

import trio
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from boba_runtime.config.settings import DEEPGRAM_AGENT_URL as DEEPGRAM_AGENT_URL

log = logging.getLogger(__name__)

THINK_MODELS_PATH = "/v1/agent/settings/think/models"
CLOSE_NORMAL = 1000
CLOSE_INVALID_DATA = 1007
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


RECEIVE_BYTES = 65536
"""The most one socket read asks the kernel for."""


class DirectAgentConnection:
    """An `AgentConnection` that reads its socket in the caller's own task.

    The `websockets` package's sans-I/O protocol (`ClientProtocol`) does the framing over a
    plain trio stream: `receive` reads the socket, parses and returns the next message
    with no reader task and no memory channel in between (DESIGN §3: each hop is a task
    switch, and task switches were most of a relay's cost). Frames the protocol answers
    by itself (pong, the close reply) are written by whichever task is reading.
    The server end of a phone's WebSocket is the same reader (`boba_runtime.cli.public_port`),
    failing with its own `closed_error`.
    """

    closed_error: Callable[[str], Exception] = AgentClosed

    def __init__(
        self, stream: trio.abc.Stream, protocol: ClientProtocol, close_timeout: float
    ) -> None:
        self._stream = stream
        self._ws = protocol
        self._close_timeout = close_timeout
        self._messages: deque[str | bytes] = deque()
        self._fragments: list[bytes] = []
        self._fragmented_text = False
        self._send_lock = trio.StrictFIFOLock()  # trio forbids two concurrent send_all
        self._lost: str | None = None  # the socket failed under us (not a WebSocket close)
        self._reply_due = False  # the protocol queued a control frame while reading
        # A plain TCP stream can be written without awaiting (`send_nowait`); TLS cannot.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._backlog = b""  # the part of a `send_nowait` frame the kernel did not take

    async def receive(self) -> str | bytes:
        messages = self._messages
        while not messages:
            if self._ws.state is not State.OPEN or self._lost is not None:
                raise self.closed_error(self._why_closed())
            try:
                data = await self._stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._lost = f"agent connection lost: {exc or type(exc).__name__}"
                raise self.closed_error(self._lost) from None
            if data:
                self._ws.receive_data(data)
                self._take(self._ws.events_received())
            else:
                self._ws.receive_eof()
            if self._reply_due or self._ws.state is not State.OPEN:
                self._reply_due = False
                await self._flush()  # a pong, the close reply, or our close after an error
        return messages.popleft()

    def _take(self, events: list[Any]) -> None:
        """Collect whole messages (reassembling fragments) from parsed frames."""
        for frame in events:
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                self._fragmented_text = opcode is Opcode.TEXT
                self._fragments = [frame.data]
            elif opcode is Opcode.CONT:
                self._fragments.append(frame.data)
            else:  # ping (the protocol queued the pong: `receive` flushes it), pong, close
                self._reply_due = True
                continue
            if not frame.fin:
                continue
            payload = self._fragments[0] if len(self._fragments) == 1 else b"".join(
                self._fragments
            )
            self._fragments = []
            if not self._fragmented_text:
                self._messages.append(bytes(payload))
                continue
            try:
                self._messages.append(bytes(payload).decode("utf-8"))
            except UnicodeDecodeError:
                self._ws.fail(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message")
                return

    async def _flush(self) -> None:
        """Write whatever the protocol has queued (frames, pongs, close frames)."""
        lock = self._send_lock
        try:
            lock.acquire_nowait()  # the usual case: nobody else is writing, no checkpoint
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._backlog:  # the rest of a frame `send_nowait` began: it goes first
                backlog, self._backlog = self._backlog, b""
                await self._stream.send_all(backlog)
            for chunk in self._ws.data_to_send():
                if chunk:  # b"" means "half-close"; the server closes TCP first anyway
                    await self._stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lost = f"agent connection lost: {exc or type(exc).__name__}"
            raise self.closed_error(self._lost) from None
        finally:
            lock.release()

    async def send(self, data: str | bytes) -> None:
        """Send one message; an empty one only writes what `send_nowait` left behind."""
        if self._ws.state is not State.OPEN or self._lost is not None:
            raise self.closed_error(self._why_closed())
        if not data:
            await self._flush()
            return
        if isinstance(data, str):
            self._ws.send_text(data.encode("utf-8"))
        else:
            self._ws.send_binary(data)
        await self._flush()

    def send_nowait(self, data: str | bytes) -> str | bytes | None:
        """Write one message now, without awaiting, when nothing else is being written.

        Saves the writer task's wake-up and trio's two scheduling points per `send_all`
        for most outbound messages (issue #18). Returns None when the kernel took the
        whole frame; `data` itself when nothing was written (TLS, a write in progress,
        a closed socket: send it the usual way); an empty message of its type when only
        part was written: the rest waits here and goes out first on the next `send`
        (send that empty message to flush it). Never raises: a failed write is kept as
        the connection's loss, reported by the next `receive` or `send`.
        """
        if (
            self._fd is None or self._backlog or self._send_lock.locked()
            or self._ws.state is not State.OPEN or self._lost is not None
        ):
            return data
        if isinstance(data, str):
            self._ws.send_text(data.encode("utf-8"))
        else:
            self._ws.send_binary(data)
        chunks = self._ws.data_to_send()
        frame = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            written = os.write(self._fd, frame)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._lost = f"connection lost: {exc.strerror or type(exc).__name__}"
            return None
        if written == len(frame):
            return None
        self._backlog = frame[written:]
        return data[:0]

    async def aclose(self) -> None:
        # Shielded so a hang-up (a cancellation) still sends the close frame, but bounded.
        with trio.move_on_after(self._close_timeout, shield=True):
            with suppress(AgentClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                if self._ws.state is State.OPEN and self._lost is None:
                    self._ws.send_close(CLOSE_NORMAL)
                    await self._flush()
                # RFC 6455: the server closes TCP first; wait for it (or the deadline).
                while self._ws.state is not State.CLOSED and self._lost is None:
                    data = await self._stream.receive_some(RECEIVE_BYTES)
                    if data:
                        self._ws.receive_data(data)
                        self._ws.events_received()
                    else:
                        self._ws.receive_eof()
                    await self._flush()
        await trio.aclose_forcefully(self._stream)

    def _why_closed(self) -> str:
        if self._lost is not None:
            return self._lost
        received = self._ws.close_rcvd
        if received is not None:
            return describe_close(received.code, received.reason)
        sent = self._ws.close_sent
        if sent is not None:  # we failed the connection: a protocol error or a too-big message
            text = f"closed the agent connection (code {sent.code}"
            return text + (f": {sent.reason})" if sent.reason else ")")
        return "agent connection closed"


def describe_close(code: int | None, reason: str = "") -> str:
    if code is None:
        return "agent connection closed"
    text = f"agent closed the connection (code {code}"
    return text + (f": {reason})" if reason else ")")


def auth_headers(api_key: str | None) -> list[tuple[str, str]]:
    """`Authorization: Token <key>` for Deepgram; nothing when no key is configured."""
    if not api_key:
        return []
    return [("Authorization", "Token " + api_key)]


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
    try:
        with trio.fail_after(connect_timeout):
            link = await _connect(url, parts, api_key, max_message_bytes, close_timeout,
                                  verify_tls)
    except trio.TooSlowError:
        raise AgentUnreachable(f"agent did not answer within {connect_timeout:g} s") from None
    except (OSError, trio.BrokenResourceError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise AgentUnreachable(f"cannot reach the agent at {parts.netloc}: {why}") from None
    try:
        yield link
    finally:
        await link.aclose()


async def _connect(
    url: str,
    parts: SplitResult,
    api_key: str | None,
    max_message_bytes: int,
    close_timeout: float,
    verify_tls: bool,
) -> DirectAgentConnection:
    """TCP (+ TLS), then the WebSocket handshake; `AgentUnreachable` if it is refused."""
    tls = parts.scheme == "wss"
    host = parts.hostname or ""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, parts.port or (443 if tls else 80))
    try:
        if tls:
            stream = trio.SSLStream(
                stream, _tls_context(verify_tls), server_hostname=host, https_compatible=True
            )
            await stream.do_handshake()
        protocol = ClientProtocol(parse_uri(url), max_size=max_message_bytes)
        request = protocol.connect()
        for name, value in auth_headers(api_key):
            request.headers[name] = value
        protocol.send_request(request)
        link = DirectAgentConnection(stream, protocol, close_timeout)
        await link._flush()
        events: list[Any] = []
        while not events:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                protocol.receive_eof()
                break
            protocol.receive_data(data)
            events = protocol.events_received()
        response = events[0] if events else None
        if protocol.state is not State.OPEN:
            raise _refused(response, protocol.handshake_exc)
        link._take(events[1:])  # frames that came in the same read as the handshake
        return link
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


def _refused(response: Any, exc: Exception | None) -> AgentUnreachable:
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status != 101:
        hint = " (check DEEPGRAM_API_KEY)" if status in (401, 403) else ""
        return AgentUnreachable(f"agent refused the connection: HTTP {status}{hint}")
    if response is None:
        return AgentUnreachable("agent handshake failed: the agent closed the connection")
    return AgentUnreachable(f"agent handshake failed: {exc!r}")


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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
