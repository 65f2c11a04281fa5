"""Who is the client? `X-Forwarded-For`, believed only from `BOBA_TRUSTED_PROXIES`.

Behind a TLS proxy every request comes from the proxy's address, so per-address rate
limits would lump all clients together. The proxy says who the client was in
`X-Forwarded-For`; anyone can send that header, so it counts only when the connection
comes from a configured proxy. The list is read right to left (each proxy appends the
address it saw), skipping trusted proxies; the first address that is not one is the
client. Never used for Twilio signatures (those use `BOBA_PUBLIC_URL` only).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             trusted: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]
) -> str:
    """The client's address for rate limits and logs (see the module doc)."""
    shown = peer or "unknown"
    if not forwarded_for or not _trusted(_address(peer or ""), trusted):
        return shown
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return shown  # garbage from a client: fall back to the proxy, not the garbage
        if not _trusted(address, trusted):
            return str(address)
    first = _address(hops[0]) if hops else None
    return str(first) if first is not None else shown
