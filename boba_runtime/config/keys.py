"""One key per purpose, derived from `BOBA_SECRET_KEY` (CONTRACT §2).

The root secret is never used as a MAC key itself: each purpose (session cookies, stream
tokens, ...) gets `HMAC-SHA256(root, "boba-key/v1/" + label)`, so a MAC made for one
purpose can never be presented as valid for another (a cookie signature is not a stream
token, even over the same bytes). This is HKDF's expand step with a single block.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SESSION_COOKIES: Final = "session-cookie"
STREAM_TOKENS: Final = "stream-token"

_PREFIX: Final = b"boba-key/v1/"


def derive_key(root: bytes, label: str) -> bytes:
    """The 32-byte key for `label`, from the root secret."""
    if not root:
        raise ValueError("the root secret is empty")
    return hmac.new(root, _PREFIX + label.encode("utf-8") + b"\x01", hashlib.sha256).digest()
