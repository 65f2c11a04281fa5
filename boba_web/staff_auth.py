"""The one staff check of every route (CONTRACT §3), with its limiter and origin rule.

* The staff password as HTTP Basic (any user) or `Authorization: Bearer`, or a session
  cookie that verifies and has not been ended by logout (a mark in the store, so the
  answer is the same on every worker and instance).
* A wrong password, by any means (Basic, Bearer, the login form, the `/phone/ws`
  handshake), is counted by the process's `CredentialLimiter` per client address and in
  all; past the limits further *wrong* ones get 429 with `Retry-After`. The password is
  checked first, so the right one always works.
* A state-changing request authenticated by the cookie must come from a page of
  `BOBA_PUBLIC_URL` (`Origin`, else `Referer`), else 403: a cross-site form or script
  cannot use the barista's session.
* The client address is the peer's, or, from a proxy in `BOBA_TRUSTED_PROXIES`, the one
  its `X-Forwarded-For` names.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from boba_runtime.config.auth import (
    SESSION_COOKIE,
    SESSION_ENDED,
    CredentialLimiter,
    Session,
    password_from_header,
    password_matches,
    verify_session_cookie,
)
from boba_runtime.config.logsafe import shown
from boba_runtime.config.proxies import client_address
from boba_runtime.store.order_store import StoreError

log = logging.getLogger("boba.web")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Verdict(enum.Enum):
    PASSWORD = "password"  # the staff password in the Authorization header
    SESSION = "session"  # a live session cookie
    MISSING = "missing"  # no credential at all (or only a dead cookie)
    WRONG = "wrong"  # a wrong password: counted
    LIMITED = "limited"  # a wrong password from an address (or everyone) over the limit


@dataclass(frozen=True)
class StaffCheck:
    verdict: Verdict
    retry_after: int = 0  # whole seconds, for LIMITED

    @property
    def ok(self) -> bool:
        return self.verdict in (Verdict.PASSWORD, Verdict.SESSION)


def limiter_of(services: Any) -> CredentialLimiter:
    """The process's limiter (a `Services` field); made once if a test's services lack it."""
    limiter = getattr(services, "credential_limiter", None)
    if limiter is None:
        raise RuntimeError("services has no credential_limiter")
    assert isinstance(limiter, CredentialLimiter)
    return limiter


def address_of(services: Any, scope: Any, headers: Any) -> str:
    """The client's address for limits and logs (`BOBA_TRUSTED_PROXIES` honoured)."""
    client = scope.get("client") if hasattr(scope, "get") else None
    peer = str(client[0]) if client else None
    settings = getattr(services, "settings", None)
    proxies = settings.proxy_networks if settings is not None else ()
    return client_address(peer, headers.get("X-Forwarded-For"), proxies)


async def session_alive(services: Any, session: Session) -> bool:
    """False when logout ended this session (on any worker or instance)."""
    store = getattr(services, "store", None)
    if store is None:
        return True
    try:
        return not await store.has_mark(SESSION_ENDED, session.session_id)
    except StoreError:
        # Cannot tell whether it was ended: refuse (fail closed), the password still works.
        log.warning("staff session check: the store does not answer; session refused")
        return False


def count_wrong_password(
    services: Any, address: str, *, per_address: int | None = None
) -> StaffCheck:
    """A wrong password from `address`: 429 over the limit, else counted (401)."""
    limiter = limiter_of(services)
    wait = limiter.retry_after(address, per_address=per_address)
    if wait is not None:
        # DEBUG: a guessing script must not flood the log; the first refusals were logged.
        log.debug("wrong staff password from %s refused: too many (429)", shown(address))
        return StaffCheck(Verdict.LIMITED, retry_after=int(wait + 0.999))
    limiter.failed(address)
    log.info("wrong staff password from %s", shown(address))
    return StaffCheck(Verdict.WRONG)


async def check_staff(services: Any, scope: Any, headers: Any, cookies: Any) -> StaffCheck:
    """The staff check of one request or WebSocket handshake."""
    given = password_from_header(headers.get("Authorization"))
    if given is not None:
        if password_matches(given, services.staff_password):
            return StaffCheck(Verdict.PASSWORD)
        session = verify_session_cookie(
            services.secret_key, cookies.get(SESSION_COOKIE), services.clock(),
            password=services.staff_password,
        )
        if session is not None and await session_alive(services, session):
            return StaffCheck(Verdict.SESSION)  # a valid session still counts
        return count_wrong_password(services, address_of(services, scope, headers))
    session = verify_session_cookie(
        services.secret_key, cookies.get(SESSION_COOKIE), services.clock(),
        password=services.staff_password,
    )
    if session is not None and await session_alive(services, session):
        return StaffCheck(Verdict.SESSION)
    return StaffCheck(Verdict.MISSING)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def from_public_origin(settings: Any, headers: Any, own_origin: str | None = None) -> bool:
    """True when `Origin` (or, without one, `Referer`) is a page of `BOBA_PUBLIC_URL`.

    While `BOBA_PUBLIC_URL` is not set explicitly (local development: the default names
    127.0.0.1 and the configured port), this server's own origin as the browser addressed
    it (`own_origin`, scheme + `Host`) counts too. A cookie is sent only to the site that
    set it, so a page that reached us under another name cannot use the session anyway.
    """
    allowed = {origin_of(settings.public_url)}
    if own_origin and getattr(settings, "public_url_is_default", False):
        allowed.add(origin_of(own_origin))
    origin = headers.get("Origin")
    if origin and origin != "null":
        return origin_of(origin) in allowed
    referer = headers.get("Referer")
    if referer:
        return origin_of(referer) in allowed
    return False
