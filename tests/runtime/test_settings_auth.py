"""Staff authentication (boba_runtime.config.auth): Basic (any user), Bearer, session cookies."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from boba_runtime.config.auth import (
    make_session_cookie,
    password_from_header,
    staff_authorized,
    verify_session_cookie,
)

KEY = b"k" * 32
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)


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


def test_staff_authorized_by_password_or_cookie() -> None:
    def ok(header: str | None, cookie: str | None = None) -> bool:
        return staff_authorized(header, cookie, password="pw", secret_key=KEY, now=NOW)

    assert ok("Bearer pw") and ok(basic("anyone", "pw"))
    assert not ok("Bearer pW") and not ok("Bearer pw2") and not ok(None)
    assert ok(None, make_session_cookie(KEY, NOW))
    assert ok("Bearer wrong", make_session_cookie(KEY, NOW))  # a valid session still counts


def test_session_cookie_lifetime_and_signature() -> None:
    cookie = make_session_cookie(KEY, NOW)
    assert verify_session_cookie(KEY, cookie, NOW)
    assert verify_session_cookie(KEY, cookie, NOW + timedelta(hours=11, minutes=59))
    assert not verify_session_cookie(KEY, cookie, NOW + timedelta(hours=12))
    assert not verify_session_cookie(KEY, cookie, NOW - timedelta(minutes=5))  # from the future
    assert not verify_session_cookie(b"other key", cookie, NOW)
    issued, signature = cookie.split(".")
    assert not verify_session_cookie(KEY, f"{int(issued) + 3600}.{signature}", NOW)
    for junk in ("", ".", "abc.def", "1" * 40 + ".x", cookie + "x", None):
        assert not verify_session_cookie(KEY, junk, NOW)
