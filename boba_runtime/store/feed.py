"""The live event feed: one task tails the store's event table and fans out to SSE clients.

Why the table and not an in-process list: ids then come from the store, so they are the
same on every worker and instance, and `Last-Event-ID` replay works after a restart
(CONTRACT §7). The store's change signal (`OrderStore.changes`) wakes the feed after
every local commit, and on PostgreSQL after every other instance's commit too (NOTIFY), so
events go out at once; the poll interval catches events committed by other processes on
a shared SQLite file.

Fan-out never waits for a client: every subscriber has a bounded memory channel and gets
events with `send_nowait`; one whose buffer is full is dropped (its stream ends and the
browser reconnects with `Last-Event-ID`, replaying what it missed from the table).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

import trio

log = logging.getLogger("boba.feed")

DEFAULT_POLL_INTERVAL = 0.15  # seconds between looks at the table when nobody notifies
# PostgreSQL: every instance's commits wake the feed (LISTEN/NOTIFY, `StoreListener`, which
# also polls while it cannot listen), so the table is read on a timer only as a safety net.
NOTIFIED_POLL_INTERVAL = 2.0
DEFAULT_CLIENT_BUFFER = 256  # events a client may fall behind before it is dropped
# CONTRACT §7: a `: ping` at least every 15 s. Idle for exactly 15 s would land just after
# that (a client timing out at 15 s would miss it), so ping with a margin.
DEFAULT_PING_INTERVAL = 10.0
REPLAY_BATCH = 500
ERROR_BACKOFF = 1.0


class FeedEvent(Protocol):
    """What the store's `StoredEvent` looks like to the feed."""

    @property
    def id(self) -> int: ...

    @property
    def data(self) -> str: ...


class EventSource(Protocol):
    """The part of the store the feed needs."""

    async def events_after(
        self, last_id: int, *, limit: int = ...
    ) -> Sequence[FeedEvent]: ...

    async def last_event_id(self) -> int: ...


class ChangeSignal(Protocol):
    """The store's "changed" signal (`store.StoreChanges`): an event set by the next commit."""

    def next_change(self) -> trio.Event: ...


class SubscriptionState(enum.Enum):
    REPLAYING = "replaying"
    LIVE = "live"
    DROPPED = "dropped"  # too slow: the feed closed its channel
    CLOSED = "closed"


class Subscription:
    """One SSE client: replay from the table up to where the live feed starts, then live.

    `live_from` is the feed's position when the client subscribed; every event after it
    arrives on the channel, every event up to it is read back from the table. So there
    is no gap and no duplicate, whatever the interleaving.
    """

    def __init__(
        self,
        feed: EventFeed,
        cursor: int,
        live_from: int,
        send: trio.MemorySendChannel[FeedEvent],
        receive: trio.MemoryReceiveChannel[FeedEvent],
    ) -> None:
        self._feed = feed
        self.cursor = cursor
        self.live_from = live_from
        self._send = send
        self._receive = receive
        self.state = SubscriptionState.REPLAYING if cursor < live_from else SubscriptionState.LIVE
        self._replay_buffer: list[FeedEvent] = []  # read from the table, newest first

    @property
    def dropped(self) -> bool:
        return self.state is SubscriptionState.DROPPED

    def _drop(self) -> None:
        if self.state in (SubscriptionState.REPLAYING, SubscriptionState.LIVE):
            self.state = SubscriptionState.DROPPED
        self._send.close()

    def close(self) -> None:
        """Leave the feed; idempotent, sync so it can run in any `finally`."""
        self._feed._forget(self)
        if self.state is not SubscriptionState.DROPPED:
            self.state = SubscriptionState.CLOSED
        self._send.close()
        self._receive.close()

    async def next_event(self, timeout: float) -> FeedEvent | None:
        """The next event in id order, or None after `timeout` s of silence.

        Raises trio.EndOfChannel once the subscription was dropped or closed.
        """
        if self.state is SubscriptionState.REPLAYING:
            event = await self._next_replayed()
            if event is not None:
                return event
        while True:
            if self.state is not SubscriptionState.LIVE:
                raise trio.EndOfChannel
            received: FeedEvent | None = None
            with trio.move_on_after(timeout):
                received = await self._receive.receive()
            if received is None:
                return None
            if self.dropped:
                raise trio.EndOfChannel  # do not trickle out the rest: reconnect and replay
            if received.id > self.cursor:  # skips what `subscribe_new` saw in the table
                self.cursor = received.id
                return received

    def _replay_done(self) -> None:
        if self.state is SubscriptionState.REPLAYING:  # never revives a dropped one
            self.state = SubscriptionState.LIVE

    async def _next_replayed(self) -> FeedEvent | None:
        if not self._replay_buffer:
            if self.cursor >= self.live_from:
                self._replay_done()
                return None
            batch = await self._feed.source.events_after(self.cursor, limit=REPLAY_BATCH)
            self._replay_buffer = [e for e in batch if self.cursor < e.id <= self.live_from]
            self._replay_buffer.reverse()
            if not self._replay_buffer:
                self._replay_done()
                return None
        event = self._replay_buffer.pop()
        self.cursor = event.id
        if not self._replay_buffer and self.cursor >= self.live_from:
            self._replay_done()
        return event


