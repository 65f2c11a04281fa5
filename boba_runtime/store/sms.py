"""The SMS outbox worker and its senders (CONTRACT §8).

The store queues an SMS in the same transaction as the change that causes it; this worker
hands due messages to a sender. The rules that keep a customer from getting the same text
twice:

- the attempt is recorded (`claim_due_sms`: queued → sending, naming this instance, a
  claim across processes and instances; `FOR UPDATE SKIP LOCKED` on PostgreSQL) BEFORE
  the request goes out, so a crash mid-send leaves the row in "sending";
- a "sending" row whose claim is old, or whose claimer on this host is gone, is settled
  as `unknown`, never re-sent (it may have gone out);
- only failures that prove Twilio did not take the message are retried: connection
  failures before the request was sent, `429`, `5xx` (Twilio's own advice; a duplicate is
  then possible only if Twilio created the message and still failed the request);
- a timeout or a dropped connection after the request was sent is `unknown`, final;
- other `4xx` are final as `failed:<Twilio error code>`.

The Twilio REST client is blocking (its async client is asyncio-only), so it runs in
`trio.to_thread.run_sync` behind a `CapacityLimiter`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, Protocol

import msgspec
import trio

from boba_runtime.store.order_store import OrderStore, OutboxMessage, StoreError, parse_time

log = logging.getLogger(__name__)

TWILIO_DEFAULT_BASE_URL = "https://api.twilio.com"
DEFAULT_HTTP_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 4
DELIVERY_GRACE = 60.0  # seconds one delivery may outlive a shutdown (HTTP timeouts are 10 s)


# --- what a send attempt came to ---------------------------------------------------------


class Sent(msgspec.Struct, frozen=True):
    """Twilio accepted the message (or the log sender logged it)."""

    provider_sid: str | None = None


class RetryLater(msgspec.Struct, frozen=True):
    """Twilio surely did not take it (no connection, 429, 5xx): try again later.

    `code` is what gets recorded as `failed:<code>` if the retries run out.
    """

    code: str
    detail: str = ""


class Rejected(msgspec.Struct, frozen=True):
    """Twilio refused it for good (4xx): recorded as `failed:<code>`."""

    code: str
    detail: str = ""


class Unknown(msgspec.Struct, frozen=True):
    """The request went out and the answer was lost: it may have been sent. Never retried."""

    detail: str = ""


SendOutcome = Sent | RetryLater | Rejected | Unknown


class SmsSender(Protocol):
    """Hands one SMS to a provider; never raises for provider trouble, returns an outcome."""

    name: str

    async def send(self, to: str, body: str) -> SendOutcome: ...


# --- senders -----------------------------------------------------------------------------


class LogSender:
    """`BOBA_SMS=log`: writes every SMS to the log (staff may need the number) as sent."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    async def send(self, to: str, body: str) -> SendOutcome:
        self._log.info("SMS (not sent, BOBA_SMS=log) to %s: %s", to, body)
        return Sent(provider_sid=None)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps: requests hides urllib3's reason in args and `.reason`."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked: list[object] = [current.__cause__, current.__context__, *current.args]
        linked.append(getattr(current, "reason", None))
        todo += [item for item in linked if isinstance(item, BaseException)]


def classify_send_error(exc: BaseException) -> SendOutcome:
    """Map what the Twilio client raised to an outcome per CONTRACT §8."""
    import requests.exceptions as rex
    import urllib3.exceptions as u3
    from twilio.base.exceptions import TwilioException  # type: ignore[import-untyped]

    status = getattr(exc, "status", None)
    if isinstance(exc, TwilioException) and isinstance(status, int):
        code = str(getattr(exc, "code", None) or status)
        detail = f"HTTP {status}"
        if status == 429 or status >= 500:
            return RetryLater(code=code, detail=detail)
        return Rejected(code=code, detail=detail)
    chain = list(_exception_chain(exc))
    not_sent = (u3.NewConnectionError, u3.ConnectTimeoutError, rex.ConnectTimeout, rex.SSLError)
    if any(isinstance(item, not_sent) for item in chain):
        return RetryLater(code="timeout", detail=f"could not connect: {type(exc).__name__}")
    if isinstance(exc, rex.ReadTimeout):
        return Unknown(detail="timed out waiting for Twilio's answer")
    if isinstance(exc, rex.RequestException):
        return Unknown(detail=f"connection lost after sending: {type(exc).__name__}")
    return Unknown(detail=f"unexpected error: {type(exc).__name__}")


def _quiet_logger() -> logging.Logger:
    """A private logger for the Twilio HTTP client: its INFO lines echo request bodies."""
    quiet = logging.Logger("boba.sms.twilio_http", logging.WARNING)
    quiet.addHandler(logging.NullHandler())
    return quiet


