"""The SMS outbox worker against a fake Twilio REST API on loopback (CONTRACT §8)."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from boba_proto.model import Drink, Order, OrderDraft
from boba_runtime.store.order_store import OrderStore, parse_time
from boba_runtime.store.sms import (
    LogSender,
    Rejected,
    RetryLater,
    RetryPolicy,
    Sent,
    SmsWorker,
    TwilioSender,
    Unknown,
    make_sender,
    run_sms_worker,
)
from tests.fakes.twilio_rest import CloseOnAccept, Drop, Fail, FakeTwilioRest, Stall

FROM = "+15005550006"
TO = "+14155551234"
DRAFT = OrderDraft(
    phone=TO,
    items=(Drink(flavor="taro milk tea", sweetness="50%", ice="regular ice", price_cents=550),),
    total_cents=550,
)
HTTP_TIMEOUT = 0.4


class FakeClock:
    """A wall clock the test moves by hand (the store's and so the worker's clock)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 7, 5, 11, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests honours HTTP(S)_PROXY; the fake is on loopback."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def fake() -> Iterator[FakeTwilioRest]:
    with FakeTwilioRest() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/orders.sqlite3"


@pytest.fixture
async def store(db_url: str, clock: FakeClock) -> AsyncIterator[OrderStore]:
    async with await OrderStore.open(db_url, clock=clock, rng=random.Random(5)) as opened:
        yield opened


def twilio(fake: FakeTwilioRest, *, timeout: float = HTTP_TIMEOUT) -> TwilioSender:
    return TwilioSender(
        fake.account_sid,
        fake.auth_token,
        FROM,
        fake.base_url,
        trio.CapacityLimiter(2),
        timeout=timeout,
    )


async def one_due(store: OrderStore) -> Order:
    order = await store.commit_order(DRAFT)
    return order


async def deliver_due(worker: SmsWorker, store: OrderStore) -> list[str | None]:
    return [await worker.deliver(m) for m in await store.due_sms()]


async def sms_received(store: OrderStore, order: Order) -> str | None:
    current = await store.get_order(order.order_number)
    assert current is not None
    return current.sms_received


# --- outcomes, one attempt each ----------------------------------------------------------


async def test_success_records_sent_with_the_sid_and_exact_text(
    store: OrderStore, fake: FakeTwilioRest
) -> None:
    order = await one_due(store)
    worker = SmsWorker(store, twilio(fake))
    assert await deliver_due(worker, store) == ["sent"]

    [request] = fake.messages()
    assert request.path == f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
    assert request.authorised and request.auth_user == fake.account_sid
    assert request.form == {
        "To": TO,
        "From": FROM,
        "Body": f"Thanks for your order! Your order number is {order.order_number}. "
        "It should be ready in about 5 minutes. "  # CONTRACT §12
        "We'll text you when it's ready for pickup.",
    }
    assert await sms_received(store, order) == "sent"
    [message_row] = [await store.sms_row(1)]
    assert message_row is not None
    assert message_row["provider_sid"] == request.created_sid
    assert message_row["attempts"] == 1


@pytest.mark.parametrize(
    ("code", "recorded"),
    [
        (21211, "failed:21211"),
        (21614, "failed:21614"),
        (21610, "failed:21610"),
        (None, "failed:404"),
    ],
)
async def test_4xx_is_final_failed_with_the_twilio_code(
    store: OrderStore, fake: FakeTwilioRest, clock: FakeClock, code: int | None, recorded: str
) -> None:
    order = await one_due(store)
    fake.script_messages(Fail(400 if code else 404, code))
    worker = SmsWorker(store, twilio(fake))
    assert await deliver_due(worker, store) == [recorded]
    assert await sms_received(store, order) == recorded
    clock.advance(hours=1)
    assert await store.due_sms() == []
    assert len(fake.messages()) == 1


@pytest.mark.parametrize("failure", [Fail(500, 20500), Fail(503), Fail(429, 20429)])
async def test_429_and_5xx_retry_after_2s_then_succeed(
    store: OrderStore, fake: FakeTwilioRest, clock: FakeClock, failure: Fail
) -> None:
    order = await one_due(store)
    fake.script_messages(failure)
    worker = SmsWorker(store, twilio(fake))
    assert await deliver_due(worker, store) == ["queued"]
    assert await sms_received(store, order) == "queued"

    clock.advance(seconds=1.9)
    assert await store.due_sms() == []
    clock.advance(seconds=0.1)
    assert await deliver_due(worker, store) == ["sent"]
    assert await sms_received(store, order) == "sent"
    assert [r.behaviour for r in fake.messages()] == [f"fail:{failure.status}", "succeed"]


