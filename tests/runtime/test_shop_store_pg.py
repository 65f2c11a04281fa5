"""The shop store's tests again on PostgreSQL (see test_store_pg.py for the server)."""

from __future__ import annotations

import pytest

from tests.runtime.test_shop_store import (  # noqa: F401
    clock,
    store,
    test_commit_records_name_and_wait_and_the_sms_tells_it,
    test_pause_switch_is_stored_and_announced,
    test_shop_state_follows_the_event_feed,
    test_sold_out_is_stored_announced_and_survives_reopen,
)

pytest.importorskip("psycopg")

from tests.runtime.test_store_pg import db_url, pg_server  # noqa: F401