class TwilioSender:
    """`BOBA_SMS=twilio`: `twilio.rest.Client` in a worker thread, base URL overridable."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = TWILIO_DEFAULT_BASE_URL,
        limiter: trio.CapacityLimiter | None = None,
        *,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
    ) -> None:
        from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
        from twilio.rest import Client  # type: ignore[import-untyped]

        self._from = from_number
        self._limiter = limiter or trio.CapacityLimiter(DEFAULT_CONCURRENCY)
        http = TwilioHttpClient(timeout=timeout, logger=_quiet_logger())
        self._client = Client(account_sid, auth_token, http_client=http)
        self._client.api.base_url = base_url.rstrip("/")

    def _send_blocking(self, to: str, body: str) -> SendOutcome:
        try:
            message = self._client.messages.create(to=to, from_=self._from, body=body)
        except Exception as exc:
            return classify_send_error(exc)
        return Sent(provider_sid=message.sid)

    async def send(self, to: str, body: str) -> SendOutcome:
        return await trio.to_thread.run_sync(self._send_blocking, to, body, limiter=self._limiter)


def make_sender(
    settings: Any = None,
    *,
    sms: str | None = None,
    twilio_account_sid: str | None = None,
    twilio_auth_token: str | None = None,
    twilio_from_number: str | None = None,
    twilio_api_base_url: str | None = None,
    limiter: trio.CapacityLimiter | None = None,
    timeout: float = DEFAULT_HTTP_TIMEOUT,
) -> SmsSender:
    """The sender `settings.sms` names ("log" | "twilio"); keywords override settings."""

    def pick(name: str, given: str | None) -> str | None:
        return given if given is not None else getattr(settings, name, None)

    mode = pick("sms", sms) or "log"
    if mode == "log":
        return LogSender()
    if mode != "twilio":
        raise ValueError(f"BOBA_SMS must be 'log' or 'twilio', not {mode!r}")
    sid = pick("twilio_account_sid", twilio_account_sid)
    token = pick("twilio_auth_token", twilio_auth_token)
    from_number = pick("twilio_from_number", twilio_from_number)
    missing = [
        var
        for var, value in (
            ("TWILIO_ACCOUNT_SID", sid),
            ("TWILIO_AUTH_TOKEN", token),
            ("TWILIO_FROM_NUMBER", from_number),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"BOBA_SMS=twilio needs {', '.join(missing)}")
    assert sid and token and from_number
    base_url = pick("twilio_api_base_url", twilio_api_base_url) or TWILIO_DEFAULT_BASE_URL
    return TwilioSender(sid, token, from_number, base_url, limiter, timeout=timeout)


# --- the worker --------------------------------------------------------------------------


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """CONTRACT §8: 2 s, doubling up to 30 s, for up to 10 minutes from the first try."""

    first_delay: float = 2.0
    max_delay: float = 30.0
    give_up_after: float = 600.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed try (1-based)."""
        exponent = min(attempts - 1, 62)
        return min(self.max_delay, self.first_delay * math.pow(2, exponent))


