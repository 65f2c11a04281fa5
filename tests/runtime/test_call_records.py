"""Call records (CONTRACT §13): outcome rules, transcript lines written as the call goes,
crash recovery, and the bounded queue; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from boba_proto import model, twilio
from boba_proto.call import CallerHungUp, EndCall, EndReason, FunctionCalled, Transcript
from boba_runtime.call.records import (
    MAX_BATCH,
    CallRecordTap,
    CallRecordWriter,
    Outcome,
    decide_outcome,
    owner_is_dead,
)
from boba_runtime.store.order_store import OrderStore, StoreError
from boba_runtime.store.records import get_call, list_calls
from tests.helpers.stores import any_db_url  # noqa: F401
from tests.runtime.test_store import TARO, FakeClock, draft
from tests.runtime.test_store_pg import pg_server  # noqa: F401

SID = "CA" + "ab" * 16
CALLER = "+14155550123"


def start(call_sid: str = SID, caller: str = CALLER) -> twilio.Start:
    return twilio.Start(
        stream_sid="MZ" + "0" * 32,
        sequence_number="1",
        start=twilio.StartInfo(
            stream_sid="MZ" + "0" * 32,
            call_sid=call_sid,
            media_format=twilio.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
            custom_parameters={"caller": caller},
        ),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(any_db_url: str, clock: FakeClock) -> AsyncIterator[OrderStore]:  # noqa: F811
    async with await OrderStore.open(any_db_url, clock=clock, rng=random.Random(3)) as opened:
        yield opened


def writer_for(store: OrderStore, clock: FakeClock, **options: object) -> CallRecordWriter:
    return CallRecordWriter(store, clock=clock, **options)  # type: ignore[arg-type]


# --- the outcome rules (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "transferred", "reason", "left_first", "goodbye", "expected"),
    [
        ("4782", False, EndReason.COMPLETED, False, True, Outcome.ORDERED),
        ("4782", False, EndReason.AGENT_FAILED, False, False, Outcome.ORDERED),
        ("4782", False, EndReason.COMPLETED, True, False, Outcome.ORDERED),
        (None, True, EndReason.COMPLETED, False, False, Outcome.TRANSFERRED),
        (None, False, EndReason.AGENT_FAILED, False, False, Outcome.AGENT_FAILED),
        (None, False, EndReason.COMPLETED, True, False, Outcome.CALLER_HUNG_UP),
        (None, False, EndReason.COMPLETED, True, True, Outcome.NO_ORDER),
        (None, False, EndReason.COMPLETED, False, True, Outcome.NO_ORDER),
        (None, False, EndReason.TIME_LIMIT, False, False, Outcome.NO_ORDER),
        (None, False, EndReason.TOO_MANY_MALFORMED, False, False, Outcome.NO_ORDER),
        (None, False, None, True, False, Outcome.CALLER_HUNG_UP),
        (None, False, None, False, False, Outcome.AGENT_FAILED),
    ],
)
def test_outcome_rules(
    order: str | None,
    transferred: bool,
    reason: EndReason | None,
    left_first: bool,
    goodbye: bool,
    expected: Outcome,
) -> None:
    assert (
        decide_outcome(
            order_number=order,
            transferred=transferred,
            end_reason=reason,
            caller_left_first=left_first,
            goodbye_decided=goodbye,
        )
        is expected
    )


async def test_a_backlog_is_written_in_slices(store: OrderStore, clock: FakeClock) -> None:
    writer = writer_for(store, clock)
    transactions = 0
    real_write = store.write

    async def counting(work: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return await real_write(work)

    store.write = counting  # type: ignore[method-assign]
    tap = writer.tap()
    tap.begin(SID)
    tap.record_input(0.0, start())
    for i in range(MAX_BATCH * 2):
        tap.record_outputs(i / 10, [Transcript(role="user", content=f"line {i}")])
    await writer.flush()
    assert transactions == 3 and writer.pending == 0
    detail = await get_call(store, SID)
    assert detail is not None and len(detail.transcript) == MAX_BATCH * 2


def test_an_owner_is_dead_only_when_its_process_is_certainly_gone() -> None:
    host, me = socket.gethostname(), f"{socket.gethostname()}:{os.getpid()}:mine"
    assert not owner_is_dead(me, me)
    assert owner_is_dead(f"{host}:{os.getpid()}:before", me)  # our pid, earlier life
    assert not owner_is_dead(f"{host}:1:x", me)  # a live process
    assert not owner_is_dead(f"elsewhere:{os.getpid()}:x", me)  # another host: heartbeat
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    assert owner_is_dead(f"{host}:{dead}:x", me)


# --- a call through the tap -------------------------------------------------------------------


def play_ordered_call(tap: CallRecordTap, order: model.Order) -> None:
    tap.begin(SID)
    tap.record_input(10.0, start())
    tap.record_outputs(10.4, [Transcript(role="assistant", content="Hey! What would you like?")])
    tap.record_outputs(13.0, [Transcript(role="user", content="a taro milk tea please")])
    tap.record_outputs(
        13.5,
        [FunctionCalled(id="f1", name="add_to_cart", arguments='{"flavor":"taro milk tea"}',
                        result='{"ok":true}')],
    )
    tap.record_input(19.9, model.OrderCommitted(request_id="f2", order=order))
    tap.record_outputs(
        19.9,
        [FunctionCalled(id="f2", name="checkout_order", arguments="{}",
                        result=f'{{"order_number":"{order.order_number}"}}')],
    )
    tap.record_outputs(21.0, [FunctionCalled(id="f3", name="end_call", arguments="{}",
                                             result='{"ok":true}')])
    tap.record_outputs(23.0, [EndCall(reason=EndReason.COMPLETED)])


async def test_a_call_is_kept_with_its_transcript_and_outcome(
    store: OrderStore, clock: FakeClock
) -> None:
    writer = writer_for(store, clock)
    order = await store.commit_order(draft())
    tap = writer.tap()
    play_ordered_call(tap, order)
    await writer.flush()

    # Written as the call goes: the lines are there before the call ends.
    during = await get_call(store, SID)
    assert during is not None
    assert during.call.outcome == "in_progress" and during.call.ended_at is None
    assert during.call.caller == CALLER and during.call.source == "twilio"
    assert [(line.kind, line.role or line.name) for line in during.transcript] == [
        ("text", "assistant"),
        ("text", "user"),
        ("function", "add_to_cart"),
        ("function", "checkout_order"),
        ("function", "end_call"),
    ]
    assert [line.offset for line in during.transcript] == [0.4, 3.0, 3.5, 9.9, 11.0]
    assert during.transcript[2].arguments == '{"flavor":"taro milk tea"}'
    assert during.transcript[2].result == '{"ok":true}'

    clock.advance(seconds=13)
    await tap.aclose()
    await writer.flush()
    after = await get_call(store, SID)
    assert after is not None
    assert after.call.outcome == "ordered"
    assert after.call.order_number == order.order_number
    assert after.call.started_at == "2026-11-25T07:05:11Z"
    assert after.call.ended_at == "2026-11-25T07:05:24Z"
    assert after.call.duration_seconds == 13.0
    assert len(after.transcript) == 5
    [summary] = await list_calls(store, limit=10)
    assert summary == after.call


async def test_a_caller_who_hangs_up_mid_order_and_a_refused_call(
    store: OrderStore, clock: FakeClock
) -> None:
    writer = writer_for(store, clock)
    tap = writer.tap()
    tap.begin(SID)
    tap.record_input(0.0, start())
    tap.record_outputs(0.3, [Transcript(role="assistant", content="Hey!")])
    tap.record_input(4.0, CallerHungUp())
    tap.record_outputs(4.0, [EndCall(reason=EndReason.COMPLETED)])
    await tap.aclose()

    refused = writer.tap()  # wrong token: never admitted, so never kept
    refused.record_input(0.0, start(call_sid="CA" + "cd" * 16))
    await refused.aclose()

    writer.record_unanswered("CA" + "ef" * 16, caller="+14155550199", outcome=Outcome.BUSY)
    await writer.flush()
    calls = {c.call_sid: c for c in await list_calls(store, limit=10)}
    assert set(calls) == {SID, "CA" + "ef" * 16}
    assert calls[SID].outcome == "caller_hung_up"
    assert calls["CA" + "ef" * 16].outcome == "busy"
    assert calls["CA" + "ef" * 16].duration_seconds == 0.0


async def test_an_order_committed_after_the_caller_left_still_counts(
    store: OrderStore, clock: FakeClock
) -> None:
    """The commit finished but its result never reached the session (the call was over)."""
    writer = writer_for(store, clock)
    tap = writer.tap()
    tap.begin(SID)
    tap.record_input(0.0, start())
    tap.record_input(5.0, CallerHungUp())
    tap.record_outputs(5.0, [EndCall(reason=EndReason.COMPLETED)])
    order = await store.commit_order(
        model.OrderDraft(phone=CALLER, items=(TARO,), total_cents=625, call_sid=SID)
    )
    await tap.aclose()
    await writer.flush()
    [summary] = await list_calls(store, limit=1)
    assert (summary.outcome, summary.order_number) == ("ordered", order.order_number)


async def test_a_crash_mid_call_keeps_what_was_said_and_the_outcome_is_unknown_on_restart(
    store: OrderStore, clock: FakeClock
) -> None:
    crashed = writer_for(store, clock, owner=f"{socket.gethostname()}:{os.getpid()}:before")
    tap = crashed.tap()
    tap.begin(SID)
    tap.record_input(0.0, start())
    tap.record_outputs(0.5, [Transcript(role="assistant", content="Hey!")])
    tap.record_outputs(2.0, [Transcript(role="user", content="egg pudding please")])
    await crashed.flush()
    # ... and the process dies here: no end is ever written.

    clock.advance(seconds=5)
    restarted = writer_for(store, clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(restarted.run)  # the sweep runs before `started`
        detail = await get_call(store, SID)
        nursery.cancel_scope.cancel()
    assert detail is not None
    assert detail.call.outcome == "unknown"
    assert detail.call.ended_at == "2026-11-25T07:05:11Z"  # when it was last seen
    assert [line.content for line in detail.transcript] == ["Hey!", "egg pudding please"]


async def test_another_hosts_open_call_is_left_alone_until_its_heartbeat_stops(
    store: OrderStore, clock: FakeClock
) -> None:
    elsewhere = writer_for(store, clock, owner="other-host:1234:abcd", heartbeat=20)
    tap = elsewhere.tap()
    tap.begin(SID)
    tap.record_input(0.0, start())
    await elsewhere.flush()
    here = writer_for(store, clock, stale_seconds=90)
    clock.advance(seconds=60)
    assert await here.sweep_orphans() == []
    await store.write(elsewhere._touch_open_calls)  # its heartbeat
    clock.advance(seconds=80)
    assert await here.sweep_orphans() == []
    clock.advance(seconds=11)
    assert await here.sweep_orphans() == [SID]
    [summary] = await list_calls(store, limit=1)
    assert summary.outcome == "unknown"


async def test_the_queue_is_bounded_and_drops_lines_not_calls(
    store: OrderStore, clock: FakeClock
) -> None:
    writer = writer_for(store, clock, max_pending=4)
    tap = writer.tap()
    tap.begin(SID)
    tap.record_input(0.0, start())
    for i in range(10):
        tap.record_outputs(float(i), [Transcript(role="user", content=f"line {i}")])
    assert writer.pending == 4  # the opening + 3 lines
    await tap.aclose()  # the end still fits (control slack)
    await writer.flush()
    detail = await get_call(store, SID)
    assert detail is not None
    assert [line.content for line in detail.transcript] == ["line 0", "line 1", "line 2"]
    assert detail.call.lines_dropped == 7
    assert detail.call.outcome == "agent_failed"  # no EndCall seen: the runtime failed


async def test_a_store_that_does_not_answer_keeps_the_batch_for_later(
    store: OrderStore, clock: FakeClock
) -> None:
    writer = writer_for(store, clock)
    tap = writer.tap()
    tap.begin(SID)
    tap.record_input(0.0, start())
    tap.record_outputs(1.0, [Transcript(role="user", content="hello")])
    real_write = store.write

    async def failing(work: object) -> object:
        raise StoreError("disk unplugged")

    store.write = failing  # type: ignore[method-assign, assignment]
    with pytest.raises(StoreError):
        await writer.flush()
    assert writer.pending == 2
    store.write = real_write  # type: ignore[method-assign]
    await writer.flush()
    detail = await get_call(store, SID)
    assert detail is not None and [line.content for line in detail.transcript] == ["hello"]


async def test_the_tap_never_waits_on_the_store(store: OrderStore, clock: FakeClock) -> None:
    """A call's reader tasks only queue: with the store's one connection held elsewhere
    (anything that waited for it would hang), a whole call is recorded at once."""
    writer = writer_for(store, clock)
    order = await store.commit_order(draft())
    tap = writer.tap()
    async with store._limiter:
        with trio.fail_after(2):
            play_ordered_call(tap, order)
            await tap.aclose()
    assert writer.pending == 7


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ('{"ok":true,"transferring":true}', "transferred"),
        ('{"error":"no one is free"}', "no_order"),
    ],
)
async def test_a_transfer_to_staff_that_went_through(
    store: OrderStore, clock: FakeClock, result: str, expected: str
) -> None:
    writer = writer_for(store, clock)
    tap = writer.tap()
    tap.begin(SID)
    tap.record_input(0.0, start())
    tap.record_outputs(5.0, [FunctionCalled(id="t", name="transfer_to_staff", arguments="{}",
                                            result=result)])
    tap.record_outputs(7.0, [EndCall(reason=EndReason.COMPLETED)])
    await tap.aclose()
    await writer.flush()
    [summary] = await list_calls(store, limit=1)
    assert summary.outcome == expected
