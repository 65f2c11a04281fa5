"""Output a test attaches to its report if it fails (e.g. the log of a server process,
which pytest's capture does not see).

Its own module, imported by the same name from tests/conftest.py and from tests: pytest
loads tests/conftest.py as the module `conftest`, and a test that imports
`tests.conftest` gets a second copy with a second stash key, which the report hook never
reads (so nothing was shown).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

OUTPUTS = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


def show_output_on_failure(item: pytest.Item, title: str, read: Callable[[], str]) -> None:
    """If `item` fails, its report gets a section `title` with `read()`."""
    item.stash.setdefault(OUTPUTS, []).append((title, read))
