"""PostgreSQL drops the shop's connections mid-run (`pg_terminate_backend`, for this test's
database only; the service is never restarted: other work shares it). A checkout in flight
either commits or the caller is told to try again; nothing is half written; the server
recovers by itself (CONTRACT §3 `/healthz`, §4, §8)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from tests.fakes.fake_agent import fake_agent_server
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.faults.harness import (
    Callers,
    Ledger,
    ordering_agent,
    orders_by_number,
    serve,
    shop_env,
)

pytestmark = pytest.mark.faults

LINES = 4
KILLS = 5
KILL_EVERY = 1.5  # seconds between two rounds of pg_terminate_backend
AFTER = 4  # calls placed once the faults are over: each must order at the first try


def terminate_backends(url: str) -> int:
    """Kill every connection to this test's database but our own; how many were killed."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        ).fetchone()
    return int(row[0]) if row else 0


def half_written(url: str) -> list[str]:
    """Orders missing their `order_created` event or their "received" SMS row (SQL, not the
    shop's own view of itself)."""
    with psycopg.connect(url) as db:
        orders = db.execute("SELECT id, order_number FROM orders").fetchall()
        created = {
            json.loads(data)["order_number"]
            for (data,) in db.execute("SELECT data FROM events").fetchall()
            if json.loads(data).get("type") == "order_created"
        }
        texted = {row[0] for row in db.execute(
            "SELECT order_id FROM sms_outbox WHERE kind = 'received'").fetchall()}
    problems = [f"order {number}: no order_created event" for _, number in orders
                if number not in created]
    problems += [f"order {number}: no received SMS queued" for order_id, number in orders
                 if order_id not in texted]
    return problems


async def test_connections_killed_mid_run_commit_or_retry_and_recover(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_db: str
) -> None:
    ledger = Ledger()
    killed: list[int] = []
    with FakeTwilioRest() as rest:
        async with (
            fake_agent_server(ordering_agent(ledger)) as agent,
            httpx.AsyncClient(timeout=30) as client,
        ):
            env = shop_env(database=postgres_db, agent_url=agent.url, rest=rest,
                           data_dir=tmp_path / "data", extra={"BOBA_SMS": "log"})
            callers = Callers(client, rest)
            async with serve(request, tmp_path / "run", env) as shop:
                stop = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(lambda: callers.lines(shop.base_url, LINES, stop))
                    with trio.fail_after(60):
                        while len(ledger.told) < 2:
                            await trio.sleep(0.01)
                    for _ in range(KILLS):
                        with trio.move_on_after(10):  # aim at a checkout in flight
                            while ledger.in_checkout == 0:
                                await trio.sleep(0.002)
                        killed.append(await trio.to_thread.run_sync(terminate_backends,
                                                                    postgres_db))
                        await trio.sleep(KILL_EVERY)
                    stop.set()
                during = len(ledger.told)
                retries_during = ledger.try_again

                health = await client.get(f"{shop.base_url}/healthz")
                assert health.status_code == 200 and health.json() == {"status": "ok"}
                for _ in range(AFTER):  # recovered without a restart
                    assert await callers.call(shop.base_url) == "completed"
                assert ledger.try_again == retries_during, "a checkout failed after recovery"
                orders = await orders_by_number(client, shop.base_url)

    assert sum(killed) >= KILLS, killed  # every round found connections to kill
    assert ledger.gave_up == 0
    assert ledger.cut_off_in_checkout == 0, "a checkout in flight got neither answer"
    assert len(ledger.told) == during + AFTER
    missing = [t for t in ledger.told if t.number not in orders]
    assert missing == [], f"told but not in the store: {missing}"
    problems = half_written(postgres_db)
    assert problems == [], problems
    # "Try again" must mean "not placed": a checkout that committed although its answer was
    # lost would be placed a second time by the retry (CONTRACT §5: once per call).
    told_phones = {t.phone for t in ledger.told}
    untold = sorted(set(orders) - set(ledger.numbers()))
    duplicates = [n for n in untold if orders[n]["phone"] in told_phones]
    assert untold == [], (
        f"committed although the caller was told to try again: {untold} "
        f"({len(duplicates)} placed a second time by the retry)")
    print(f"\nFAULT pg_terminate_backend: {KILLS} rounds killed {sum(killed)} connections; "
          f"{len(ledger.told)} orders told ({during} during the faults, {AFTER} after), "
          f"{ledger.try_again} checkout(s) told to try again then placed, "
          f"{callers.outcomes['refused']} call(s) refused at start (token check could not "
          f"reach the store), 0 checkouts left unanswered; {len(orders)} orders in store, "
          f"all with their event and queued SMS, none committed behind a 'try again'; "
          f"/healthz ok and {AFTER} later checkouts placed without a restart")
