"""Shared fixtures and the suite's honesty checks.

* `boba_server`: the real shop on 127.0.0.1:0 (see tests/helpers/server.py).
* Every test that ran a fake Deepgram agent fails if a call script raised (its own message
  and traceback are shown) or the bridge broke the agent protocol: the fake records these
  instead of crashing the server task, so without this check they would be lost.
* With `CI` set, a skipped test is a failure unless its reason is on `SKIP_ALLOW_LIST`
  (printed with its count at the end of the run): a skip in CI is a test that did not run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.fakes import fake_agent, twilio_client
from tests.helpers.failure_output import OUTPUTS, show_output_on_failure  # noqa: F401
from tests.helpers.server import RunningServer, running_server

# Skips CI may have, by a substring of their reason. Keep this short: each entry is a test
# that does not run on the CI machine, and says why.
SKIP_ALLOW_LIST: dict[str, str] = {
    "audioop": "the stdlib audioop comparison runs only where audioop exists (removed in 3.13)",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


@pytest.fixture
async def boba_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A running `boba serve` stack with test settings; `.base_url`, `.services`."""
    async with running_server(tmp_path / "shop") as server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    fake_agent.CREATED_SERVERS.clear()
    twilio_client.CREATED_STREAMS.clear()
    try:
        result = yield
    except BaseException:
        problems = _fake_agent_problems()
        if problems:  # the test failed anyway; the fake's findings often say why
            item.add_report_section("call", "fakes", "\n\n".join(problems))
        raise
    problems = _fake_agent_problems()
    if problems:
        pytest.fail("a fake (Deepgram agent or Twilio stream) saw a failure:\n\n"
                    + "\n\n".join(problems), pytrace=False)
    return result


def _fake_agent_problems() -> list[str]:
    found = [p for server in fake_agent.CREATED_SERVERS for p in server.problems()]
    for stream in twilio_client.CREATED_STREAMS:
        errors = stream.played.errors
        found += [f"fake Twilio stream {stream.call_sid}: Twilio would refuse: {error}"
                  for error in errors[:3]]
        if len(errors) > 3:
            found.append(f"fake Twilio stream {stream.call_sid}: ... {len(errors) - 3} more")
    fake_agent.CREATED_SERVERS.clear()
    twilio_client.CREATED_STREAMS.clear()
    return found


def _allowed_skip(reason: str) -> str | None:
    return next((key for key in SKIP_ALLOW_LIST if key in reason), None)


_allowed_skips: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for title, read in item.stash.get(OUTPUTS, []):
            report.sections.append((title, read()))
    _no_silent_skip(report, item.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield  # a whole module skipped at import (importorskip, allow_module_level)
    _no_silent_skip(report, collector.nodeid)
    return report


def _no_silent_skip(report: pytest.TestReport | pytest.CollectReport, nodeid: str) -> None:
    """In CI, turn a skip that is not on the allow-list into a failure."""
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(
        report.longrepr)
    if _allowed_skip(reason) is None:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI (CI={os.environ.get('CI')}), and not on the allow-list in "
            f"tests/conftest.py: {reason}"
        )
    else:
        _allowed_skips.append(f"{nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not in_ci():
        return
    terminalreporter.section("skips allowed in CI")
    terminalreporter.write_line(
        f"{len(_allowed_skips)} allowed skip(s) (allow-list: {', '.join(SKIP_ALLOW_LIST)})")
    for line in _allowed_skips:
        terminalreporter.write_line(f"  {line}")
