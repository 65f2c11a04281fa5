"""Fixtures for the browser tests: a real server on loopback and headless Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.cdp import Browser, find_chromium, launch_browser

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.fail("no chromium on PATH: run scripts/setup-browser.sh (nox -s browser does)")
    return path


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with launch_browser(chromium) as running:
        yield running
        if running.console:
            print("browser console:\n  " + "\n  ".join(running.console))


@pytest.fixture
def docs_dir() -> Path:
    """Screenshots land in docs/ so the README can show them."""
    DOCS.mkdir(exist_ok=True)
    return DOCS
