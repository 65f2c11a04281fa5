"""`BOBA_TRUSTED_PROXIES`: whose `X-Forwarded-For` is believed (CONTRACT §2).

Behind a reverse proxy every request comes from the proxy's address, so the rate limits
and the logs need the client address the proxy saw. That header is believed only from a
proxy named here (addresses or CIDRs); from anyone else it is ignored, since anyone can
send it. It is never used for Twilio signatures.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs; raises ValueError naming the bad entry."""
    networks: list[Network] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or CIDR") from None
    return tuple(networks)


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: str, proxies: Iterable[Network]) -> bool:
    parsed = _parse_address(address)
    return parsed is not None and any(parsed in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, proxies: tuple[Network, ...]
) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    `X-Forwarded-For` hop (from the right) that is not itself a trusted proxy."""
    address = peer or "unknown"
    if not proxies or not forwarded_for or not _trusted(address, proxies):
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if _parse_address(hop) is None:
            return address  # garbage from the client side: stop at the last good hop
        address = hop
        if not _trusted(hop, proxies):
            return hop
    return address