async def test_connection_refused_is_retried(
    store: OrderStore, fake: FakeTwilioRest, clock: FakeClock
) -> None:
    order = await one_due(store)
    worker = SmsWorker(store, twilio(fake))
    fake.stop_listening()
    assert await deliver_due(worker, store) == ["queued"]
    fake.start_listening()
    clock.advance(seconds=2)
    assert await deliver_due(worker, store) == ["sent"]
    assert await sms_received(store, order) == "sent"
    assert len(fake.created_messages()) == 1


@pytest.mark.parametrize("lost", [Stall(HTTP_TIMEOUT * 3), Drop(), CloseOnAccept()])
async def test_answer_lost_after_sending_is_unknown_and_never_retried(
    store: OrderStore, fake: FakeTwilioRest, clock: FakeClock, lost: object
) -> None:
    order = await one_due(store)
    fake.script_messages(lost)  # type: ignore[arg-type]
    worker = SmsWorker(store, twilio(fake))
    with trio.fail_after(HTTP_TIMEOUT * 2.5):  # the client timeout, not the stall, decides
        assert await deliver_due(worker, store) == ["unknown"]
    assert await sms_received(store, order) == "unknown"
    clock.advance(hours=1)
    assert await store.due_sms() == []
    assert len(fake.messages()) == 1


def test_retry_schedule_is_2s_doubling_to_30s() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [2, 4, 8, 16, 30, 30, 30]
    assert policy.delay(500) == 30
    assert policy.give_up_after == 600


@pytest.mark.parametrize(
    ("failure", "recorded"), [(Fail(503, 20503), "failed:20503"), (None, "failed:timeout")]
)
async def test_gives_up_ten_minutes_after_the_first_attempt(
    store: OrderStore, fake: FakeTwilioRest, clock: FakeClock, failure: Fail | None, recorded: str
) -> None:
    order = await one_due(store)
    worker = SmsWorker(store, twilio(fake))
    if failure is None:
        fake.stop_listening()
    else:
        fake.script_messages(*[failure] * 100)
    first_attempt = clock()
    attempt_times = []
    results: list[str | None] = []
    while not results or results[-1] == "queued":
        [message] = await store.due_sms()
        attempt_times.append((clock() - first_attempt).total_seconds())
        results.append(await worker.deliver(message))
        row = await store.sms_row(message.id)
        assert row is not None
        if results[-1] == "queued":
            due_at = str(row["next_attempt_at"])
            clock.now = parse_time(due_at)
    # 0, 2, 6, 14, 30, then every 30 s while the next try is within 600 s of the first
    assert attempt_times[:6] == [0, 2, 6, 14, 30, 60]
    assert all(b - a == 30 for a, b in itertools.pairwise(attempt_times[4:]))
    assert attempt_times[-1] <= 600 < attempt_times[-1] + 30
    assert results[-1] == recorded
    assert await sms_received(store, order) == recorded
    if failure is not None:
        assert len(fake.messages()) == len(attempt_times)


# --- never twice -------------------------------------------------------------------------


async def test_crash_mid_send_is_unknown_at_restart_and_not_resent(
    db_url: str, fake: FakeTwilioRest, clock: FakeClock
) -> None:
    async with await OrderStore.open(db_url, clock=clock) as crashed:
        order = await crashed.commit_order(DRAFT)
        [message] = await crashed.due_sms()
        assert await crashed.mark_sms_sending(message.id)
        # ... the process dies here, before the result is recorded
    clock.advance(seconds=61)
    async with await OrderStore.open(db_url, clock=clock) as restarted, trio.open_nursery() as n:
        await n.start(run_sms_worker, restarted, twilio(fake))
        with trio.fail_after(5):
            while await sms_received(restarted, order) != "unknown":
                await trio.sleep(0.01)
        n.cancel_scope.cancel()
    assert fake.messages() == []


async def test_a_sent_message_is_not_sent_again_after_restart(
    db_url: str, fake: FakeTwilioRest, clock: FakeClock
) -> None:
    async with await OrderStore.open(db_url, clock=clock) as first:
        order = await first.commit_order(DRAFT)
        assert await deliver_due(SmsWorker(first, twilio(fake)), first) == ["sent"]
    clock.advance(hours=1)
    async with await OrderStore.open(db_url, clock=clock) as second, trio.open_nursery() as n:
        await n.start(
            lambda task_status: run_sms_worker(
                second,
                twilio(fake),
                poll_interval=0.05,
                stale_sending_after=timedelta(0),
                task_status=task_status,
            )
        )
        await trio.sleep(0.3)
        n.cancel_scope.cancel()
        assert await sms_received(second, order) == "sent"
    assert len(fake.messages()) == 1