class SmsWorker:
    """Delivers due outbox messages; the store's change signal (any SMS this process queues)
    or `notify()` wakes it, and it polls for messages other processes queue."""

    def __init__(
        self,
        store: OrderStore,
        sender: SmsSender,
        *,
        poll_interval: float = 0.5,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
        retry: RetryPolicy | None = None,
        max_in_flight: int = DEFAULT_CONCURRENCY,
        stale_sending_after: timedelta = timedelta(seconds=60),
        on_result: Callable[[OutboxMessage, str], None] | None = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._poll_interval = poll_interval
        self._clock = clock or store.clock
        self._sleep = sleep
        self._retry = retry or RetryPolicy()
        self._slots = trio.Semaphore(max_in_flight)
        self._stale_after = stale_sending_after
        self._on_result = on_result
        self._notified = trio.Event()
        self._in_flight: set[int] = set()
        self._max_in_flight = max_in_flight

    def notify(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._notified.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._settle_stale()
        last_sweep = trio.current_time()
        outbox_down = False
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._notified = trio.Event()
                store_event = self._store.changes.next_change()  # before reading
                try:
                    if trio.current_time() - last_sweep > self._stale_after.total_seconds() / 2:
                        await self._settle_stale()
                        last_sweep = trio.current_time()
                    free = self._max_in_flight - len(self._in_flight)
                    due = []
                    if free > 0:  # claim only what can be sent now: a claim is an attempt
                        with trio.CancelScope(shield=True) as claiming:  # rows must reach a task
                            claiming.deadline = trio.current_time() + DELIVERY_GRACE
                            due = await self._store.claim_due_sms(limit=min(free, 20))
                except StoreError as exc:
                    # once per outage, not once per poll
                    log.log(
                        logging.DEBUG if outbox_down else logging.WARNING,
                        "sms: cannot claim messages from the outbox (%s); will retry",
                        exc,
                    )
                    outbox_down, due = True, []
                else:
                    if outbox_down:
                        log.warning("sms: the outbox answers again")
                    outbox_down = False
                for message in due:  # claimed, so never in flight already
                    self._slots.acquire_nowait()  # `free` counted a slot for each
                    self._in_flight.add(message.id)
                    nursery.start_soon(self._deliver_in_slot, message)
                await self._idle(store_event)

    async def _idle(self, store_event: trio.Event) -> None:
        async with trio.open_nursery() as nursery:

            async def first_of(wait: Callable[[], Awaitable[None]]) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(first_of, store_event.wait)
            nursery.start_soon(first_of, self._notified.wait)
            nursery.start_soon(first_of, lambda: self._sleep(self._poll_interval))

    async def _settle_stale(self) -> None:
        """Attempts left "sending" by a crash: they may have gone out, so `unknown`."""
        try:
            settled = await self._store.mark_stale_sending_unknown(
                older_than=self._stale_after, exclude=tuple(self._in_flight)
            )
        except StoreError as exc:
            log.warning("sms: cannot check for interrupted sends (%s)", exc)
            return
        for message_id in settled:
            log.warning(
                "sms: message %d was being sent when a process stopped; recorded as unknown",
                message_id,
            )

    async def _deliver_in_slot(self, message: OutboxMessage) -> None:
        try:
            await self.deliver(message, claimed=True)
        except StoreError as exc:
            log.warning("sms: outbox update failed for message %d (%s)", message.id, exc)
        finally:
            self._in_flight.discard(message.id)
            self._slots.release()
            self._notified.set()  # a free slot: claim what waited for one now, not at the poll

    async def deliver(self, message: OutboxMessage, *, claimed: bool = False) -> str | None:
        """One attempt at `message`; returns the recorded result, None if not ours to send.

        `claimed`: `claim_due_sms` already recorded the attempt; else it is claimed here.
        Shielded from claim to record (for at most `DELIVERY_GRACE` seconds): a shutdown
        that landed between them would leave a claimed row that was never sent, or a sent
        message recorded as nothing; both would end as `unknown`.
        """
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + DELIVERY_GRACE
            started = self._clock()
            if not claimed and not await self._store.mark_sms_sending(message.id):
                return None  # another worker claimed it, or it is settled already
            try:
                outcome = await self._sender.send(message.to, message.body)
            except Exception as exc:  # a sender bug: it may or may not have gone out
                log.exception("sms: sender %s failed unexpectedly", self._sender.name)
                outcome = Unknown(detail=f"sender raised {type(exc).__name__}")
            result, retry_at, sid = self._decide(message, outcome, started)
            await self._store.mark_sms_result(
                message.id, result, retry_at=retry_at, provider_sid=sid
            )
            self._report(message, outcome, result, retry_at)
            return result
        # Only reached if the grace ran out: the row stays "sending" and becomes "unknown".
        log.warning("sms: message %d took too long to settle; left for recovery", message.id)
        return None

    def _decide(
        self, message: OutboxMessage, outcome: SendOutcome, started: datetime
    ) -> tuple[str, datetime | None, str | None]:
        match outcome:
            case Sent(provider_sid=sid):
                return "sent", None, sid
            case Rejected(code=code):
                return f"failed:{code}", None, None
            case Unknown():
                return "unknown", None, None
            case RetryLater(code=code):
                first = (
                    parse_time(message.first_attempt_at) if message.first_attempt_at else started
                )
                delay = timedelta(seconds=self._retry.delay(message.attempts + 1))
                retry_at = self._clock() + delay
                if (retry_at - first).total_seconds() > self._retry.give_up_after:
                    return f"failed:{code}", None, None
                return "queued", retry_at, None
        raise AssertionError(f"unhandled outcome {outcome!r}")

    def _report(
        self, message: OutboxMessage, outcome: SendOutcome, result: str, retry_at: datetime | None
    ) -> None:
        what = f"sms {message.kind} for order {message.order_number} (message {message.id})"
        detail = getattr(outcome, "detail", "")
        if result == "sent":
            log.info("%s: sent via %s", what, self._sender.name)
        elif result == "queued":
            log.warning("%s: %s; retrying at %s", what, detail, retry_at)
        else:
            log.warning("%s: %s (%s)", what, result, detail)
        if self._on_result is not None:
            self._on_result(message, result)


async def run_sms_worker(
    store: OrderStore,
    sender: SmsSender,
    *,
    poll_interval: float = 0.5,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    retry: RetryPolicy | None = None,
    max_in_flight: int = DEFAULT_CONCURRENCY,
    stale_sending_after: timedelta = timedelta(seconds=60),
    on_result: Callable[[OutboxMessage, str], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the outbox worker until cancelled (`nursery.start(run_sms_worker, store, sender)`).

    An SMS queued through `store` in this process wakes it at once; others are seen within
    `poll_interval`. `on_result(message, result)` is a hook for metrics.
    """
    worker = SmsWorker(
        store,
        sender,
        poll_interval=poll_interval,
        clock=clock,
        sleep=sleep,
        retry=retry,
        max_in_flight=max_in_flight,
        stale_sending_after=stale_sending_after,
        on_result=on_result,
    )
    await worker.run(task_status=task_status)
