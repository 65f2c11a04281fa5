"""GET /orders/events (CONTRACT §7) with real HTTP clients against a real Hypercorn."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.helpers.orders import place_order
from tests.helpers.server import RunningServer, running_server
from tests.helpers.sse import SseFrame, sse_frames

TIMEOUT = 10


@asynccontextmanager
async def event_stream(
    base_url: str, last_event_id: int | None = None
) -> AsyncIterator[trio.MemoryReceiveChannel[SseFrame]]:
    """Frames of one SSE connection, read by a background task into a channel."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    send, receive = trio.open_memory_channel[SseFrame](1000)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client,
        client.stream("GET", "/orders/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")

        async def pump() -> None:
            async with send:
                async for frame in sse_frames(response.aiter_lines()):
                    await send.send(frame)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            yield receive
            nursery.cancel_scope.cancel()


async def next_event(frames: trio.MemoryReceiveChannel[SseFrame]) -> tuple[int, dict[str, str]]:
    """The next data frame (skipping comments), as (id, parsed JSON)."""
    with trio.fail_after(TIMEOUT):
        async for frame in frames:
            if frame.data:
                assert frame.id is not None
                assert "event" not in frame.fields  # onmessage must see it
                assert len(frame.data) == 1
                return frame.id, json.loads(frame.data[0])
    raise AssertionError("stream ended")


async def test_a_new_order_arrives_live(boba_server: RunningServer) -> None:
    before = await place_order(boba_server.services)  # not replayed without Last-Event-ID
    async with event_stream(boba_server.base_url) as frames:
        order = await place_order(boba_server.services)
        event_id, data = await next_event(frames)
        assert data == {"type": "order_created", "order_number": order.order_number,
                        "status": "received"}
        assert order.order_number != before.order_number

        async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
            done = await client.post(f"/api/orders/{order.order_number}/done",
                                     headers=boba_server.staff_headers)
            assert done.status_code == 200
        next_id, data = await next_event(frames)
        assert next_id > event_id
        assert data == {"type": "order_status_changed", "order_number": order.order_number,
                        "status": "ready"}
        assert "+1415" not in json.dumps(data)


async def test_last_event_id_replays_then_goes_live_without_gap_or_duplicate(
    boba_server: RunningServer,
) -> None:
    services = boba_server.services
    orders = [await place_order(services) for _ in range(3)]
    all_events = await services.store.events_after(0)
    first_id = all_events[0].id
    async with event_stream(boba_server.base_url, last_event_id=first_id) as frames:
        replayed = [await next_event(frames) for _ in range(2)]
        assert [data["order_number"] for _, data in replayed] == [
            o.order_number for o in orders[1:]]
        live_order = await place_order(services)
        live_id, data = await next_event(frames)
        assert data["order_number"] == live_order.order_number
        ids = [i for i, _ in replayed] + [live_id]
        assert ids == sorted(set(ids)) and ids[0] == all_events[1].id