async def test_two_workers_on_one_file_send_each_message_once(
    db_url: str, fake: FakeTwilioRest
) -> None:
    async with (
        await OrderStore.open(db_url) as a,
        await OrderStore.open(db_url) as b,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            lambda task_status: run_sms_worker(
                a, twilio(fake), poll_interval=0.01, task_status=task_status
            )
        )
        await nursery.start(
            lambda task_status: run_sms_worker(
                b, twilio(fake), poll_interval=0.01, task_status=task_status
            )
        )
        orders = [await (a if i % 2 else b).commit_order(DRAFT) for i in range(20)]
        with trio.fail_after(10):
            while [await sms_received(a, o) for o in orders] != ["sent"] * len(orders):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    bodies = [r.form["Body"] for r in fake.messages()]
    assert len(bodies) == 20
    assert len(set(bodies)) == 20


# --- the running worker ------------------------------------------------------------------


async def test_worker_wakes_on_commit_and_on_done(
    store: OrderStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="boba_runtime.store.sms")
    results: list[tuple[str, str]] = []
    async with trio.open_nursery() as nursery:
        # a poll interval of a minute: only the store's wake-up can make this fast
        await nursery.start(
            lambda task_status: run_sms_worker(
                store,
                LogSender(),
                poll_interval=60,
                on_result=lambda m, r: results.append((m.kind, r)),
                task_status=task_status,
            )
        )
        order = await store.commit_order(DRAFT)
        with trio.fail_after(2):
            while await sms_received(store, order) != "sent":
                await trio.sleep(0.01)
        await store.mark_ready(order.order_number)
        with trio.fail_after(2):
            while (await store.get_order(order.order_number)).sms_ready != "sent":  # type: ignore[union-attr]
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert results == [("received", "sent"), ("ready", "sent")]
    logged = caplog.text
    assert f"Your boba order #{order.order_number} is now ready for pickup!" in logged
    assert TO in logged  # the log sender is for staff: the number is there on purpose


async def test_notify_wakes_the_worker_for_rows_written_elsewhere(
    db_url: str, clock: FakeClock
) -> None:
    async with (
        await OrderStore.open(db_url) as worker_store,
        await OrderStore.open(db_url) as other_process,
        trio.open_nursery() as nursery,
    ):
        worker = SmsWorker(worker_store, LogSender(), poll_interval=60)
        await nursery.start(worker.run)
        order = await other_process.commit_order(DRAFT)
        await trio.sleep(0.2)
        assert await sms_received(worker_store, order) == "queued"  # no wake-up crossed over
        worker.notify()
        with trio.fail_after(2):
            while await sms_received(worker_store, order) != "sent":
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_running_worker_retries_through_failures_to_sent(
    db_url: str, fake: FakeTwilioRest
) -> None:
    fake.script_messages(Fail(503), Fail(429, 20429), Fail(500, 20500))
    policy = RetryPolicy(first_delay=0.05, max_delay=0.1, give_up_after=30)
    async with await OrderStore.open(db_url) as store, trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_sms_worker(
                store, twilio(fake), poll_interval=0.02, retry=policy, task_status=task_status
            )
        )
        order = await store.commit_order(DRAFT)
        with trio.fail_after(5):
            while await sms_received(store, order) != "sent":
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert [r.behaviour for r in fake.messages()] == ["fail:503", "fail:429", "fail:500", "succeed"]


async def test_a_stalled_send_does_not_hold_up_the_next_order(
    store: OrderStore, fake: FakeTwilioRest
) -> None:
    fake.script_messages(Stall(3))
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_sms_worker(
                store, twilio(fake, timeout=1.5), poll_interval=0.02, task_status=task_status
            )
        )
        stalled = await store.commit_order(DRAFT)
        await fake.await_requests(1)
        second = await store.commit_order(DRAFT)
        with trio.fail_after(2):
            while await sms_received(store, second) != "sent":
                await trio.sleep(0.02)
        assert await sms_received(store, stalled) == "queued"  # still waiting on Twilio
        nursery.cancel_scope.cancel()


# --- senders -----------------------------------------------------------------------------


