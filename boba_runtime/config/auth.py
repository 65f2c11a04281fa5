"""Staff authentication: the password as Basic or Bearer, or a signed, revocable session.

Every comparison of a secret is `hmac.compare_digest`, so response time does not tell an
attacker how much of a guess was right.

Session cookies are `issued.session_id.signature`: an HMAC-SHA256 over the three with the
session key derived from `BOBA_SECRET_KEY` (`boba_runtime.config.keys`) *and* a fingerprint of
the staff password, so changing `BOBA_STAFF_PASSWORD` ends every session at once. Logout
ends one session on the server: its id is marked ended in the store (`claim_once`),
which every worker and every instance sharing the store consults
(`boba_web.staff_auth`).

`CredentialLimiter` is the one limiter of every staff password check (CONTRACT §3).
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from boba_runtime.config.keys import SESSION_COOKIES, derive_key

SESSION_COOKIE = "boba_session"
SESSION_LIFETIME = timedelta(hours=12)
SESSION_ENDED: Final = "session-ended"
"""The store's mark kind for a session ended by logout."""
_COOKIE_PURPOSE = b"boba-session-v2\x00"
_MAX_SESSION_ID_CHARS = 64


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def password_matches(given: str | None, password: str) -> bool:
    """Constant-time check of a presented password (None or empty never matches)."""
    return bool(given) and given is not None and _same(given, password)


def password_from_header(authorization: str | None) -> str | None:
    """The password carried by `Basic <user:password>` (any user) or `Bearer <password>`."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, sep, password = decoded.partition(":")
        return password if sep else None
    return None


def _signature(secret_key: bytes, password: str, issued: int, session_id: str) -> str:
    key = derive_key(secret_key, SESSION_COOKIES)
    fingerprint = hashlib.sha256(password.encode("utf-8")).digest()
    message = b"\x00".join((fingerprint, str(issued).encode(), session_id.encode("ascii")))
    mac = hmac.new(key, _COOKIE_PURPOSE + message, hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def make_session_cookie(secret_key: bytes, now: datetime, *, password: str) -> str:
    """A new session's cookie value, valid for SESSION_LIFETIME from `now` (aware UTC)."""
    issued = int(now.timestamp())
    session_id = secrets.token_urlsafe(16)
    return f"{issued}.{session_id}.{_signature(secret_key, password, issued, session_id)}"


class Session:
    """A session cookie that verified: its id and when it stops being valid anyway."""

    __slots__ = ("expires_at", "session_id")

    def __init__(self, session_id: str, expires_at: datetime) -> None:
        self.session_id = session_id
        self.expires_at = expires_at


def verify_session_cookie(
    secret_key: bytes, value: str | None, now: datetime, *, password: str
) -> Session | None:
    """The session a cookie names when its signature, age and password still hold; else
    None. Whether it was ended by logout is for the store to say (`SESSION_ENDED`)."""
    if not value:
        return None
    parts = value.split(".")
    if len(parts) != 3:
        return None
    issued_text, session_id, signature = parts
    if not issued_text.isascii() or not issued_text.isdigit() or len(issued_text) > 12:
        return None
    if not session_id.isascii() or not 0 < len(session_id) <= _MAX_SESSION_ID_CHARS:
        return None
    issued = int(issued_text)
    if not _same(signature, _signature(secret_key, password, issued, session_id)):
        return None
    age = now.timestamp() - issued
    if not -60 <= age < SESSION_LIFETIME.total_seconds():  # a minute of clock skew allowed
        return None
    return Session(session_id, datetime.fromtimestamp(issued, now.tzinfo) + SESSION_LIFETIME)


# --- the limiter --------------------------------------------------------------------------

PER_ADDRESS_LIMIT: Final = 10
"""Wrong staff passwords a minute from one address before further wrong ones get 429."""
LOGIN_PER_ADDRESS_LIMIT: Final = 5
"""The login form's own, stricter count (CONTRACT §3 `POST /login`)."""
TOTAL_LIMIT: Final = 50
"""Wrong staff passwords a minute from everyone together (the credential's own count)."""
WINDOW_S: Final = 60.0


class CredentialLimiter:
    """Counts wrong staff passwords per client address *and* per credential (all
    addresses together) over a sliding window; one per process, for every means of
    presenting the password (Basic, Bearer, the login form, `/phone/ws`).

    Only wrong guesses are limited: the caller checks the password first, so the right
    password always works, also from an address that is being refused. Memory is
    bounded: past `max_addresses` the address seen longest ago is forgotten first.
    """

    def __init__(
        self,
        *,
        per_address: int = PER_ADDRESS_LIMIT,
        total: int = TOTAL_LIMIT,
        window_s: float = WINDOW_S,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_address = per_address
        self.total = total
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._by_address: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._all: collections.deque[float] = collections.deque()

    def _trim(self, times: collections.deque[float]) -> collections.deque[float]:
        now = self._clock()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def _address_times(self, address: str) -> collections.deque[float]:
        times = self._by_address.get(address)
        if times is None:
            return collections.deque()
        self._trim(times)
        if not times:
            del self._by_address[address]
        return times

    def retry_after(self, address: str, *, per_address: int | None = None) -> float | None:
        """Seconds until a wrong guess from `address` is counted again, or None when it
        may be tried now. `per_address` overrides the per-address limit (login: 5)."""
        limit = self.per_address if per_address is None else per_address
        now = self._clock()
        waits = []
        times = self._address_times(address)
        if len(times) >= limit:
            waits.append(self.window_s - (now - times[-limit]))
        everyone = self._trim(self._all)
        if len(everyone) >= self.total:
            waits.append(self.window_s - (now - everyone[-self.total]))
        if not waits:
            return None
        return max(1.0, max(waits))

    def failed(self, address: str) -> None:
        now = self._clock()
        times = self._address_times(address)
        times.append(now)
        self._by_address[address] = times
        self._by_address.move_to_end(address)
        while len(self._by_address) > self.max_addresses:
            self._by_address.popitem(last=False)
        self._trim(self._all).append(now)
        while len(self._all) > self.total:
            self._all.popleft()  # only the newest `total` can matter

    def succeeded(self, address: str) -> None:
        """The right password from `address`: its own count starts again."""
        self._by_address.pop(address, None)
