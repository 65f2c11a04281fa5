"""Staff authentication (boba_runtime.config.auth): Basic (any user), Bearer, session cookies."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from boba_runtime.config.auth import (
    make_session_cookie,
    password_from_header,
    verify_session_cookie,
)
from boba_runtime.config.keys import SESSION_COOKIES, STREAM_TOKENS, derive_key

KEY = b"k" * 32
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
PW = "a long staff password"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("header", "password"), [
    (basic("barista", "pw:with:colons"), "pw:with:colons"),
    (basic("", "pw"), "pw"),
    ("Bearer pw", "pw"),
    ("bearer   pw  ", "pw"),
    ("Basic !!!", None),
    ("Basic " + base64.b64encode(b"no-colon").decode(), None),
    ("Token pw", None),
    ("Bearer", None),
    ("", None),
    (None, None),
])
def test_password_from_header(header: str | None, password: str | None) -> None:
    assert password_from_header(header) == password


def test_session_cookie_lifetime_and_signature() -> None:
    cookie = make_session_cookie(KEY, NOW, password=PW)

    def valid(value: str | None, now: datetime = NOW, key: bytes = KEY, pw: str = PW) -> bool:
        return verify_session_cookie(key, value, now, password=pw) is not None

    assert valid(cookie)
    assert valid(cookie, NOW + timedelta(hours=11, minutes=59))
    assert not valid(cookie, NOW + timedelta(hours=12))
    assert not valid(cookie, NOW - timedelta(minutes=5))  # from the future
    assert not valid(cookie, key=b"other key")
    issued, session_id, signature = cookie.split(".")
    assert not valid(f"{int(issued) + 3600}.{session_id}.{signature}")
    assert not valid(f"{issued}.other-session.{signature}")
    for junk in ("", ".", "abc.def", "1" * 40 + ".x.y", cookie + "x", None):
        assert not valid(junk)


def test_changing_the_staff_password_ends_every_session() -> None:
    cookie = make_session_cookie(KEY, NOW, password=PW)
    assert verify_session_cookie(KEY, cookie, NOW, password=PW) is not None
    assert verify_session_cookie(KEY, cookie, NOW, password=PW + "!") is None


def test_each_login_is_its_own_session() -> None:
    first = verify_session_cookie(KEY, make_session_cookie(KEY, NOW, password=PW), NOW,
                                  password=PW)
    second = verify_session_cookie(KEY, make_session_cookie(KEY, NOW, password=PW), NOW,
                                   password=PW)
    assert first is not None and second is not None
    assert first.session_id != second.session_id
    assert first.expires_at == NOW + timedelta(hours=12)


def test_cookie_key_is_derived_per_purpose() -> None:
    """A MAC made with the root key (the old scheme) is no session cookie."""
    import hashlib
    import hmac

    issued = int(NOW.timestamp())
    root_mac = hmac.new(KEY, f"{issued}".encode(), hashlib.sha256).digest()
    forged = f"{issued}.s.{base64.urlsafe_b64encode(root_mac).decode().rstrip('=')}"
    assert verify_session_cookie(KEY, forged, NOW, password=PW) is None
    assert derive_key(KEY, SESSION_COOKIES) != derive_key(KEY, STREAM_TOKENS)
    assert KEY not in (derive_key(KEY, SESSION_COOKIES), derive_key(KEY, STREAM_TOKENS))
