"""Per-call stream tokens (CONTRACT §3 `WS /twilio`).

`/voice` puts a token into the TwiML's `<Parameter name="token">`; the `/twilio` stream's
`start` event must bring it back. The token is `{expiry}.{mac}`: an HMAC over the
`callSid`, the `caller` (the `From` that `/voice` saw) and the expiry (60 s after issue),
with the stream-token key derived from `BOBA_SECRET_KEY`. So it cannot be moved to
another call or another caller number, it dies a minute after issue, and any worker or
instance sharing the key can check it without a table. That it is accepted only *once*
is kept in the store (`claim_once`), because a replay may reach another worker.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from boba_runtime.config.keys import STREAM_TOKENS, derive_key

TOKEN_TTL_S: Final = 60.0
"""How long after `/voice` answers the stream's `start` may present the token."""
MAC_BYTES: Final = 16
MAX_EXPIRY_DIGITS: Final = 12


def stream_key(secret_key: bytes) -> bytes:
    return derive_key(secret_key, STREAM_TOKENS)


def _mac(key: bytes, call_sid: str, caller: str, expiry: int) -> str:
    message = b"\x00".join(
        (call_sid.encode("utf-8"), caller.encode("utf-8"), str(expiry).encode("ascii"))
    )
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES].hex()


def issue_token(key: bytes, call_sid: str, caller: str, *, now: float,
                ttl: float = TOKEN_TTL_S) -> str:
    """The token for this call and caller, valid until `now + ttl` (Unix seconds)."""
    expiry = int(now + ttl)
    return f"{expiry}.{_mac(key, call_sid, caller, expiry)}"


def token_expiry(token: str) -> int | None:
    """The expiry a well-formed token names (not checked), or None."""
    expiry_text, sep, _mac_text = token.partition(".")
    if not sep or not expiry_text.isascii() or not expiry_text.isdigit():
        return None
    if len(expiry_text) > MAX_EXPIRY_DIGITS:
        return None
    return int(expiry_text)


def token_problem(key: bytes, call_sid: str, caller: str, token: str, *,
                  now: float) -> str | None:
    """None when `token` was issued for this callSid and caller and is still valid; else
    why not, as a phrase for the log (never containing the token itself)."""
    if not call_sid or not token:
        return "the stream's start has no callSid or no token"
    expiry = token_expiry(token)
    if expiry is None:
        return "the stream's token is malformed"
    _expiry_text, _, mac_text = token.partition(".")
    if not hmac.compare_digest(_mac(key, call_sid, caller, expiry), mac_text):
        return "the stream's token was not issued for this callSid and caller"
    if now >= expiry:
        return "the stream's token has expired"
    return None
