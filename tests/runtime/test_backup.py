"""`boba backup FILE` (CONTRACT §1, issue 16.5): consistent under load, and a restore drill."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from boba_runtime.cli.backup import pg_dump_command
from tests.helpers.orders import place_order
from tests.helpers.server import running_server


def boba_backup(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("BOBA_", "TWILIO_", "DEEPGRAM_"))}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "boba_runtime", "backup", *args], cwd=cwd,
                          env=clean, capture_output=True, text=True, timeout=60)


def orders_in(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT order_number, created_at FROM orders ORDER BY id").fetchall()
    return [(str(number), str(created)) for number, created in rows]


@pytest.mark.slow
async def test_backup_under_load_restores_into_a_fresh_server(tmp_path: Path) -> None:
    shop_dir, restored_dir = tmp_path / "shop", tmp_path / "restored"
    copy = tmp_path / "backup.sqlite3"
    async with running_server(shop_dir) as server:
        database = server.settings.database
        committed: list[str] = []
        stop = trio.Event()

        async def keep_ordering() -> None:  # the shop keeps taking orders throughout
            n = 0
            while not stop.is_set():
                n += 1
                order = await place_order(server.services, phone=f"+1415555{n % 10000:04d}")
                committed.append(order.order_number)
                await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_ordering)
            while len(committed) < 100:
                await trio.sleep(0.01)
            before = len(committed)
            result = await trio.to_thread.run_sync(
                lambda: boba_backup(tmp_path, str(copy), BOBA_DATABASE=database)
            )
            after = len(committed)
            await trio.sleep(0.1)  # and keeps going after the copy
            stop.set()
        assert result.returncode == 0, result.stderr
        assert len(committed) > after
    backed_up = orders_in(copy)
    # Consistent: a prefix of the commits, at least everything committed before it began.
    assert before <= len(backed_up) <= after, (before, len(backed_up), after)
    assert [number for number, _ in backed_up] == committed[: len(backed_up)]
    assert f"backed up {len(backed_up)} orders to {copy}" in result.stdout
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not list(tmp_path.glob(".backup.sqlite3.partial*"))

    # The restore drill of docs/deploy.md: copy the file in place, start, and every order
    # of the backup is served.
    restored_dir.mkdir()
    restored_db = restored_dir / "boba.sqlite3"
    restored_db.write_bytes(copy.read_bytes())
    async with (
        running_server(restored_dir) as fresh,
        httpx.AsyncClient(base_url=fresh.base_url, timeout=10) as client,
    ):
        for number, created_at in backed_up:  # every order of the backup, with its phone
            one = await client.get(f"/api/orders/{number}", headers=fresh.staff_headers)
            assert one.status_code == 200, (number, one.text)
            assert one.json()["created_at"] == created_at
            assert one.json()["phone"].startswith("+1415555")
        listed = await client.get("/api/orders", params={"status": "all", "limit": 500})
        assert len(listed.json()) == min(500, len(backed_up))
    print(f"backup under load: {len(backed_up)} orders copied while {after - before} more "
          f"were committed during the copy")


def test_backup_refuses_to_overwrite_or_to_copy_nothing(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'missing.sqlite3'}"
    missing = boba_backup(tmp_path, "copy.sqlite3", BOBA_DATABASE=database)
    assert missing.returncode == 1
    assert "there is no database at" in missing.stderr and "BOBA_DATABASE" in missing.stderr
    db = tmp_path / "shop.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    (tmp_path / "copy.sqlite3").write_text("an older backup")
    exists = boba_backup(tmp_path, "copy.sqlite3", BOBA_DATABASE=f"sqlite:///{db}")
    assert exists.returncode == 1 and "exists already" in exists.stderr
    assert (tmp_path / "copy.sqlite3").read_text() == "an older backup"
    bad = boba_backup(tmp_path, "x.sqlite3", BOBA_DATABASE="mysql://nope")
    assert bad.returncode == 2 and bad.stderr.startswith("boba backup: BOBA_DATABASE:")


def test_postgres_backup_prints_pg_dump_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://boba:s3cret@db.internal:5433/shop?sslmode=require"
    result = boba_backup(tmp_path, "shop.dump", BOBA_DATABASE=url)
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert pg_dump_command(url, "shop.dump") in result.stdout
    assert pg_dump_command(url, "shop.dump") == (
        "pg_dump --format=custom --no-owner --file shop.dump "
        "'postgresql://boba@db.internal:5433/shop?sslmode=require'"
    )
    assert not (tmp_path / "shop.dump").exists()
