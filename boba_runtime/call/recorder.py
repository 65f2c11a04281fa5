"""Writes each call to `BOBA_RECORD_DIR` as a session file that `boba replay` reproduces.

The lines come from the pure `boba_proto.recording.Recorder` (CONTRACT §10); this module
only decides the file name (`{UTC start time}-{CallSid}.jsonl`), buffers lines in memory
and appends them from a worker thread every half second, so a call's frame path never
waits on the disk. A call that is refused before it starts (wrong token, no free slot)
leaves no file. Files are mode 600 in a folder created mode 700, and the stream token is
redacted in them (`boba_proto.recording.redact_secrets`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import trio

from boba_proto.call import Action, CallConfig, CallEvent
from boba_proto.recording import Recorder

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
MAX_LINES_BEFORE_START = 2000
"""Lines kept for a stream that has not started yet; beyond that the file is not worth it."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def session_file_name(started_at: datetime, call_sid: str) -> str:
    stamp = started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    sid = _UNSAFE.sub("_", call_sid) or "no-call-sid"
    return f"{stamp}-{sid}.jsonl"


def _append(path: Path, text: str) -> None:
    # Mode 600: a recording holds phone numbers and whole conversations (CONTRACT §10).
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(text)


def make_private_dir(directory: Path) -> None:
    """Create `directory` (and missing parents) mode 700; an existing one is left alone."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


class CallRecorder:
    """One call's session file (implements `call_runner.CallRecorderLike`)."""

    def __init__(
        self,
        record_dir: Path,
        config: CallConfig,
        *,
        started_at: datetime,
        digest_audio: bool = True,
    ) -> None:
        self.record_dir = record_dir
        self.started_at = started_at
        self.path: Path | None = None
        self.dropped = False
        self._lines = Recorder(
            config,
            started_at=started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            digest_audio=digest_audio,
        )
        self._buffer: list[str] = [self._lines.header()]
        self._failed = False

    def record_input(self, t: float, event: CallEvent) -> None:
        if self._room():
            self._buffer.append(self._lines.input(t, event))

    def record_outputs(self, t: float, actions: list[Action]) -> None:
        if self._room():
            self._buffer.extend(self._lines.outputs(t, actions))

    def _room(self) -> bool:
        if self.path is None and len(self._buffer) >= MAX_LINES_BEFORE_START:
            self.dropped = True
            return False
        return not self._failed

    def begin(self, call_sid: str) -> None:
        if self.dropped:
            return
        self.path = self.record_dir / session_file_name(self.started_at, call_sid)

    async def run(self) -> None:
        while True:
            await trio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        if self.path is None or not self._buffer or self._failed:
            return
        text = "\n".join(self._buffer) + "\n"
        self._buffer = []
        try:
            await trio.to_thread.run_sync(_append, self.path, text)
        except OSError as exc:
            # A full disk must not take the call down; say so once and stop recording.
            self._failed = True
            log.error("recording %s stopped: %s", self.path, exc)

    async def aclose(self) -> None:
        await self.flush()
        self._buffer = []


def recorder_factory(
    record_dir: str | Path,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    digest_audio: bool = True,
) -> Callable[[CallConfig], CallRecorder]:
    """`CallDeps.open_recorder` for `BOBA_RECORD_DIR` (the directory is created here)."""
    directory = Path(record_dir)
    make_private_dir(directory)

    def open_recorder(config: CallConfig) -> CallRecorder:
        return CallRecorder(directory, config, started_at=now(), digest_audio=digest_audio)

    return open_recorder
