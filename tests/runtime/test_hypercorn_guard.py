"""`boba_runtime.cli.hypercorn_guard` patches a private Hypercorn method (issue #13 point 16):
this fails loudly when an upgrade removes or changes it, before a server ever runs."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from hypercorn.trio import tcp_server

from boba_runtime.cli import hypercorn_guard


def test_the_patched_method_exists_in_the_installed_hypercorn() -> None:
    run = getattr(tcp_server.TCPServer, "run", None)
    assert run is not None, f"hypercorn {version('hypercorn')}: TCPServer.run is gone"
    assert inspect.iscoroutinefunction(run)
    assert list(inspect.signature(run).parameters) == ["self"]


def test_guard_wraps_it_once() -> None:
    hypercorn_guard.guard_connections()
    first = tcp_server.TCPServer.run
    hypercorn_guard.guard_connections()
    assert tcp_server.TCPServer.run is first
    assert getattr(first, "_boba_guarded", False)


async def test_a_failing_connection_is_contained(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(self: object) -> None:
        raise KeyError("h2 stream already closed")

    monkeypatch.setattr(tcp_server.TCPServer, "run", explode)
    hypercorn_guard.guard_connections()
    await tcp_server.TCPServer.run(object())  # type: ignore[arg-type]  # no exception
    assert "a client connection failed" in caplog.text


def test_a_hypercorn_without_the_method_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(tcp_server.TCPServer, "run")
    with pytest.raises(RuntimeError, match=r"TCPServer\.run \(async\) is gone"):
        hypercorn_guard.guard_connections()
