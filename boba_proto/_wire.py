"""Helpers shared by the two wire decoders (`twilio`, `agent`): one way to read a frame
and one way to word msgspec's complaints, so both peers' errors name fields alike."""

from __future__ import annotations

import re
from typing import Final

from boba_proto.errors import RemoteProtocolError

_MISSING_FIELD: Final = re.compile(
    r"^Object missing required field `(?P<field>[^`]*)` - at `(?P<at>[^`]*)`$"
)


def explain(exc: Exception) -> str:
    """msgspec's message with a missing field spelled as one JSON path (`$.media.payload`)."""
    text = str(exc)
    found = _MISSING_FIELD.match(text)
    if found is not None:
        return f"missing required field `{found['at']}.{found['field']}`"
    if text.startswith("Object missing required field") and " - at " not in text:
        field = text.removeprefix("Object missing required field ").strip("`")
        return f"missing required field `$.{field}`"
    return text


def as_bytes(frame: str | bytes, who: str) -> bytes:
    """A text frame as UTF-8 bytes; text that cannot be encoded is the peer's fault."""
    if isinstance(frame, bytes):
        return frame
    try:
        return frame.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RemoteProtocolError(f"{who} sent text that is not valid Unicode: {exc}") from exc
