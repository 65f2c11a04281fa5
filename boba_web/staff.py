"""The staff check every staff-only route and socket shares: the password (Basic or Bearer)
or a valid session cookie (`boba_runtime.config.auth` does the checking)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, ParamSpec, Protocol

from quart import Response, request

from boba_runtime.config.auth import SESSION_COOKIE, staff_authorized
from boba_web.errors import json_error

P = ParamSpec("P")


class StaffSecrets(Protocol):
    """What the staff check needs from `boba_runtime.services.Services`."""

    @property
    def staff_password(self) -> str: ...

    @property
    def secret_key(self) -> bytes: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...


def has_staff_credentials(services: StaffSecrets, headers: Any, cookies: Any) -> bool:
    """The one staff check of every route: the password (Basic or Bearer) in `headers`, or
    a valid session in `cookies` (a request's or a WebSocket handshake's)."""
    return staff_authorized(
        headers.get("Authorization"),
        cookies.get(SESSION_COOKIE),
        password=services.staff_password,
        secret_key=services.secret_key,
        now=services.clock(),
    )


def request_is_staff(services: StaffSecrets) -> bool:
    """True when the current request carries the staff password or a valid session."""
    return has_staff_credentials(services, request.headers, request.cookies)


def staff_only(
    services: StaffSecrets,
) -> Callable[[Callable[P, Awaitable[Response]]], Callable[P, Awaitable[Response]]]:
    """Decorator: 401 JSON unless `request_is_staff`."""

    def decorate(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        @functools.wraps(handler)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> Response:
            if not request_is_staff(services):
                return json_error(
                    401,
                    "Staff authentication is required: send the staff password as Basic or "
                    "Bearer, or log in.",
                    WWW_Authenticate='Bearer realm="boba"',
                )
            return await handler(*args, **kwargs)

        return guarded

    return decorate
