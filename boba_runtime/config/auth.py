"""Staff authentication: the password as Basic or Bearer, or a signed session cookie.

Every comparison of a secret is `hmac.compare_digest`, so response time does not tell an
attacker how much of a guess was right. Session cookies are `issued_at.signature` with
an HMAC-SHA256 over the timestamp; they need no server-side storage, so every worker and
every instance sharing `BOBA_SECRET_KEY` accepts them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime, timedelta

SESSION_COOKIE = "boba_session"
SESSION_LIFETIME = timedelta(hours=12)
_COOKIE_PURPOSE = b"boba-session-v1:"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


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


def _signature(secret_key: bytes, issued: int) -> str:
    mac = hmac.new(secret_key, _COOKIE_PURPOSE + str(issued).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def make_session_cookie(secret_key: bytes, now: datetime) -> str:
    """A cookie value valid for SESSION_LIFETIME from `now` (an aware UTC datetime)."""
    issued = int(now.timestamp())
    return f"{issued}.{_signature(secret_key, issued)}"


def verify_session_cookie(secret_key: bytes, value: str | None, now: datetime) -> bool:
    if not value:
        return False
    issued_text, sep, signature = value.partition(".")
    if not sep or not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    if not _same(signature, _signature(secret_key, issued)):
        return False
    age = now.timestamp() - issued
    return -60 <= age < SESSION_LIFETIME.total_seconds()  # a minute of clock skew allowed


def staff_authorized(
    authorization_header: str | None,
    cookie_value: str | None,
    *,
    password: str,
    secret_key: bytes,
    now: datetime,
) -> bool:
    """True for the staff password as Basic/Bearer, or a valid `boba_session` cookie."""
    given = password_from_header(authorization_header)
    if given is not None and _same(given, password):
        return True
    return verify_session_cookie(secret_key, cookie_value, now)