def test_make_sender_picks_by_settings(fake: FakeTwilioRest) -> None:
    assert isinstance(make_sender(SimpleNamespace(sms="log")), LogSender)
    assert isinstance(make_sender(), LogSender)
    settings = SimpleNamespace(
        sms="twilio",
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_from_number=FROM,
        twilio_api_base_url=fake.base_url,
    )
    sender = make_sender(settings)
    assert isinstance(sender, TwilioSender)
    assert sender._client.api.base_url == fake.base_url
    with pytest.raises(ValueError, match="TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER"):
        make_sender(sms="twilio", twilio_account_sid="AC1")
    with pytest.raises(ValueError, match="BOBA_SMS"):
        make_sender(sms="carrier-pigeon")


async def test_twilio_sender_talks_to_the_configured_base_url(fake: FakeTwilioRest) -> None:
    sender = make_sender(
        sms="twilio",
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_from_number=FROM,
        twilio_api_base_url=fake.base_url + "/",
    )
    outcome = await sender.send(TO, "hello")
    assert outcome == type(outcome)(provider_sid=fake.created_messages()[0].created_sid)


async def test_wrong_credentials_are_a_final_failure(fake: FakeTwilioRest) -> None:
    sender = TwilioSender(fake.account_sid, "wrong", FROM, fake.base_url, timeout=HTTP_TIMEOUT)
    outcome = await sender.send(TO, "hello")
    assert outcome.code == "20003"  # type: ignore[union-attr]
    assert fake.messages()[0].behaviour == "unauthorised"


async def test_unreachable_port_is_a_retry_not_unknown(fake: FakeTwilioRest) -> None:
    port = fake.port
    fake.stop_listening()
    sender = TwilioSender(
        fake.account_sid, fake.auth_token, FROM, f"http://127.0.0.1:{port}", timeout=HTTP_TIMEOUT
    )
    assert isinstance(await sender.send(TO, "x"), RetryLater)
    fake.start_listening()
    fake.script_messages(Drop())
    assert isinstance(await sender.send(TO, "x"), Unknown)


async def test_fake_records_call_updates(fake: FakeTwilioRest) -> None:
    from twilio.rest import Client

    client = Client(fake.account_sid, fake.auth_token)
    client.api.base_url = fake.base_url
    call_sid = "CA" + "2" * 32
    call = await trio.to_thread.run_sync(lambda: client.calls(call_sid).update(status="completed"))
    assert call.sid == call_sid
    [request] = fake.calls()
    assert request.path.endswith(f"/Calls/{call_sid}.json")
    assert request.form == {"Status": "completed"}


async def test_shutdown_mid_send_still_records_the_outcome(
    store: OrderStore, fake: FakeTwilioRest
) -> None:
    fake.script_messages(Stall(0.5))  # answered within the client's timeout
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_sms_worker(
                store, twilio(fake, timeout=2), poll_interval=0.02, task_status=task_status
            )
        )
        order = await store.commit_order(DRAFT)
        await fake.await_requests(1)
        nursery.cancel_scope.cancel()  # shutdown while Twilio is answering
    assert await sms_received(store, order) == "sent"
    assert len(fake.messages()) == 1


async def test_delivery_does_not_depend_on_the_stale_threshold(store: OrderStore) -> None:
    order = await one_due(store)
    worker = SmsWorker(store, LogSender(), stale_sending_after=timedelta(0))
    assert await deliver_due(worker, store) == ["sent"]
    assert await sms_received(store, order) == "sent"


