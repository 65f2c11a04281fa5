"""`WS /agent/local`: the built-in local agent (CONTRACT §9), for `BOBA_AGENT_URL=local`.

The bridge reaches it exactly as it reaches Deepgram: a WebSocket speaking the Voice Agent
protocol (`boba_runtime.agent.server`). It is meant for this host only: a peer that
is not a loopback address, or a request that came through a proxy (any forwarding
header), is refused with 403 before the socket is accepted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Any

from quart import Response
from quart_trio import QuartTrio

from boba_runtime.agent.server import serve_local_agent
from boba_runtime.agent.speech import load_speech
from boba_runtime.agent.speech.agent import serve_speaking_agent
from boba_runtime.services import Services
from boba_web.compat import ClientDisconnectedError, current_websocket

log = logging.getLogger(__name__)

PATH = "/agent/local"
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host")


def from_this_host(scope: dict[str, Any], headers: Any) -> bool:
    """True for a direct connection from a loopback address (no proxy in between)."""
    client = scope.get("client")
    if not client:
        return False
    try:
        loopback = ipaddress.ip_address(str(client[0]).strip("[]")).is_loopback
    except ValueError:
        return False
    return loopback and not any(headers.get(name) for name in FORWARDING_HEADERS)


def register_local_agent_route(app: QuartTrio, services: Services) -> None:
    menu = services.menu
    # None without `pip install .[speech]` (said once in the log at start).
    speaks = services.settings.agent_url == "local" and services.settings.local_speech != "off"
    speech = load_speech(menu) if speaks else None

    @app.websocket(PATH)
    async def local_agent() -> Response | None:
        ws = current_websocket()
        if not from_this_host(ws.scope, ws.headers):
            log.warning("WS %s refused: not a direct connection from this host", PATH)
            return Response("Forbidden: the local agent serves this host only\n", 403,
                            mimetype="text/plain")
        await ws.accept()
        with contextlib.suppress(ClientDisconnectedError):
            if speech is not None:
                await serve_speaking_agent(ws, menu, speech)
            else:
                await serve_local_agent(ws, menu)
            await ws.close(1000)
        return None
