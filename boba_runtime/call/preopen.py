"""Agent connections opened while `/voice` is answered (DESIGN §5, issue #18).

Twilio fetches `/voice`, plays the `<Say>` and only then opens the Media Stream; the agent
connection (DNS, TCP, TLS, the WebSocket handshake: several round trips to Deepgram) can
be made meanwhile instead of after `start`. `/voice` calls `PreopenedAgents.open` with the
callSid; the call whose `start` carries that callSid and reaches **this process** within
`keep_seconds` (5 s) takes the open link (`take`); otherwise it is closed. Nothing is
shared between processes: a stream that lands on another worker or instance opens its
own connection as before.

The link is only opened, not configured: `Settings` still go out when the call's core
sends them (after `start`, per CONTRACT §5). The agent's `Welcome` waits in the socket
(the agent link reads only when the call asks it to), so the core sees the agent's
messages exactly as if it had connected at `start`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import trio

from boba_runtime.call.agent_link import AgentConnection, AgentConnector, AgentUnreachable

log = logging.getLogger(__name__)

KEEP_SECONDS = 5.0
"""How long a pre-opened connection waits for its stream before it is closed."""


@dataclass(eq=False)
class _Preopened:
    ready: trio.Event = field(default_factory=trio.Event)  # opened, or failed
    claimed: trio.Event = field(default_factory=trio.Event)
    released: trio.Event = field(default_factory=trio.Event)  # the call is done with it
    link: AgentConnection | None = None
    failure: AgentUnreachable | None = None


class PreopenedAgents:
    """Agent links opened ahead of their calls, by callSid (one per process)."""

    def __init__(self, keep_seconds: float = KEEP_SECONDS) -> None:
        self.keep_seconds = keep_seconds
        self._waiting: dict[str, _Preopened] = {}
        self.used = 0  # taken by their call
        self.expired = 0  # closed unused after keep_seconds
        self.failed = 0  # taken, but the pre-open had failed: the call connected itself

    def __len__(self) -> int:
        return len(self._waiting)

    def wanted(self, call_sid: str) -> bool:
        """Whether `/voice` should open one for this call (not already waiting)."""
        return bool(call_sid) and call_sid not in self._waiting

    async def hold(self, call_sid: str, connect: AgentConnector) -> None:
        """Open the link, keep it for `keep_seconds` or until its call is done with it.

        Run as a background task of the server (it outlives the `/voice` request)."""
        entry = _Preopened()
        self._waiting[call_sid] = entry
        try:
            async with connect() as link:
                entry.link = link
                entry.ready.set()
                with trio.move_on_after(self.keep_seconds):
                    await entry.claimed.wait()
                if not entry.claimed.is_set():
                    self._forget(call_sid, entry)  # too late for a claim from here on
                    self.expired += 1
                    log.info("call %s: pre-opened agent link unused after %g s; closed",
                             call_sid, self.keep_seconds)
                    return
                await entry.released.wait()  # the call uses it; leaving the block closes it
        except AgentUnreachable as exc:
            entry.failure = exc
        finally:
            entry.ready.set()
            self._forget(call_sid, entry)

    def take(self, call_sid: str, fallback: AgentConnector) -> AgentConnector:
        """The connector for this call: its pre-opened link if there is one, else `fallback`.

        A pre-open that failed (or fails while the call waits for it) is not the call's
        last word: the call then connects on its own through `fallback`, as without it."""
        entry = self._waiting.pop(call_sid, None) if call_sid else None
        if entry is None:
            return fallback
        entry.claimed.set()

        @asynccontextmanager
        async def use() -> AsyncIterator[AgentConnection]:
            try:
                await entry.ready.wait()  # it may still be connecting
            except BaseException:
                entry.released.set()
                raise
            if entry.link is None:
                entry.released.set()
                self.failed += 1
                log.info("call %s: pre-opened agent link failed (%s); connecting again",
                         call_sid, entry.failure.reason if entry.failure else "?")
                async with fallback() as link:
                    yield link
                return
            self.used += 1
            try:
                yield entry.link
            finally:
                entry.released.set()  # `hold` closes it (bounded, like any agent link)

        def connector() -> AbstractAsyncContextManager[AgentConnection]:
            return use()

        return connector

    def _forget(self, call_sid: str, entry: _Preopened) -> None:
        if self._waiting.get(call_sid) is entry:
            del self._waiting[call_sid]
