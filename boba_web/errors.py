"""JSON errors on every route: `{"error": "<one readable sentence>"}` with the right status.

Never a stack trace, never an HTML error page (CONTRACT §3). Unexpected exceptions are
logged here with their traceback and answered with a plain 500.
"""

from __future__ import annotations

import logging

import msgspec
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

log = logging.getLogger("boba.web")

SENTENCES = {
    400: "The request is malformed.",
    401: "Staff authentication is required.",
    403: "This is not allowed.",
    404: "There is nothing at this address.",
    405: "This method is not allowed here.",
    409: "That change is not possible in the order's current state.",
    413: "The request is too large.",
    429: "Too many requests; try again in a minute.",
    500: "Something went wrong on our side.",
    503: "The service is unavailable right now; try again shortly.",
}


def as_sentence(text: str) -> str:
    """Lower-level messages ("order 1234 is ready; …") as one readable sentence."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def json_error(status: int, sentence: str | None = None, **headers: str) -> Response:
    """The one shape of an error response."""
    text = as_sentence(sentence) if sentence else SENTENCES.get(status, "Request failed.")
    body = msgspec.json.encode({"error": text})
    response = Response(body, status=status, content_type="application/json")
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def register_error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        response = json_error(status)
        allowed = getattr(error, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        if status == 413:
            # The body was refused unread, so the rest of it is still on the connection: a
            # kept-alive connection would take it for the next request and hang. Close it.
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        log.error("unhandled error in a request", exc_info=error)
        return json_error(500)
