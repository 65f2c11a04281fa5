"""Run the real shop (`boba_runtime.cli.serve.run_shop`: store, feed, SMS worker, Hypercorn)
on 127.0.0.1:0 inside a test, with settings built like `boba serve` builds them.

    async with running_server(tmp_path, env={"BOBA_AUDIO": "mulaw"}) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client: ...

`env` holds variables of CONTRACT §2 (they win over the test defaults below). Everything
lives under `data_dir`, so starting twice on the same directory is a restart on the same
database. Extra keyword arguments go to `run_shop` (sse_ping_interval, poll_interval,
client_buffer, grace_period, store).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio

from boba_runtime.cli.serve import run_shop
from boba_runtime.config.settings import Settings, load_settings
from boba_runtime.services import Services
from boba_web.app import create_app

STAFF_PASSWORD = "test-staff-password"
STOP_TIMEOUT = 10.0  # seconds a graceful stop may take before the test cancels it


def settings_for_test(
    data_dir: Path, env: Mapping[str, str] | None = None, *, speech: bool = False
) -> Settings:
    """Settings for a loopback test server whose files all live in `data_dir`. The local
    agent's offline speech (when installed) is on only where a test asks (`speech`)."""
    base = {
        "BOBA_HOST": "127.0.0.1",
        "BOBA_PORT": "0",
        "BOBA_DATA_DIR": str(data_dir),
        "BOBA_DATABASE": f"sqlite:///{data_dir / 'boba.sqlite3'}",
        "BOBA_STAFF_PASSWORD": STAFF_PASSWORD,
        "BOBA_SMS": "log",
    }
    base.update(env or {})
    settings = load_settings({}, base, None)
    return settings if speech else msgspec.structs.replace(settings, local_speech="off")


@dataclass
class RunningServer:
    base_url: str
    services: Services
    shutdown: trio.Event

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def staff_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.services.staff_password}"}

    async def stop(self) -> None:
        self.shutdown.set()


@asynccontextmanager
async def running_server(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    settings: Settings | None = None,
    **run_options: Any,
) -> AsyncIterator[RunningServer]:
    """The real stack, stopped (gracefully, then for good) when the block exits."""
    settings = settings if settings is not None else settings_for_test(data_dir, env)
    run_options.setdefault("grace_period", 1.0)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:

        async def shop(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            await run_shop(settings, app_factory=create_app, shutdown=shutdown,
                           task_status=task_status, **run_options)
            nursery.cancel_scope.cancel()  # drained: also ends the watchdog below

        async def hard_stop_after(seconds: float) -> None:
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()

        started = await nursery.start(shop)
        try:
            yield RunningServer(started.base_url, started.services, shutdown)
        finally:
            shutdown.set()
            nursery.start_soon(hard_stop_after, STOP_TIMEOUT)
