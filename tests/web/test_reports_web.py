"""The daily report, its page and the orders CSV through the real server, on SQLite and
on PostgreSQL (CONTRACT §13)."""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path

import httpx

from boba_runtime.store.order_store import OrderStore
from tests.helpers.server import running_server
from tests.helpers.stores import any_db_url  # noqa: F401
from tests.runtime.test_reports import seed_day
from tests.runtime.test_store import FakeClock
from tests.runtime.test_store_pg import pg_server  # noqa: F401


async def test_report_json_page_and_csv(tmp_path: Path, any_db_url: str) -> None:  # noqa: F811
    clock = FakeClock()
    store = await OrderStore.open(any_db_url, clock=clock, rng=random.Random(5))
    try:
        numbers = await seed_day(store, clock)
        async with (
            running_server(tmp_path, {"BOBA_DATABASE": any_db_url}, store=store) as server,
            httpx.AsyncClient(base_url=server.base_url) as client,
        ):
            staff = server.staff_headers
            response = await client.get("/api/reports/daily?date=2026-11-25", headers=staff)
            assert response.status_code == 200
            assert response.headers["Cache-Control"] == "no-store"
            report = response.json()
            assert report["orders"] == 3 and report["revenue"] == 26.25
            assert report["average_ticket"] == 8.75
            assert report["drinks_by_flavor"] == {"taro milk tea": 3, "black milk tea": 1}
            assert report["calls_by_outcome"]["ordered"] == 3
            assert report["ordered_share"] == 0.5
            assert report["median_seconds_to_order"] == 45.0
            assert report["orders_per_hour"][7] == {"hour": "07:00", "orders": 2}
            # (the running SMS worker may send the queued ones meanwhile)
            assert sum(report["sms_by_result"]["received"].values()) == 4

            page = await client.get("/reports?date=2026-11-25", headers=staff)
            assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
            html = page.text
            assert html.count("<svg") == 2  # orders per hour, drinks by flavor
            assert 'data-label="07:00" data-value="2"' in html
            assert 'data-label="taro milk tea" data-value="3"' in html
            assert "$26.25" in html and "$8.75" in html and "50%" in html
            assert 'type="date"' in html and 'value="2026-11-25"' in html
            assert "/api/orders.csv?from=2026-11-25&amp;to=2026-11-25" in html
            assert re.search(r"<script", html) is None  # drawn on the server

            exported = await client.get("/api/orders.csv?from=2026-11-25&to=2026-11-25",
                                        headers=staff)
            assert exported.status_code == 200
            assert exported.headers["Content-Type"].startswith("text/csv")
            assert "attachment" in exported.headers["Content-Disposition"]
            rows = list(csv.DictReader(io.StringIO(exported.text)))
            assert len(rows) == 5 and rows[0]["order_number"] == numbers["first"]

            for bad in ("2026-13-01", "yesterday", "2026-1-1", "0001-01-01", "9999-12-31"):
                response = await client.get(f"/api/reports/daily?date={bad}", headers=staff)
                assert response.status_code == 400 and "YYYY-MM-DD" in response.json()["error"]
            for query in ("from=2026-11-26&to=2026-11-25", "from=2020-01-01&to=2026-01-01",
                          "from=x"):
                response = await client.get(f"/api/orders.csv?{query}", headers=staff)
                assert response.status_code == 400 and "error" in response.json()
            for path in ("/api/reports/daily", "/api/orders.csv"):
                response = await client.get(path)
                assert response.status_code == 401 and "error" in response.json()
            anonymous = await client.get("/reports?date=2026-11-25")
            assert anonymous.status_code == 200 and "26.25" not in anonymous.text
            assert 'name="password"' in anonymous.text
    finally:
        await store.aclose()
