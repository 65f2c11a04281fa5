"""`SoftPhone`: the phone side of a `/phone/ws` call (the staff softphone and `boba call`).

A softphone gets the call's frames (Twilio's message set) and, besides, the core's
observations as `transcript` and `function` events (`boba_proto.phone`). One writer task
serves both, because a socket must never have two senders at once; observations wait in
a bounded queue and are dropped (counted) when the page does not read them, so a stuck
page never holds up the call.
"""

from __future__ import annotations

from typing import Final

import trio

from boba_proto.call import Action
from boba_proto.phone import observation_frame
from boba_runtime.call.runner import CLOSE_NORMAL, CLOSE_TIMEOUT_S, PhoneClosed, PhoneSide

__all__ = ["OBSERVATION_BUFFER", "SoftPhone"]

OBSERVATION_BUFFER: Final = 256
"""Frames waiting for the socket (the call's and the observations); more means the page is
stuck."""


class SoftPhone:
    """`PhoneSide` for `/phone/ws` around the socket's own `PhoneSide` (`inner`).

    Run `run_writer` in a task beside `run_call`, and pass `observe` as `run_call`'s
    `observe`.
    """

    def __init__(self, inner: PhoneSide) -> None:
        self._inner = inner
        self._send, self._queue = trio.open_memory_channel[str](OBSERVATION_BUFFER)
        self._drained = trio.Event()
        self.dropped = 0

    async def receive(self) -> str | bytes:
        return await self._inner.receive()

    async def send(self, text: str) -> None:
        try:
            await self._send.send(text)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise PhoneClosed from None

    def observe(self, action: Action) -> None:
        frame = observation_frame(action)
        if frame is None:
            return
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            self.dropped += 1  # the page is not reading; the call itself goes on
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        # Let the writer flush what is queued (the goodbye transcript), then close.
        self._send.close()
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await self._drained.wait()
        await self._inner.close(code, reason)

    async def run_writer(self) -> None:
        try:
            async for text in self._queue:
                await self._inner.send(text)
        except PhoneClosed:
            pass
        finally:
            self._queue.close()  # later sends fail (PhoneClosed) instead of blocking
            self._drained.set()
