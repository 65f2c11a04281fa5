"""Caps on event-stream clients (CONTRACT §2 `BOBA_MAX_SSE_CLIENTS`, §7).

An SSE client holds a socket for as long as it likes, so without a cap a thousand idle
clients used up the process's file descriptors and `/voice` and `/healthz` stopped
answering. Per process at most `max_total` streams (the next gets 503), and at most
`per_address` from one client address (429). A slot is given back when its stream ends;
if a stream is dropped before it ever started, when its generator is collected.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from typing import Final

PER_ADDRESS: Final = 20
DEFAULT_MAX_TOTAL: Final = 500


class SseSlots:
    """Counts the event streams of one process; touched only from the trio thread."""

    def __init__(self, *, max_total: int = DEFAULT_MAX_TOTAL,
                 per_address: int = PER_ADDRESS) -> None:
        self.max_total = max_total
        self.per_address = per_address
        self.total = 0
        self._by_address: dict[str, int] = {}

    def refusal(self, address: str) -> int | None:
        """503 when the process is full, 429 when this address is, else None."""
        if self.total >= self.max_total:
            return 503
        if self._by_address.get(address, 0) >= self.per_address:
            return 429
        return None

    def _take(self, address: str) -> None:
        self.total += 1
        self._by_address[address] = self._by_address.get(address, 0) + 1

    def _give_back(self, address: str) -> None:
        self.total -= 1
        left = self._by_address.get(address, 0) - 1
        if left > 0:
            self._by_address[address] = left
        else:
            self._by_address.pop(address, None)

    def hold(self, address: str, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`frames` holding one slot of `address` until the stream ends (call after
        `refusal` said None)."""
        self._take(address)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._give_back(address)

        async def held() -> AsyncIterator[bytes]:
            try:
                async for frame in frames:
                    yield frame
            finally:
                release()

        stream = held()
        weakref.finalize(stream, release)  # a stream dropped before it started
        return stream