class EventFeed:
    """Tails `source` and hands each new event to every subscriber without ever blocking."""

    def __init__(
        self,
        source: EventSource,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        client_buffer: int = DEFAULT_CLIENT_BUFFER,
        changes: ChangeSignal | None = None,
    ) -> None:
        """`changes`: the store's change signal (None: a source without one; poll only)."""
        self.source = source
        self._changes = changes
        self.poll_interval = poll_interval
        self.client_buffer = client_buffer
        self._subscribers: set[Subscription] = set()
        self._last_id: int | None = None
        self._wake = trio.Event()
        self.dropped_total = 0
        self._watchers: list[Callable[[FeedEvent], None]] = []

    @property
    def last_id(self) -> int:
        if self._last_id is None:
            raise RuntimeError("EventFeed.run has not started yet")
        return self._last_id

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def watch(self, callback: Callable[[FeedEvent], None]) -> None:
        """Call `callback` (sync, quick, never raising) with every new event: in-process
        state kept fresh by events (the shop's sold-out items) without counting as a client."""
        self._watchers.append(callback)

    def notify(self) -> None:
        """Look at the table now, for a source without a change signal (the store has one:
        its commits wake the feed by themselves)."""
        self._wake.set()

    def subscribe(self, last_event_id: int | None) -> Subscription:
        """A client resuming after `last_event_id` (None: from the feed's position now).

        A `last_event_id` beyond the table's end (a wiped database) counts as "now".
        """
        live_from = self.last_id
        cursor = live_from if last_event_id is None else min(max(last_event_id, 0), live_from)
        return self._subscribe_at(cursor)

    async def subscribe_new(self) -> Subscription:
        """A client without `Last-Event-ID`: only events committed after this call.

        Asks the table for its end, since this feed may not have seen the newest rows
        yet (they would otherwise arrive as "new"). Falls back to the feed's position.
        """
        try:
            newest = await self.source.last_event_id()
        except Exception as error:  # the store is down: the feed's position will do
            log.warning("event stream starts at the feed's position: %s", error)
            return self.subscribe(None)
        return self._subscribe_at(max(newest, 0))

    def _subscribe_at(self, cursor: int) -> Subscription:
        send, receive = trio.open_memory_channel[FeedEvent](self.client_buffer)
        subscription = Subscription(self, cursor, self.last_id, send, receive)
        self._subscribers.add(subscription)
        return subscription

    def end_streams(self) -> None:
        """End every live stream now (shutdown): clients reconnect with Last-Event-ID."""
        for subscription in list(self._subscribers):
            subscription._drop()
        self._subscribers.clear()

    def _forget(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def _publish(self, event: FeedEvent) -> None:
        for callback in self._watchers:
            callback(event)
        for subscription in list(self._subscribers):
            try:
                subscription._send.send_nowait(event)
            except trio.WouldBlock:
                self._subscribers.discard(subscription)
                subscription._drop()
                self.dropped_total += 1
                log.info("dropped a slow event-stream client at event %d", event.id)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(subscription)

    async def _pump(self) -> None:
        while True:
            batch = await self.source.events_after(self.last_id, limit=REPLAY_BATCH)
            for event in batch:
                if event.id > self.last_id:
                    self._last_id = event.id
                    self._publish(event)
            if len(batch) < REPLAY_BATCH:
                return

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs until cancelled. Store errors are logged and retried, never fatal: the feed
        only lags while the store is down (`/healthz` reports that)."""
        changed = self._next_change()  # before reading, as in every round below
        self._last_id = await self.source.last_event_id()
        task_status.started()
        try:
            while True:
                with trio.move_on_after(self.poll_interval):
                    await self._woken(changed)
                self._wake = trio.Event()
                changed = self._next_change()  # before reading: a commit during the read counts
                try:
                    await self._pump()
                except Exception as error:  # the store's trouble must not end the shop
                    log.warning("event feed cannot read the store: %s", error)
                    await trio.sleep(ERROR_BACKOFF)
        finally:
            self.end_streams()

    def _next_change(self) -> trio.Event | None:
        return self._changes.next_change() if self._changes is not None else None

    async def _woken(self, changed: trio.Event | None) -> None:
        """Returns once `notify()` was called or the store changed."""
        if changed is None:
            await self._wake.wait()
            return
        async with trio.open_nursery() as nursery:

            async def first_of(event: trio.Event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(first_of, self._wake)
            nursery.start_soon(first_of, changed)


async def sse_frames(
    subscription: Subscription, *, ping_interval: float
) -> AsyncIterator[bytes]:
    """The bytes of an SSE stream: `id:` + one `data:` line per event, `: ping` when idle.

    No `event:` line, so a browser's `onmessage` sees every event (CONTRACT §7). The
    store's JSON has no newlines; if one ever did, each line becomes its own `data:` line.
    Never yields inside a cancel scope (trio forbids it in async generators).
    """
    try:
        yield b"retry: 2000\n: connected\n\n"
        while True:
            try:
                event = await subscription.next_event(ping_interval)
            except trio.EndOfChannel:
                return
            except Exception as error:  # the store failed mid-replay: end; the client retries
                log.warning("event stream ended: cannot replay from the store: %s", error)
                return
            if event is None:
                yield b": ping\n\n"
                continue
            lines = "".join(f"data: {line}\n" for line in event.data.splitlines() or [""])
            yield f"id: {event.id}\n{lines}\n".encode()
    finally:
        subscription.close()
