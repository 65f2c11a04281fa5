"""`create_app(services)`: the one Quart-Trio app; no globals, everything from Services.

Each feature registers its routes with one line below: `register_x(app, services)`.
"""

from __future__ import annotations

from quart import request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from boba_runtime.services import Services
from boba_web.api import register_api
from boba_web.errors import register_error_handlers
from boba_web.local_agent_route import register_local_agent_route
from boba_web.pages import register_pages
from boba_web.phone_routes import register_phone_routes
from boba_web.sse import register_sse
from boba_web.twilio_routes import register_twilio_routes

MAX_REQUEST_BYTES = 1024 * 1024  # larger bodies get 413 JSON


def create_app(services: Services) -> QuartTrio:
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

    register_api(app, services)
    register_sse(app, services)
    register_pages(app, services)
    register_twilio_routes(app, services)
    register_local_agent_route(app, services)
    register_phone_routes(app, services)
    # Other features register here, one line each: register_x(app, services).
    return app