async def test_replay_after_a_restart_on_the_same_database(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    async with running_server(shop) as first:
        placed = [await place_order(first.services) for _ in range(2)]
        await first.services.store.mark_ready(placed[0].order_number)
        ids_before = [e.id for e in await first.services.store.events_after(0)]
    assert len(ids_before) == 3

    async with running_server(shop) as second:
        assert second.base_url != "" and second.services.store is not first.services.store
        async with event_stream(second.base_url, last_event_id=0) as frames:
            replayed = [await next_event(frames) for _ in range(3)]
            assert [i for i, _ in replayed] == ids_before
            assert [d["type"] for _, d in replayed] == [
                "order_created", "order_created", "order_status_changed"]
            new = await place_order(second.services)
            new_id, data = await next_event(frames)
            assert new_id > ids_before[-1] and data["order_number"] == new.order_number


async def test_ping_comment_when_idle(tmp_path: Path) -> None:
    async with (
        running_server(tmp_path / "shop", sse_ping_interval=0.2) as server,
        event_stream(server.base_url) as frames,
    ):
        with trio.fail_after(TIMEOUT):
            pings = 0
            async for frame in frames:
                pings += frame.is_ping
                if pings == 2:
                    break
            else:
                raise AssertionError(f"the stream ended after {pings} ping(s)")


async def test_bad_last_event_id_is_a_json_400(boba_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
        response = await client.get("/orders/events", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]


async def test_a_client_that_leaves_is_forgotten(boba_server: RunningServer) -> None:
    feed = boba_server.services.feed
    async with event_stream(boba_server.base_url) as frames:
        await place_order(boba_server.services)
        await next_event(frames)
        assert feed.subscriber_count == 1
    with trio.fail_after(TIMEOUT):
        while feed.subscriber_count:
            await place_order(boba_server.services)  # a write to a closed socket also tells
            await trio.sleep(0.05)


async def test_shutdown_ends_live_streams(tmp_path: Path) -> None:
    async with (
        running_server(tmp_path / "shop", grace_period=30) as server,
        event_stream(server.base_url) as frames,
    ):
        await server.stop()
        with trio.fail_after(5):  # well inside the 30 s grace period
            async for _frame in frames:
                pass


async def test_a_slow_client_is_dropped_while_a_fast_one_keeps_receiving(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "shop", client_buffer=4, poll_interval=0.05) as server:
        services = server.services
        host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
        slow = trio.socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # and it never reads
        try:
            await slow.connect((host, int(port)))
            await slow.send(b"GET /orders/events HTTP/1.1\r\nHost: test\r\n\r\n")
            async with event_stream(server.base_url) as fast:
                with trio.fail_after(TIMEOUT):
                    while services.feed.subscriber_count < 2:
                        await trio.sleep(0.01)
                received: list[int] = []

                async def read_fast() -> None:
                    while True:
                        event_id, _ = await next_event(fast)
                        received.append(event_id)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_fast)
                    with trio.fail_after(30):
                        while services.feed.dropped_total == 0:
                            order = await place_order(services)
                            await services.store.cancel(order.order_number)
                            services.feed.notify()
                            await trio.sleep(0.005)
                    assert services.feed.subscriber_count == 1  # the fast one stays
                    last = await place_order(services)
                    expected = [e.id for e in await services.store.events_after(0)]
                    with trio.fail_after(TIMEOUT):
                        while not received or received[-1] < expected[-1]:
                            await trio.sleep(0.01)
                    nursery.cancel_scope.cancel()
                assert received == expected  # every event, in order, nothing lost
                assert last.order_number
        finally:
            slow.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux TCP_USER_TIMEOUT")
async def test_a_stalled_client_does_not_block_shutdown(tmp_path: Path) -> None:
    # The kernel's TCP_USER_TIMEOUT (`stalled_timeout`) also runs while the client's window
    # is zero: the events that fill the server's send buffer and then the client's feed
    # buffer must arrive within it, or the kernel ends the connection before the feed ever
    # counts a drop. That takes ~40 order+cancel rounds; under a loaded machine, with an
    # fsync per commit, 2 s was not always enough. So: 4 s, and a data directory on tmpfs
    # where the fsyncs are cheap. Shutdown is still bounded by that timeout (asserted < 8 s).
    shm = Path("/dev/shm")
    data_dir = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    slow = trio.socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    try:
        async with running_server(data_dir / "shop", client_buffer=4, poll_interval=0.05,
                                  grace_period=0.5, stalled_timeout=4) as server:
            services = server.services
            host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
            await slow.connect((host, int(port)))
            await slow.send(b"GET /orders/events HTTP/1.1\r\nHost: test\r\n\r\n")
            with trio.fail_after(10):
                while services.feed.subscriber_count == 0:
                    await trio.sleep(0.01)
            with trio.fail_after(30):
                while services.feed.dropped_total == 0:  # its socket is full now
                    assert services.feed.subscriber_count == 1, "the kernel ended it first"
                    order = await place_order(services)
                    await services.store.cancel(order.order_number)
                    services.feed.notify()
                    await trio.sleep(0)
            stopping_since = trio.current_time()
        # the block exit waited for the shutdown; the client never read or closed
        shutdown_seconds = trio.current_time() - stopping_since
        print(f"shutdown with a stalled client took {shutdown_seconds:.2f} s")
        assert shutdown_seconds < 8
    finally:
        slow.close()
        if data_dir != tmp_path:
            shutil.rmtree(data_dir, ignore_errors=True)
