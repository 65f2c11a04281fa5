"""The staff check every staff-only route and socket shares (CONTRACT §3): the password
(Basic or Bearer) or a live session cookie, the one wrong-password limiter, the origin rule
for cookie-authenticated changes and `no-store` on staff JSON (`boba_web.staff_auth` does
the checking)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import ParamSpec, Protocol

from quart import Response, request

from boba_web.errors import json_error
from boba_web.staff_auth import (
    SAFE_METHODS,
    StaffCheck,
    Verdict,
    check_staff,
    from_public_origin,
)

P = ParamSpec("P")


class StaffSecrets(Protocol):
    """What the staff check needs from `boba_runtime.services.Services`."""

    @property
    def staff_password(self) -> str: ...

    @property
    def secret_key(self) -> bytes: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...


async def request_staff_check(services: StaffSecrets) -> StaffCheck:
    """The staff check of the current request (see `boba_web.staff_auth`)."""
    return await check_staff(services, request.scope, request.headers, request.cookies)


async def request_is_staff(services: StaffSecrets) -> bool:
    """True when the current request carries the staff password or a live session."""
    return (await request_staff_check(services)).ok


def staff_refusal(check: StaffCheck, sentence: str, **headers: str) -> Response:
    """401 (or 429 with Retry-After for a wrong password over the limit) as JSON."""
    if check.verdict is Verdict.LIMITED:
        return json_error(
            429, "Too many wrong staff passwords; try again later.",
            Retry_After=str(check.retry_after),
        )
    return json_error(401, sentence, **headers)


def staff_only(
    services: StaffSecrets,
) -> Callable[[Callable[P, Awaitable[Response]]], Callable[P, Awaitable[Response]]]:
    """Decorator: 401/429 JSON unless the request is staff; 403 for a cookie-authenticated
    change from a page of another site; `Cache-Control: no-store` on what it answers."""

    def decorate(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        @functools.wraps(handler)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> Response:
            check = await request_staff_check(services)
            if not check.ok:
                return staff_refusal(
                    check,
                    "Staff authentication is required: send the staff password as Basic or "
                    "Bearer, or log in.",
                    WWW_Authenticate='Bearer realm="boba"',
                )
            settings = getattr(services, "settings", None)
            if (
                check.verdict is Verdict.SESSION
                and request.method not in SAFE_METHODS
                and settings is not None
                and not from_public_origin(settings, request.headers, request.host_url)
            ):
                return json_error(403, "Make changes from this shop's own pages.")
            response = await handler(*args, **kwargs)
            response.headers["Cache-Control"] = "no-store"
            return response

        return guarded

    return decorate


