"""Log lines an operator can search: text or JSON, per-call tags, masked phone numbers.

`BOBA_LOG_FORMAT=json` writes one JSON object per line with `time`, `level`, `logger`,
`message` (and `call_sid` on every line about a call, `exception` with a traceback);
`text` (the default) writes `time LEVEL logger [call_sid]: message`. `BOBA_LOG_LEVEL`
sets the root level.

The call's `CallSid` is not passed to every log call by hand: `run_call` opens a
`call_log_scope()` for the call's task tree (trio tasks inherit the context of the task
that spawns them), and the call fills in the sid once Twilio's `start` names it. Tasks
spawned before that point share the same `CallTag` object, so they are tagged too.

Phone numbers are personal data: above DEBUG every line has them masked except the last
four digits (`+1******1234`), whoever logged them. DEBUG lines are for a developer on
their own machine and keep them (CONTRACT §2 / issue 16).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
LEVEL_ALIASES = {"warn": "warning", "fatal": "critical"}


class CallTag:
    """The call a task tree works for; the sid is known only once Twilio's `start` came."""

    __slots__ = ("call_sid",)

    def __init__(self, call_sid: str | None = None) -> None:
        self.call_sid = call_sid


CURRENT_CALL: contextvars.ContextVar[CallTag | None] = contextvars.ContextVar(
    "boba_current_call", default=None
)


@contextmanager
def call_log_scope(call_sid: str | None = None) -> Iterator[CallTag]:
    """Tag every log line of this task, and of tasks it spawns from now on, with the call."""
    tag = CallTag(call_sid)
    token = CURRENT_CALL.set(tag)
    try:
        yield tag
    finally:
        CURRENT_CALL.reset(token)


def name_current_call(call_sid: str) -> None:
    """The call's sid is known now: every task of the call's tree logs it from here on."""
    tag = CURRENT_CALL.get()
    if tag is not None and call_sid:
        tag.call_sid = call_sid


def current_call_sid() -> str | None:
    tag = CURRENT_CALL.get()
    return tag.call_sid if tag is not None else None


# --- phone numbers -------------------------------------------------------------------------

# E.164 (`+14155551234`) and the North American forms people type or say
# (`(415) 555-1234`, `415-555-1234`, `415.555.1234`). Call sids (`CA` + hex), order numbers
# (4 digits), ports and addresses do not match.
PHONE_PATTERN = re.compile(
    r"(?<![\w+])\+\d{7,15}(?!\d)"
    r"|(?<![\w(])\(\d{3}\)\s?\d{3}[-.\s]\d{4}(?!\d)"
    r"|(?<![\w.\-])\d{3}[-.]\d{3}[-.]\d{4}(?![\w\-]|\.\d)"
)


def mask_phone(text: str) -> str:
    """Every digit but the last four replaced by `*`, punctuation kept."""
    digits = sum(c.isdigit() for c in text)
    keep_from = digits - 4
    out = []
    seen = 0
    for char in text:
        if char.isdigit():
            out.append(char if seen >= keep_from else "*")
            seen += 1
        else:
            out.append(char)
    return "".join(out)


def mask_phone_numbers(text: str) -> str:
    return PHONE_PATTERN.sub(lambda match: mask_phone(match.group(0)), text)


def masked_for(record: logging.LogRecord, text: str) -> str:
    """Phone numbers masked above DEBUG. Done by our formatters on the text they write,
    never on the record itself: other handlers on the same logger (a test's capture, a
    staff-only sink) get the record as it was logged."""
    return text if record.levelno <= logging.DEBUG else mask_phone_numbers(text)


class AddCallSid(logging.Filter):
    """Copies the current call's sid onto the record (`record.call_sid`, or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_sid", None) is None:
            record.call_sid = current_call_sid()
        return True


def _utc_time(record: logging.LogRecord) -> str:
    seconds = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message [, call_sid, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _utc_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": masked_for(record, record.getMessage()),
        }
        call_sid = getattr(record, "call_sid", None)
        if call_sid:
            entry["call_sid"] = call_sid
        if record.exc_info:
            entry["exception"] = masked_for(record, self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = masked_for(record, record.exc_text)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-12-02T16:20:01.123Z INFO boba.calls [CA…]: message`."""

    def format(self, record: logging.LogRecord) -> str:
        call_sid = getattr(record, "call_sid", None)
        tag = f" [{call_sid}]" if call_sid else ""
        message = masked_for(record, record.getMessage())
        line = f"{_utc_time(record)} {record.levelname} {record.name}{tag}: {message}"
        if record.exc_info:
            line = f"{line}\n{masked_for(record, self.formatException(record.exc_info))}"
        return line


def parse_level(text: str) -> int | None:
    """`info`, `WARNING`, `warn`, … → a logging level; None when it is none of them."""
    word = text.strip().lower()
    return LEVELS.get(LEVEL_ALIASES.get(word, word))


class BobaHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler: writes to `stream`, or to whatever `sys.stderr` is at each line."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler.__init__ sets it; the property above decides


def make_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    handler = BobaHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(AddCallSid())
    return handler


def configure_logging(
    log_format: LogFormat = "text", level: str | int = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Install our handler on the root logger (replacing one installed before, and the
    plain handler `logging.basicConfig` adds; other handlers, such as a test runner's
    capture, stay) and set the root level."""
    numeric = level if isinstance(level, int) else parse_level(level)
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, BobaHandler) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    handler = make_handler(log_format, stream)
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler
