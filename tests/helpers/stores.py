"""`any_db_url`: a fresh store URL, once on SQLite and once on PostgreSQL.

Import the fixtures into a test module (`from tests.helpers.stores import any_db_url,
pg_server`) and every test that takes `any_db_url` runs on both stores. PostgreSQL comes
from `tests.runtime.test_store_pg.pg_server` (a throwaway cluster, or
`BOBA_TEST_POSTGRES_URL`); each test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/boba.sqlite3"
        return
    psycopg = pytest.importorskip("psycopg")
    server: str = request.getfixturevalue("pg_server")
    name = "boba_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"{server}/{name}"
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(f"{server}/postgres", autocommit=True) as admin,
    ):
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
