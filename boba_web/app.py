"""The composition root: where the shop is wired together, once, importing what it wires.

    boba serve ─▶ serve_command ─▶ boba_runtime.cli.serve.main(app_factory=create_app)
                                   └── open_services(settings) ─▶ create_app(services)
                                       ├── build_call_deps(services)   one CallDeps (with the
                                       │                               call-record tap)
                                       ├── agent_connector(...)        Deepgram / fake / local
                                       └── register_x(app, ...)        the routes

Why here, in `boba_web`, and not in a fourth package: the web layer is already the top
of the one-way stack (web ─▶ runtime ─▶ proto), nothing imports it, and it is the only
layer that may import both of the others, which is exactly what a composition root
needs. A separate package would hold just this module and add a layer to every map.
The runtime never names this module: `boba serve` reaches it through the `boba.commands`
entry point declared in pyproject.toml (the runtime's `boba` dispatcher lists the
commands the installed distribution provides), so the no-upward-import test can see the
whole dependency graph.

No module-level state: everything is built per call of `create_app` from `Services`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from quart import request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from boba_proto.call import CallConfig
from boba_proto.menu import Menu
from boba_runtime.agent.server import in_process_connector
from boba_runtime.call.agent_link import AgentConnector, local_agent_url, websocket_connector
from boba_runtime.call.media_batch import CallerAudioBatcher
from boba_runtime.call.preopen import PreopenedAgents
from boba_runtime.call.recorder import recorder_factory
from boba_runtime.call.registry import ENDED_SECONDS, CallOutcome
from boba_runtime.call.runner import (
    AgentChooser,
    CallDeps,
    CallRecorderLike,
    CallWiring,
    ShareOutcome,
    call_config_from_settings,
)
from boba_runtime.cli import serve
from boba_runtime.config.settings import WILDCARD_HOSTS, Settings, is_loopback_host
from boba_runtime.services import Services
from boba_runtime.store.order_store import StoreError
from boba_web.api import register_api
from boba_web.calls_routes import register_calls_routes
from boba_web.errors import register_error_handlers
from boba_web.local_agent_route import register_local_agent_route
from boba_web.pages import register_pages
from boba_web.phone_routes import register_phone_routes
from boba_web.reports import register_report_routes
from boba_web.shop_routes import register_shop_routes
from boba_web.sse import register_sse
from boba_web.twilio_routes import register_twilio_routes

MAX_REQUEST_BYTES = 1024 * 1024  # larger bodies get 413 JSON


# --- calls ------------------------------------------------------------------------------------


log = logging.getLogger(__name__)


def outcome_sharer(services: Services) -> ShareOutcome:
    """How a call ended, saved in the store for `/voice/after` on any instance; a store
    that does not answer costs only the apology on another instance (logged)."""
    store = services.store

    async def share(call_sid: str, outcome: CallOutcome) -> None:
        expires_at = store.clock() + timedelta(seconds=ENDED_SECONDS)
        try:
            await store.save_call_outcome(call_sid, outcome.value, expires_at=expires_at)
        except StoreError as exc:
            log.warning("call %s: could not store how it ended (%s)", call_sid, exc)

    return share


def build_call_deps(services: Services) -> CallDeps:
    """What every call of this process shares: built once per app, for `/twilio` and
    `/phone/ws` alike."""
    settings = services.settings
    open_recorder: Callable[[CallConfig], CallRecorderLike] | None = (
        recorder_factory(settings.record_dir) if settings.record_dir else None
    )
    if services.call_records is not None:  # every call kept with its transcript (§13)
        open_recorder = services.call_records.recorder_factory(open_recorder)
    # No commit hook: the store's own change signal wakes the event feed and the SMS worker.
    return CallDeps(
        config=call_config_from_settings(settings, services.menu),
        store=services.store,
        registry=services.calls,
        max_message_bytes=settings.max_message_bytes,
        metrics=services.metrics,
        open_recorder=open_recorder,
        # One batcher per process: every call's caller audio resampled in one step per pass.
        caller_audio=CallerAudioBatcher(),
        preopened=PreopenedAgents(),  # DESIGN §5: opened at /voice, used within 5 s
        shop=services.shop,
        share_outcome=outcome_sharer(services),
    )


def agent_connector(
    settings: Settings, scope: Mapping[str, Any], menu: Menu | None = None
) -> AgentConnector:
    """Deepgram (or a fake) from `BOBA_AGENT_URL`; `local` = this server's `/agent/local`
    (in process when serving TLS: our certificate names the public host, not 127.0.0.1).
    `scope` is the call socket's ASGI scope: its `server` is where this server was reached."""
    url = settings.agent_url
    if url == "local" and settings.tls_enabled and menu is not None:
        return in_process_connector(menu)
    if url == "local":
        host, port = scope.get("server") or (settings.host, settings.port)
        host = str(host).strip("[]")
        if not is_loopback_host(host):
            if host not in WILDCARD_HOSTS and settings.host not in WILDCARD_HOSTS and menu:
                # Bound to one outside address only: loopback does not reach us. In process.
                return in_process_connector(menu)
            # A wildcard bind (containers): the call arrived on an outside address, which
            # `/agent/local` refuses; our own loopback address reaches the same server.
            host = "::1" if ":" in host else "127.0.0.1"
        url = local_agent_url(host, int(port), tls=settings.tls_enabled)
        # Our own server on loopback: no key, and its certificate names the public host.
        return websocket_connector(
            url, api_key=None, max_message_bytes=settings.max_message_bytes, verify_tls=False
        )
    return websocket_connector(
        url, api_key=settings.deepgram_api_key, max_message_bytes=settings.max_message_bytes
    )


def call_wiring(services: Services) -> CallWiring:
    """The shared `CallDeps` and the agent choice, handed to both call routes."""
    settings, menu = services.settings, services.menu

    def choose_agent(scope: Mapping[str, Any]) -> AgentConnector:
        return agent_connector(settings, scope, menu)

    chooser: AgentChooser = choose_agent
    return CallWiring(deps=build_call_deps(services), choose_agent=chooser)


# --- the app ----------------------------------------------------------------------------------


def create_app(services: Services) -> QuartTrio:
    """The one Quart-Trio app; each feature registers its routes with one line below."""
    app = QuartTrio("boba_web")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.extensions["boba_services"] = services
    register_error_handlers(app)

    @app.before_request
    async def refuse_large_bodies() -> None:
        # Quart checks MAX_CONTENT_LENGTH only when a handler reads the body; refuse early.
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            raise RequestEntityTooLarge()
        if request.content_length or "chunked" in request.headers.get("Transfer-Encoding", ""):
            # Read every (≤ 1 MiB) body, also where the handler ignores it: Hypercorn leaves
            # a kept-alive connection hanging when a response ends before its request body.
            await request.get_data(cache=True)

    calls = call_wiring(services)
    register_api(app, services)
    register_sse(app, services)
    register_pages(app, services)
    register_twilio_routes(app, services, calls)
    register_local_agent_route(app, services)
    register_phone_routes(app, services, calls)
    register_calls_routes(app, services)
    register_report_routes(app, services)
    register_shop_routes(app, services)
    # Other features register here, one line each: register_x(app, services).
    return app


# --- the command ------------------------------------------------------------------------------


def serve_command(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    """`boba serve` (the `boba.commands` entry point): the runtime's server with this app."""
    return serve.main(argv, environ, app_factory=create_app)
