"""`boba replay FILE... [--update]`: replay recorded calls through the core (CONTRACT §1, §10).

For each file: feed its recorded inputs to a fresh `CallSession` on the recording's own
clock (no network, no timers, no store) and compare what the core returns with the
outputs stored in the file. Prints `FILE: ok` or `FILE: line N: expected … got …` (the
first difference). Exit 0 when all match, 1 when any differs, 2 when any file is
unreadable or malformed (2 wins over 1). `--update` rewrites each file's outputs with what
the core produces now (inputs untouched) and prints `FILE: updated` or `FILE: ok`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from boba_proto.errors import ProtocolError
from boba_proto.recording import replay_lines

OK, DIFFERS, UNREADABLE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boba replay",
        description="Replay recorded calls through the protocol core and compare outputs.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path,
                        help="recorded sessions (boba-session/1 JSON lines)")
    parser.add_argument("--update", action="store_true",
                        help="rewrite the recorded outputs with what the core produces now")
    return parser


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one rename, so an interrupted update never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replay_file(path: Path, *, update: bool) -> tuple[int, str]:
    """Replay one file; returns (exit status for it, the line to print)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return UNREADABLE, f"{path}: cannot read: {exc}"
    lines = text.splitlines()
    try:
        report = replay_lines(lines)
    except ProtocolError as exc:
        return UNREADABLE, f"{path}: {exc.message}"
    if update:
        if report.lines == lines:
            return OK, f"{path}: ok"
        try:
            _write_atomically(path, "\n".join(report.lines) + "\n")
        except OSError as exc:
            return UNREADABLE, f"{path}: cannot write: {exc}"
        return OK, f"{path}: updated"
    if report.difference is not None:
        return DIFFERS, f"{path}: {report.difference}"
    return OK, f"{path}: ok"


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on --help
        return int(exc.code or 0)
    worst = OK
    for path in args.files:
        status, message = replay_file(path, update=args.update)
        print(message, flush=True)
        worst = max(worst, status)
    return worst