async def test_worker_rides_out_a_locked_database(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    from boba_runtime.store.order_store import sqlite_path_from_url

    async with await OrderStore.open(db_url, busy_timeout=0.1) as store:
        order = await store.commit_order(DRAFT)
        blocker = sqlite3.connect(sqlite_path_from_url(db_url), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: run_sms_worker(
                        store, LogSender(), poll_interval=0.02, task_status=task_status
                    )
                )
                await trio.sleep(0.5)
                assert await sms_received(store, order) == "queued"
                blocker.execute("ROLLBACK")
                with trio.fail_after(3):
                    while await sms_received(store, order) != "sent":
                        await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
        finally:
            blocker.close()
    assert "cannot claim messages from the outbox" in caplog.text  # and then it could


async def test_the_sender_keeps_its_connection_alive(fake: FakeTwilioRest) -> None:
    sender = twilio(fake, timeout=5)
    for n in range(3):
        assert isinstance(await sender.send(TO, f"message {n}"), Sent)
    assert [m.connection for m in fake.messages()] == [1, 1, 1]
    assert fake.connection_count() == 1


async def test_a_connection_twilio_closed_while_idle_is_not_a_lost_message(
    fake: FakeTwilioRest,
) -> None:
    # api.twilio.com closes idle kept-alive connections; the pooled one is then stale. The
    # next message must go out on a new connection, not end `unknown` (final, never resent).
    sender = twilio(fake, timeout=5)
    assert isinstance(await sender.send(TO, "first"), Sent)
    assert fake.close_idle_connections(at_least=1) == 1
    assert isinstance(await sender.send(TO, "second"), Sent)
    assert [m.form["Body"] for m in fake.created_messages()] == ["first", "second"]
    assert fake.connection_count() == 2


@pytest.mark.parametrize(("to", "body", "code"), [
    ("4155551234", "hi", "21211"),  # not E.164
    ("+1 415 555 1234", "hi", "21211"),
    ("", "hi", "21604"),
    (TO, "", "21602"),
    (TO, "x" * 1601, "21617"),
])
async def test_what_twilio_refuses_is_a_final_failure_with_its_code(
    fake: FakeTwilioRest, to: str, body: str, code: str
) -> None:
    outcome = await twilio(fake, timeout=5).send(to, body)
    assert isinstance(outcome, Rejected) and outcome.code == code, outcome
    assert fake.created_messages() == []


def test_the_fake_answers_like_twilio() -> None:
    """The fake itself: Twilio's error JSON for a bad form and bad credentials."""
    import httpx

    with FakeTwilioRest() as fake:
        url = f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
        auth = (fake.account_sid, fake.auth_token)
        with httpx.Client(timeout=5) as client:
            missing_from = client.post(url, auth=auth, data={"To": TO, "Body": "x"})
            assert missing_from.status_code == 400
            assert missing_from.json() == {
                "code": 21603, "message": "A 'From' phone number is required.",
                "more_info": "https://www.twilio.com/docs/errors/21603", "status": 400}
            bad_from = client.post(url, auth=auth, data={"To": TO, "From": "shop", "Body": "x"})
            assert bad_from.json()["code"] == 21212
            unauthorised = client.post(url, auth=(fake.account_sid, "wrong"),
                                       data={"To": TO, "From": FROM, "Body": "x"})
            assert unauthorised.status_code == 401 and unauthorised.json()["code"] == 20003
            created = client.post(url, auth=auth, data={"To": TO, "From": FROM, "Body": "x"})
            assert created.status_code == 201 and created.json()["sid"].startswith("SM")
        assert {r.connection for r in fake.requests()} == {1}  # one kept-alive connection


async def test_a_freed_slot_claims_the_next_message_at_once(store: OrderStore) -> None:
    """Claims are only as many as the free slots (a claim counts as an attempt), so the
    rest wait for a slot; a finished delivery wakes the worker for them (the poll here is a
    minute and no commit happens meanwhile)."""
    orders = [await store.commit_order(DRAFT) for _ in range(3)]
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_sms_worker(
                store, LogSender(), poll_interval=60, max_in_flight=1, task_status=task_status
            )
        )
        with trio.fail_after(10):
            while [await sms_received(store, o) for o in orders] != ["sent"] * 3:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


class GatedSender:
    """A sender (the Twilio boundary) that holds each send until the test lets it go."""

    name = "gated"

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = trio.Event()
        self.first_started = trio.Event()

    async def send(self, to: str, body: str) -> Sent:
        self.started.append(body)
        self.first_started.set()
        if len(self.started) == 1:
            await self.release.wait()
        return Sent(provider_sid=None)


@pytest.mark.parametrize("max_in_flight", [1, 2])
async def test_a_commit_while_a_delivery_is_in_flight_is_not_lost(
    store: OrderStore, max_in_flight: int
) -> None:
    """The store's change signal for a new order can arrive while every slot is busy (it
    wakes the worker, which has nothing to claim into) or while one is free; either way
    that order is sent without waiting for the poll (a minute here). With one slot it goes
    out when the first delivery ends; with two, while the first is still held."""
    sender = GatedSender()
    first = await store.commit_order(DRAFT)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_sms_worker(
                store, sender, poll_interval=60, max_in_flight=max_in_flight,
                task_status=task_status,
            )
        )
        with trio.fail_after(10):
            await sender.first_started.wait()
            second = await store.commit_order(DRAFT)  # fires the change signal mid-delivery
            if max_in_flight == 1:
                await trio.testing.wait_all_tasks_blocked()  # it took the signal, no slot free
                assert await sms_received(store, second) == "queued"
                sender.release.set()
            while await sms_received(store, second) != "sent":
                await trio.sleep(0.01)
            assert (await sms_received(store, first) == "sent") == (max_in_flight == 1)
            sender.release.set()
            while await sms_received(store, first) != "sent":
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert len(sender.started) == 2
