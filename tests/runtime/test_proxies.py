"""BOBA_TRUSTED_PROXIES: X-Forwarded-For counts only from a trusted proxy (issue 16.1)."""

from __future__ import annotations

import pytest

from boba_runtime.config.proxies import client_address, parse_trusted_proxies
from boba_runtime.config.settings import SettingsError, load_settings

TRUSTED = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, ::1")


@pytest.mark.parametrize(("peer", "header", "expected"), [
    ("203.0.113.9", None, "203.0.113.9"),  # no proxy
    ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # a client claiming anything: ignored
    ("127.0.0.1", "198.51.100.1", "198.51.100.1"),  # our nginx says who it was
    ("127.0.0.1", "1.1.1.1, 198.51.100.1", "198.51.100.1"),  # the client's own claim: skipped
    ("127.0.0.1", "198.51.100.1, 10.1.2.3", "198.51.100.1"),  # two proxies of ours
    ("127.0.0.1", "10.1.2.3, 10.1.2.4", "10.1.2.3"),  # all trusted: the leftmost
    ("127.0.0.1", "not-an-address", "127.0.0.1"),  # garbage: the proxy itself
    ("::1", "198.51.100.7", "198.51.100.7"),
    (None, "198.51.100.1", "unknown"),
])
def test_client_address(peer: str | None, header: str | None, expected: str) -> None:
    assert client_address(peer, header, TRUSTED) == expected


def test_without_trusted_proxies_the_header_never_counts() -> None:
    assert client_address("127.0.0.1", "198.51.100.1", ()) == "127.0.0.1"


def test_the_setting_parses_addresses_and_networks() -> None:
    settings = load_settings({}, {"BOBA_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"}, None)
    assert [str(n) for n in settings.proxy_networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert load_settings({}, {}, None).proxy_networks == ()
    with pytest.raises(SettingsError) as bad:
        load_settings({}, {"BOBA_TRUSTED_PROXIES": "127.0.0.1, proxy.local"}, None)
    assert bad.value.variable == "BOBA_TRUSTED_PROXIES" and "proxy.local" in str(bad.value)
