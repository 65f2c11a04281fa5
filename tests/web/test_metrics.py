"""`GET /metrics` (CONTRACT §3): staff only, Prometheus text, the listed series, and the
multiprocess merge that `boba serve --workers N` relies on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from boba_runtime.metrics import Metrics, prepare_multiprocess_dir
from boba_web.app import create_app
from tests.browser.shop import STAFF_PASSWORD, make_draft, shop_services
from tests.helpers.processes import checkout_env

STAFF = {"Authorization": f"Bearer {STAFF_PASSWORD}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_needs_staff_credentials(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        client = create_app(services).test_client()
        response = await client.get("/metrics")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await response.get_json())["error"]
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_metrics_has_every_contract_series(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        store = services.store
        first = await store.commit_order(make_draft())
        await store.commit_order(make_draft())
        third = await store.commit_order(make_draft())
        await store.mark_ready(first.order_number)
        await store.cancel(third.order_number)
        metrics = services.metrics
        metrics.call_started()
        metrics.call_started()
        metrics.call_ended(42.0)
        metrics.agent_error()
        metrics.function_call("add_to_cart", 0.004)
        metrics.function_call("not_a_function", 0.2)
        metrics.agent_latency(1.3)

        response = await create_app(services).test_client().get("/metrics", headers=STAFF)
        assert response.status_code == 200
        assert response.content_type.startswith("text/plain")
        got = samples(await response.get_data(as_text=True))

    assert got[("boba_calls_active", ())] == 1
    assert got[("boba_calls_total", ())] == 2
    assert got[("boba_call_duration_seconds_count", ())] == 1
    assert got[("boba_call_duration_seconds_sum", ())] == 42.0
    assert got[("boba_agent_errors_total", ())] == 1
    assert got[("boba_function_call_seconds_count", (("name", "add_to_cart"),))] == 1
    assert got[("boba_function_call_seconds_count", (("name", "other"),))] == 1
    assert ("boba_function_call_seconds_count", (("name", "not_a_function"),)) not in got
    assert got[("boba_agent_latency_seconds_sum", ())] == 1.3
    assert got[("boba_store_up", ())] == 1
    assert got[("boba_orders", (("status", "received"),))] == 1
    assert got[("boba_orders", (("status", "ready"),))] == 1
    assert got[("boba_orders", (("status", "cancelled"),))] == 1
    assert got[("boba_orders", (("status", "picked_up"),))] == 0
    assert got[("boba_sms_messages", (("kind", "received"), ("result", "queued")))] == 3
    assert got[("boba_sms_messages", (("kind", "ready"), ("result", "queued")))] == 1
    assert got[("boba_sms_messages", (("kind", "ready"), ("result", "sent")))] == 0


async def test_sms_results_are_grouped_by_class(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        store = services.store
        for _ in range(3):
            await store.commit_order(make_draft())
        due = await store.due_sms(limit=10)
        outcomes = ["sent", "failed:21211", "failed:21614"]
        for message, outcome in zip(due, outcomes, strict=True):
            assert await store.mark_sms_sending(message.id)
            await store.mark_sms_result(message.id, outcome)
        got = samples(services.metrics.render(None).decode())
        assert got[("boba_store_up", ())] == 0
        response = await create_app(services).test_client().get("/metrics", headers=STAFF)
        got = samples(await response.get_data(as_text=True))
    assert got[("boba_sms_messages", (("kind", "received"), ("result", "sent")))] == 1
    assert got[("boba_sms_messages", (("kind", "received"), ("result", "failed")))] == 2


async def test_a_store_that_does_not_answer_leaves_the_call_series(tmp_path: Path) -> None:
    async with shop_services(tmp_path) as services:
        services.metrics.call_started()
        await services.store.aclose()
        response = await create_app(services).test_client().get("/metrics", headers=STAFF)
        assert response.status_code == 200
        got = samples(await response.get_data(as_text=True))
    assert got[("boba_store_up", ())] == 0
    assert got[("boba_calls_total", ())] == 1
    assert not any(name == "boba_orders" for name, _ in got)


WORKER = textwrap.dedent(
    """
    import sys
    from boba_runtime.metrics import Metrics, prepare_multiprocess_dir
    m = Metrics()
    started, ended = int(sys.argv[1]), int(sys.argv[2])
    for _ in range(started):
        m.call_started()
    for _ in range(ended):
        m.call_ended(30.0)
    m.function_call("get_cart", 0.01)
    print(__import__("os").getpid())
    """
)


def test_workers_are_merged_in_multiprocess_mode(tmp_path: Path) -> None:
    """Two worker processes record calls; a scrape from a third sees both."""
    env = checkout_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    pids = []
    for started, ended in ((2, 1), (3, 0)):
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(started), str(ended)], cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        pids.append(int(done.stdout.strip()))
    assert list(tmp_path.glob("*.db")), "workers wrote no metric files"

    scraper = Metrics(multiprocess_dir=str(tmp_path))
    got = samples(scraper.render(None).decode())
    assert got[("boba_calls_total", ())] == 5
    assert got[("boba_calls_active", ())] == 4  # live gauges of exited workers stay...
    assert got[("boba_call_duration_seconds_count", ())] == 1
    assert got[("boba_function_call_seconds_count", (("name", "get_cart"),))] == 2

    from boba_runtime.metrics import mark_worker_dead

    mark_worker_dead(pids[0], str(tmp_path))  # ...until serve marks the worker dead
    got = samples(scraper.render(None).decode())
    assert got[("boba_calls_active", ())] == 3
    assert got[("boba_calls_total", ())] == 5


def test_prepare_multiprocess_dir_empties_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "restored after the test")
    old = tmp_path / "prometheus" / "counter_123.db"
    old.parent.mkdir()
    old.write_bytes(b"stale")
    path = prepare_multiprocess_dir(tmp_path)
    assert path == tmp_path / "prometheus"
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    assert not old.exists()
