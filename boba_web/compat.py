"""The few places where quart 0.22 (Python 3.11) and quart 0.23 (Python 3.13) differ, and
`QuartPhone`, the call runtime's phone side over a Quart websocket, which hides them."""

from __future__ import annotations

import contextlib
from typing import Any, cast

from quart import websocket

from boba_runtime.call.runner import CLOSE_NORMAL, PhoneClosed

try:  # quart >= 0.23 raises this from receive() when the peer leaves
    from quart.wrappers.base import ClientDisconnectedError  # type: ignore[attr-defined]
except ImportError:  # quart <= 0.22 cancels the handler instead

    class ClientDisconnectedError(Exception):  # type: ignore[no-redef]
        """Never raised on quart 0.22."""


def current_websocket() -> Any:
    """The real websocket object behind Quart's context proxy, safe to hand to other tasks."""
    return cast(Any, websocket)._get_current_object()


class QuartPhone:
    """`call_runner.PhoneSide` over the current Quart websocket."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._closed = False

    async def receive(self) -> str | bytes:
        try:
            data: str | bytes = await self._ws.receive()
        except ClientDisconnectedError:
            raise PhoneClosed from None
        return data

    async def send(self, text: str) -> None:
        if self._closed:
            raise PhoneClosed
        try:
            await self._ws.send(text)
        except ClientDisconnectedError:
            raise PhoneClosed from None

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ClientDisconnectedError):
            await self._ws.close(code, reason)


__all__ = ["ClientDisconnectedError", "QuartPhone", "current_websocket"]
