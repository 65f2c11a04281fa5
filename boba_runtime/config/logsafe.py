"""Strings from outside (a CallSid, a Twilio event name, a peer's error text) in log lines.

Written raw, a value with a newline or a terminal escape in it can forge a whole log line
("...\\n2026-12-02 INFO call CA... committed order 1234"). `shown()` keeps printable text
as it is and escapes everything else the way Python's `repr` does, so one value stays on
one line and reads the same in a terminal and in a JSON log. Long values are cut.
"""

from __future__ import annotations

from typing import Final

MAX_SHOWN_CHARS: Final = 200


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """`value` as text safe for one log line: control and non-printable characters escaped."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if text.isprintable():
        safe = text
    else:
        safe = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return safe + "…" if cut else safe
