"""Shared fixtures. `boba_server`: the real shop on 127.0.0.1:0 (see tests/helpers/server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.server import RunningServer, running_server


@pytest.fixture
async def boba_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A running `boba serve` stack with test settings; `.base_url`, `.services`."""
    async with running_server(tmp_path / "shop") as server:
        yield server
