"""Writing without the writer task (issue #18): `DirectAgentConnection.send_nowait` over a
real socket pair, whole and in part, and `SendQueue.direct`'s ordering rules."""

from __future__ import annotations

import socket

import trio
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from boba_runtime.call.agent_link import DirectAgentConnection
from boba_runtime.call.runner import SendQueue


def open_pair(*, send_buffer: int | None = None) -> tuple[DirectAgentConnection, socket.socket]:
    """A client-side connection already OPEN on one end of a socket pair; the other end."""
    ours, theirs = socket.socketpair()
    if send_buffer is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, send_buffer)
    protocol = ClientProtocol(parse_uri("ws://example.invalid/"))
    protocol.state = State.OPEN
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    return DirectAgentConnection(stream, protocol, close_timeout=1.0), theirs


def frames_in(data: bytes) -> list[tuple[Opcode, bytes]]:
    reader = ServerProtocol(max_size=None)
    reader.state = State.OPEN
    reader.parser = reader.parse()  # restart the parser past the (skipped) handshake
    next(reader.parser)
    reader.receive_data(data)
    return [(f.opcode, bytes(f.data)) for f in reader.events_received() if isinstance(f, Frame)]


async def read_all(peer: socket.socket, size: int) -> bytes:
    sock = trio.socket.from_stdlib_socket(peer)
    data = b""
    while len(data) < size:
        chunk = await sock.recv(1 << 20)
        assert chunk, "closed early"
        data += chunk
    return data


async def test_a_frame_the_kernel_takes_whole_is_written_without_awaiting() -> None:
    link, peer = open_pair()
    assert link.send_nowait("hello") is None
    assert link.send_nowait(b"\x01\x02") is None
    data = await read_all(peer, 2 + 4 + 5 + 2 + 4 + 2)  # two masked client frames
    assert frames_in(data) == [(Opcode.TEXT, b"hello"), (Opcode.BINARY, b"\x01\x02")]


async def test_a_frame_written_in_part_is_finished_first_by_the_next_send() -> None:
    link, peer = open_pair(send_buffer=4096)
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    rest = link.send_nowait(big)
    assert rest == b"", "expected a partial write"
    assert link.send_nowait("later") == "later"  # the rest is pending: not now
    async with trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def reader() -> None:
            received.append(await read_all(peer, len(big) + 14 + len("later") + 6))

        nursery.start_soon(reader)
        await link.send(b"")  # the flush marker: finishes the big frame
        await link.send("later")
    assert frames_in(received[0]) == [(Opcode.BINARY, big), (Opcode.TEXT, b"later")]


async def test_tls_or_a_write_in_progress_means_the_usual_way() -> None:
    link, _peer = open_pair()
    await link._send_lock.acquire()
    assert link.send_nowait("x") == "x"
    link._send_lock.release()
    link._ws.state = State.CLOSING
    assert link.send_nowait("x") == "x"


def test_the_queue_writes_directly_only_when_nothing_waits_before_it() -> None:
    box: SendQueue[str] = SendQueue(8)
    written: list[str] = []
    verdicts: dict[str, str | None] = {"sent": None, "kept": "kept", "part": ""}

    def direct(item: str) -> str | None:
        written.append(item)
        return verdicts[item]

    box.direct = direct
    assert box.put("sent", droppable=True) and len(box) == 0
    assert box.put("kept", droppable=True) and len(box) == 1  # not written: queued as is
    assert box.put("sent", droppable=True) and len(box) == 2  # a queue: never direct
    assert written == ["sent", "kept"]
    box = SendQueue(8)
    box.direct = direct
    assert box.put("part", droppable=True) and len(box) == 1
    assert box.drop_droppable() == 0  # the flush marker of a half-written frame stays
