"""The event feed on its own: replay/live hand-over, dropping, framing (fake event table)."""

from __future__ import annotations

import random

import msgspec
import pytest
import trio
import trio.testing

from boba_runtime.store.feed import EventFeed, SubscriptionState, sse_frames


class Event(msgspec.Struct, frozen=True):
    id: int
    data: str


class FakeTable:
    """An event table; every read is a checkpoint, like the real store's thread hop."""

    def __init__(self, count: int = 0) -> None:
        self.rows: list[Event] = []
        self.fail_next = 0
        for _ in range(count):
            self.append()

    def append(self) -> Event:
        event = Event(len(self.rows) + 1, f'{{"type":"order_created","n":{len(self.rows) + 1}}}')
        self.rows.append(event)
        return event

    async def events_after(self, last_id: int, *, limit: int = 500) -> list[Event]:
        await trio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("database is locked")
        return [e for e in self.rows if e.id > last_id][:limit]

    async def last_event_id(self) -> int:
        await trio.sleep(0)
        return self.rows[-1].id if self.rows else 0


@pytest.mark.parametrize("seed", range(12))
async def test_replay_then_live_has_no_gap_and_no_duplicate(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    rng = random.Random(seed)
    table = FakeTable(rng.randrange(0, 40))
    feed = EventFeed(table, poll_interval=0.1, client_buffer=1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        start = rng.randrange(0, len(table.rows) + 1)
        subscription = feed.subscribe(start)

        writer_done = trio.Event()

        async def writer() -> None:
            for _ in range(rng.randrange(1, 30)):
                table.append()
                if rng.random() < 0.5:
                    feed.notify()
                await trio.sleep(rng.choice([0, 0, 0.01, 0.2]))
            writer_done.set()

        nursery.start_soon(writer)
        await trio.sleep(rng.choice([0, 0.05, 0.3]))
        seen: list[int] = []
        with trio.fail_after(100):  # reads while the writer writes
            while not (writer_done.is_set() and seen and seen[-1] == table.rows[-1].id):
                event = await subscription.next_event(0.5)
                if event is not None:
                    seen.append(event.id)
        assert seen == list(range(start + 1, table.rows[-1].id + 1))
        nursery.cancel_scope.cancel()


async def test_no_last_event_id_means_only_new_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = FakeTable(5)
    feed = EventFeed(table)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        fresh = feed.subscribe(None)
        beyond = feed.subscribe(999)  # a wiped database: treat as "now"
        table.append()
        feed.notify()
        assert (await fresh.next_event(5)).id == 6  # type: ignore[union-attr]
        assert (await beyond.next_event(5)).id == 6  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()


async def test_a_full_client_is_dropped_and_others_keep_receiving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = FakeTable()
    feed = EventFeed(table, client_buffer=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        slow = feed.subscribe(None)  # never reads
        fast = feed.subscribe(None)
        got: list[int] = []
        for _ in range(10):
            table.append()
            feed.notify()
            await trio.sleep(0.01)
            while (event := await fast.next_event(0.001)) is not None:
                got.append(event.id)
        assert got == list(range(1, 11))
        assert slow.state is SubscriptionState.DROPPED
        assert feed.dropped_total == 1 and feed.subscriber_count == 1
        with pytest.raises(trio.EndOfChannel):
            await slow.next_event(1)  # ends at once, does not trickle out its backlog
        nursery.cancel_scope.cancel()


async def test_store_errors_delay_but_do_not_stop_the_feed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = FakeTable()
    feed = EventFeed(table, poll_interval=0.1)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        sub = feed.subscribe(None)
        table.fail_next = 3
        table.append()
        with trio.fail_after(30):
            event = await sub.next_event(60)
        assert event is not None and event.id == 1
        nursery.cancel_scope.cancel()


async def test_frames_have_id_and_data_lines_no_event_line_and_pings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = FakeTable(2)
    table.rows.append(Event(3, "line one\nline two"))
    feed = EventFeed(table)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        frames = sse_frames(feed.subscribe(0), ping_interval=15)
        chunks = [await frames.__anext__() for _ in range(4)]
        assert chunks[0].startswith(b"retry: ")
        assert chunks[1] == b'id: 1\ndata: {"type":"order_created","n":1}\n\n'
        assert chunks[3] == b"id: 3\ndata: line one\ndata: line two\n\n"
        before = trio.current_time()
        assert await frames.__anext__() == b": ping\n\n"
        assert trio.current_time() - before == pytest.approx(15)
        assert b"event:" not in b"".join(chunks)
        await frames.aclose()
        assert feed.subscriber_count == 0  # closing the stream leaves the feed
        nursery.cancel_scope.cancel()


async def test_end_streams_ends_every_subscription(
    autojump_clock: trio.testing.MockClock,
) -> None:
    feed = EventFeed(FakeTable())
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        subs = [feed.subscribe(None) for _ in range(3)]
        feed.end_streams()
        for sub in subs:
            with pytest.raises(trio.EndOfChannel):
                await sub.next_event(1)
        nursery.cancel_scope.cancel()


async def test_subscribe_new_skips_rows_the_feed_has_not_seen_yet(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = FakeTable(3)
    feed = EventFeed(table, poll_interval=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        table.append()  # committed before the client connects; the feed has not looked yet
        sub = await feed.subscribe_new()
        table.append()
        feed.notify()
        event = await sub.next_event(60)
        assert event is not None and event.id == 5
        nursery.cancel_scope.cancel()


async def test_a_client_dropped_while_replaying_stays_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = FakeTable(5)
    feed = EventFeed(table, client_buffer=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        sub = feed.subscribe(0)
        assert (await sub.next_event(1)).id == 1  # type: ignore[union-attr]
        for _ in range(3):  # overflow its live buffer while it is still replaying
            table.append()
        feed.notify()
        with trio.fail_after(5):
            while not sub.dropped:
                await trio.sleep(0.01)
        replayed = []
        with pytest.raises(trio.EndOfChannel):
            while True:
                event = await sub.next_event(1)
                assert event is not None
                replayed.append(event.id)
        assert replayed == []  # ends at once; the client resumes from id 1 by reconnecting
        assert sub.dropped
        nursery.cancel_scope.cancel()
