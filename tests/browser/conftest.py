"""Fixtures for the browser tests: a real server on loopback and headless Chromium."""

from __future__ import annotations

import os
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


SCREENSHOTS_TO_DOCS = "BOBA_SCREENSHOTS_TO_DOCS"
"""Set to 1 (`nox -s screenshots` does) to refresh docs/*.png; otherwise a temporary folder."""


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where the browser tests save their screenshots.

    A test run must leave the checkout as it found it, so by default they go to the
    test's temporary folder; `nox -s screenshots` sends them to docs/ for the README.
    """
    if os.environ.get(SCREENSHOTS_TO_DOCS) == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder
