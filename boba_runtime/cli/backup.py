"""`boba backup FILE`: a consistent copy of the order store while the shop serves.

SQLite: the online backup API (`sqlite3.Connection.backup`) copies every page in one
step inside one read transaction, so the copy is the database as of one commit. In WAL
mode readers do not block writers: calls keep committing orders meanwhile. The copy is
written next to FILE under a temporary name, checked (`PRAGMA integrity_check`), flushed
to disk, created mode 600 (it holds phone numbers) and only then renamed to FILE, so FILE
is either a whole backup or absent. An existing FILE is never overwritten.

PostgreSQL: prints the `pg_dump` command for the configured database (without its
password: `PGPASSWORD` or `~/.pgpass` supply it) and exits 0; pg_dump's own snapshot is
what makes that copy consistent.

Restoring is a file copy while the shop is stopped (docs/deploy.md, "Restore drill").
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec

from boba_runtime.config.settings import SettingsError, load_settings
from boba_runtime.store.order_store import POSTGRES_SCHEMES, sqlite_path_from_url

BUSY_TIMEOUT_S = 30.0  # a backup waits this long for a writer's checkpoint at most


class BackupError(Exception):
    """The backup could not be made; the message says why (and whose side it is)."""


class BackupResult(msgspec.Struct, frozen=True):
    path: str
    orders: int
    size_bytes: int


def pg_dump_command(database_url: str, target: str) -> str:
    """The shell command that dumps `database_url` to `target`, with no password in it."""
    parts = urlsplit(database_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    url = urlunsplit(("postgresql", f"{user}{host}{port}", parts.path, parts.query, ""))
    return (f"pg_dump --format=custom --no-owner --file {shlex.quote(target)} "
            f"{shlex.quote(url)}")


def backup_sqlite(source: Path, target: Path) -> BackupResult:
    """Copy `source` (a live SQLite store) to `target` consistently; see the module doc."""
    if not source.is_file():
        raise BackupError(f"there is no database at {source} (check BOBA_DATABASE)")
    if target.exists():
        raise BackupError(f"{target} exists already; back up to a new file name")
    if not target.parent.is_dir():
        raise BackupError(f"the folder {target.parent} does not exist")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_S)  # reads only
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # every page in one step: one consistent snapshot
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
                if verdict != "ok":
                    raise BackupError(f"the copy failed its integrity check: {verdict}")
                orders = int(dst.execute("SELECT count(*) FROM orders").fetchone()[0])
            finally:
                dst.close()
        finally:
            src.close()
        with open(partial, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except sqlite3.Error as error:
        raise BackupError(f"reading {source} failed: {error}") from None
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)
    return BackupResult(path=str(target), orders=orders, size_bytes=target.stat().st_size)


def main(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="boba backup",
        description="A consistent copy of the SQLite order store while the shop serves "
        "(for PostgreSQL: prints the pg_dump command). Settings come from the environment "
        "and .env, like boba serve's.",
    )
    parser.add_argument("file", help="where to write the copy (must not exist yet)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        settings = load_settings({}, os.environ if environ is None else environ, ".env")
    except SettingsError as error:
        print(f"boba backup: {error}", file=sys.stderr)
        return 2
    if settings.database.startswith(POSTGRES_SCHEMES):
        print("The store is PostgreSQL: back it up with pg_dump (the password comes from "
              "PGPASSWORD or ~/.pgpass):")
        print(f"  {pg_dump_command(settings.database, args.file)}")
        return 0
    try:
        result = backup_sqlite(Path(sqlite_path_from_url(settings.database)), Path(args.file))
    except BackupError as error:
        print(f"boba backup: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"boba backup: cannot write {args.file}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"backed up {result.orders} orders to {result.path} "
          f"({result.size_bytes // 1024} KiB, mode 600)")
    return 0
