"""The few places where quart 0.22 (Python 3.11) and quart 0.23 (Python 3.13) differ."""

from __future__ import annotations

from typing import Any, cast

from quart import websocket

try:  # quart >= 0.23 raises this from receive() when the peer leaves
    from quart.wrappers.base import ClientDisconnectedError  # type: ignore[attr-defined]
except ImportError:  # quart <= 0.22 cancels the handler instead

    class ClientDisconnectedError(Exception):  # type: ignore[no-redef]
        """Never raised on quart 0.22."""


def current_websocket() -> Any:
    """The real websocket object behind Quart's context proxy, safe to hand to other tasks."""
    return cast(Any, websocket)._get_current_object()


__all__ = ["ClientDisconnectedError", "current_websocket"]
