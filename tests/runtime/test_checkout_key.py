"""A call's checkout commits once, however often it is retried (the checkout key), and a
COMMIT whose connection was lost is settled before the caller hears "try again"; on SQLite
and PostgreSQL, at the store and over a whole call."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import trio

from boba_proto import twilio as tw
from boba_proto.model import Order, OrderDraft
from boba_runtime.call.runner import CallReport
from boba_runtime.store import order_store
from boba_runtime.store.order_store import OrderStore, StoreConnection, StoreUnavailable
from tests.helpers.stores import any_db_url  # noqa: F401
from tests.runtime.test_call_runner import (
    SID,
    STREAM,
    MemoryAgent,
    MemoryPhone,
    converse,
    function_call,
    make_deps,
    run,
)
from tests.runtime.test_store import FakeClock, draft
from tests.runtime.test_store_pg import db_url, pg_server  # noqa: F401

KEY = "CA" + "7" * 32 + "/1"


def keyed(key: str | None = KEY) -> OrderDraft:
    return msgspec.structs.replace(draft(), call_sid=KEY.split("/")[0], checkout_key=key)


def counts(conn: StoreConnection) -> tuple[int, int, int]:
    """(orders, order_created events, queued "received" SMS), read in SQL."""
    orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    created = sum(
        json.loads(data)["type"] == "order_created"
        for (data,) in conn.execute("SELECT data FROM events").fetchall()
    )
    texts = conn.execute(
        "SELECT count(*) FROM sms_outbox WHERE kind = 'received'"
    ).fetchone()[0]
    return int(orders), created, int(texts)


async def opened(url: str) -> OrderStore:
    return await OrderStore.open(url, clock=FakeClock(), rng=random.Random(5))


async def test_a_key_commits_once_and_a_repeat_gets_that_order(any_db_url: str) -> None:  # noqa: F811
    async with await opened(any_db_url) as store:
        first = await store.commit_order(keyed())
        again = await store.commit_order(keyed())
        assert again == first  # same number, same time: the order committed first
        assert await store.read(counts) == (1, 1, 1)
        other = await store.commit_order(keyed(KEY[:-1] + "2"))
        assert other.order_number != first.order_number
        await store.commit_order(keyed(None))  # no key: every commit is a new order
        await store.commit_order(keyed(None))
        assert await store.read(counts) == (4, 4, 4)


async def test_the_key_survives_a_reopen(any_db_url: str) -> None:  # noqa: F811
    async with await opened(any_db_url) as store:
        first = await store.commit_order(keyed())
    async with await opened(any_db_url) as store:
        assert await store.commit_order(keyed()) == first
        assert await store.read(counts) == (1, 1, 1)


# --- PostgreSQL: a COMMIT whose answer is lost -------------------------------------------


@pytest.fixture
def lose_commit(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make the next `COMMIT` lose its connection: "after" (the commit landed, the error
    reached us instead of its answer) or "before" (the backend is terminated first, so
    the transaction is rolled back). Append the mode to the returned list to arm it."""
    armed: list[str] = []
    real = order_store._PostgresConn.commit

    def commit(self: Any) -> None:
        if not armed:
            return real(self)
        mode = armed.pop()
        if mode == "after":
            real(self)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        pid = self.raw.info.backend_pid
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return real(self)  # fails: the backend is gone, nothing committed

    monkeypatch.setattr(order_store._PostgresConn, "commit", commit)
    yield armed


async def test_a_commit_that_landed_although_its_connection_was_lost_answers_the_order(
    db_url: str, lose_commit: list[str]  # noqa: F811
) -> None:
    async with await opened(db_url) as store:
        lose_commit.append("after")
        order = await store.commit_order(keyed())  # settled: not "try again"
        assert not lose_commit
        assert await store.commit_order(keyed()) == order  # the caller's retry, were it one
        assert await store.read(counts) == (1, 1, 1)


async def test_a_commit_lost_before_it_landed_is_try_again_and_the_retry_places_it(
    db_url: str, lose_commit: list[str]  # noqa: F811
) -> None:
    async with await opened(db_url) as store:
        lose_commit.append("before")
        with pytest.raises(StoreUnavailable):
            await store.commit_order(keyed())
        assert await store.read(counts) == (0, 0, 0)
        order = await store.commit_order(keyed())
        assert await store.commit_order(keyed()) == order
        assert await store.read(counts) == (1, 1, 1)


# --- a whole call: the first checkout's answer is lost, the retry tells the number ---------


class AnswerLostOnce:
    """The real store, but the first commit's answer is lost after it committed: the
    runner sees StoreUnavailable (what a connection lost during COMMIT looked like)."""

    def __init__(self, store: OrderStore) -> None:
        self.store = store
        self.lost = 0

    async def commit_order(self, draft: OrderDraft) -> Order:
        order = await self.store.commit_order(draft)
        if self.lost == 0:
            self.lost += 1
            raise StoreUnavailable("the order database does not answer: connection lost")
        return order

    async def orders_for_phones(
        self, phones: Any, *, order_number: str | None = None, limit: int = 10
    ) -> list[Order]:
        return await self.store.orders_for_phones(phones, order_number=order_number, limit=limit)


async def test_a_call_retrying_a_checkout_whose_answer_was_lost_places_one_order(
    tmp_path: Path, any_db_url: str  # noqa: F811
) -> None:
    phone, agent = MemoryPhone(), MemoryAgent()
    async with await opened(any_db_url) as real:
        store = AnswerLostOnce(real)
        deps = make_deps(tmp_path, store)  # type: ignore[arg-type]
        report: list[CallReport] = []
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                report.append(await run(phone, deps, agent))

            nursery.start_soon(call)
            phone.start()
            agent.say({"type": "Welcome", "request_id": "r"})
            await converse(agent)
            function_call(agent, "f1", "add_to_cart", flavor="taro milk tea")
            function_call(agent, "f2", "save_phone_number", phone="4155551234")
            function_call(agent, "f3", "checkout_order")
            answers = await agent.wait_for("FunctionCallResponse", 3)
            lost = json.loads(answers[2]["content"])
            assert lost["ok"] is False and "try again" in lost["error"]
            function_call(agent, "f4", "checkout_order")  # the agent tries again
            answers = await agent.wait_for("FunctionCallResponse", 4)
            phone.push(tw.encode_event(tw.Stop(stream_sid=STREAM, sequence_number="9")))

        placed = json.loads(answers[3]["content"])
        assert store.lost == 1 and placed["ok"] is True
        [order] = await real.list_orders(status="all")
        assert placed["order_number"] == order.order_number  # one number, the one stored
        assert order.call_sid == SID
        assert await real.read(counts) == (1, 1, 1)
        told = [json.loads(a["content"]).get("order_number") for a in answers]
        assert [n for n in told if n] == [order.order_number]
        assert [o.order_number for o in report[0].orders] == [order.order_number]
