"""PostgreSQL for tests, in one place: the server, a fresh database per test, and
`any_db_url` (a fresh store URL, once on SQLite and once on PostgreSQL).

Import the fixtures into a test module (`from tests.helpers.stores import any_db_url,
pg_server`) and every test that takes `any_db_url` runs on both stores. The server is
`BOBA_TEST_POSTGRES_URL` (a database name in it is ignored) or the local default; each
test gets its own database, dropped afterwards. An unreachable server skips on a
developer's machine and fails in CI (`CI` set): CI must run the PostgreSQL half.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import in_ci

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432"


def server_part(url: str) -> str:
    """`postgresql://user@host:port` of a URL, with or without a database name."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def reachable_pg_server(purpose: str) -> str:
    """The server's base URL after one probe; unreachable: skip, or fail in CI."""
    psycopg = pytest.importorskip("psycopg")
    server = server_part(os.environ.get("BOBA_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    try:
        with psycopg.connect(f"{server}/postgres", connect_timeout=5) as probe:
            probe.execute("SELECT 1")
    except psycopg.Error as error:
        message = f"PostgreSQL at {server} is unreachable: {error}".strip()
        if in_ci():
            pytest.fail(f"{message} (CI must run {purpose})", pytrace=False)
        pytest.skip(message)
    return server


@contextlib.contextmanager
def fresh_pg_database(server: str, prefix: str) -> Iterator[str]:
    """A new database named `prefix` + random hex on `server`, dropped (connections and
    all) when the block ends; yields its URL."""
    import psycopg

    name = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{server}/{name}"
    finally:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(f"{server}/postgres", autocommit=True) as admin,
        ):
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """A base URL (no database name) of a PostgreSQL server that takes CREATE DATABASE."""
    return reachable_pg_server("the PostgreSQL tests")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/boba.sqlite3"
        return
    server: str = request.getfixturevalue("pg_server")
    with fresh_pg_database(server, "boba_") as url:
        yield url
