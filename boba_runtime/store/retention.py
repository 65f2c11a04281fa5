"""`BOBA_RETENTION_DAYS` (CONTRACT §13): personal data older than that is erased, at start
and then every hour, in every worker (each pass is one transaction and idempotent).

Orders and calls stay, so the daily report's counts do not change: only phone numbers,
transcripts and recordings go (see `store.records.erase_older_than`).
"""

from __future__ import annotations

import logging

import trio

from boba_runtime.store.order_store import OrderStore, StoreError
from boba_runtime.store.records import Erased, apply_retention

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0


async def retention_pass(store: OrderStore, *, days: int, record_dir: str | None) -> Erased | None:
    """One pass; a store or disk problem is logged and left for the next pass."""
    try:
        erased = await apply_retention(store, days=days, record_dir=record_dir)
    except StoreError as exc:
        log.warning("retention: erasure skipped, the store does not answer (%s)", exc)
        return None
    except OSError as exc:
        log.warning("retention: old recordings not deleted (%s)", exc)
        return None
    if erased.orders or erased.sms or erased.calls or erased.recordings:
        log.info("retention: erased data older than %d days: %s", days, erased.describe())
    return erased


async def run_retention(
    store: OrderStore,
    *,
    days: int,
    record_dir: str | None,
    interval: float = RETENTION_INTERVAL_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The first pass before `started` (so a server is never up with expired data), then
    one every `interval` seconds until cancelled."""
    await retention_pass(store, days=days, record_dir=record_dir)
    task_status.started()
    while True:
        await trio.sleep(interval)
        await retention_pass(store, days=days, record_dir=record_dir)
