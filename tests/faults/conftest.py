"""Fixtures of the fault suite: a fresh PostgreSQL database per test (prefix `faults_`,
dropped afterwards) and open-file headroom for the burst (hundreds of sockets at once)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from boba_runtime.cli.fdlimit import raise_open_files_limit
from tests.conftest import in_ci

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture(scope="session", autouse=True)
def open_files_headroom() -> None:
    """The callers' side holds as many sockets as the server: lift the soft limit as
    `boba serve` does for itself (boba_runtime/cli/fdlimit.py)."""
    raise_open_files_limit()


@pytest.fixture
def postgres_server() -> str:
    """The server URL without a database (`BOBA_TEST_POSTGRES_URL` overrides the default,
    with or without a database name); unreachable: a skip on a developer's machine, a
    failure in CI."""
    psycopg = pytest.importorskip("psycopg")
    parts = urlsplit(os.environ.get("BOBA_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    server = urlunsplit((parts.scheme, parts.netloc, "", "", ""))  # a database name: ignored
    try:
        with psycopg.connect(f"{server}/postgres", connect_timeout=5) as probe:
            probe.execute("SELECT 1")
    except psycopg.Error as error:
        message = f"PostgreSQL at {server} is unreachable: {error}".strip()
        if in_ci():
            pytest.fail(f"{message} (CI must run the fault suite on PostgreSQL)", pytrace=False)
        pytest.skip(message)
    return server


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[str]:
    """A fresh database for this test only (its connections are the ones a test may kill)."""
    import psycopg

    name = "faults_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin,
        ):
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The shop's store, once per kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'boba.sqlite3'}"
    url: str = request.getfixturevalue("postgres_db")
    return url
