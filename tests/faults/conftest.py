"""Fixtures of the fault suite: a fresh PostgreSQL database per test (prefix `faults_`,
dropped afterwards) and open-file headroom for the burst (hundreds of sockets at once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from boba_runtime.cli.fdlimit import raise_open_files_limit
from tests.helpers.stores import fresh_pg_database, reachable_pg_server


@pytest.fixture(scope="session", autouse=True)
def open_files_headroom() -> None:
    """The callers' side holds as many sockets as the server: lift the soft limit as
    `boba serve` does for itself (boba_runtime/cli/fdlimit.py)."""
    raise_open_files_limit()


@pytest.fixture
def postgres_server() -> str:
    """The server URL without a database (tests.helpers.stores: skip, or fail in CI)."""
    return reachable_pg_server("the fault suite on PostgreSQL")


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[str]:
    """A fresh database for this test only (its connections are the ones a test may kill)."""
    with fresh_pg_database(postgres_server, "faults_") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The shop's store, once per kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'boba.sqlite3'}"
    url: str = request.getfixturevalue("postgres_db")
    return url
