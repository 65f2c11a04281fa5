"""Call records: every call's outcome and transcript, kept in the store as the call goes.

Two halves (CONTRACT §13):

- `CallRecordTap`, one per call, sees every input and output of the core through the
  same hook as the session recorder (`call.runner.CallRecorderLike`). It turns
  `Transcript` and `FunctionCalled` observations into transcript lines, works out the
  call's outcome, and hands everything to the writer. It never awaits: the call's reader
  tasks only append to an in-memory queue.
- `CallRecordWriter`, one per process, drains that queue in batches (one transaction for
  every call's new lines, about twice a second), so a hundred calls cost the store two
  writes a second, not one per line. The queue is bounded: when the store cannot keep up
  (or is down), new transcript lines are dropped and counted on the call, and the call
  goes on. A call that is open in the store belongs to its writer (`owner`), which
  touches it now and then; when a writer dies mid-call (a crash, a kill), the next start
  on that host, or any writer once the call has not been touched for `STALE_SECONDS`,
  marks it `unknown`. What was said before the crash is kept.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import msgspec
import trio

from boba_proto import model, twilio
from boba_proto.call import (
    Action,
    CallConfig,
    CallerHungUp,
    CallEvent,
    EndCall,
    EndReason,
    FunctionCalled,
    Transcript,
)
from boba_runtime.call.runner import CallRecorderLike
from boba_runtime.store.order_store import (
    OrderStore,
    StoreConnection,
    StoreError,
    format_precise_time,
    utc_now,
)
from boba_runtime.store.process_tags import new_process_tag, tagged_process_is_gone

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
"""How often queued lines are written (a crash loses at most about this much)."""
HEARTBEAT_S = 20.0
"""How often a writer touches its open calls (and looks for calls whose writer died)."""
STALE_SECONDS = 90.0
"""An open call not touched for this long belongs to a dead writer: its outcome is unknown."""
MAX_PENDING = 20_000
"""Queued transcript lines per process; beyond this, lines are dropped and counted."""
CONTROL_SLACK = 2_000
"""Call openings and endings may exceed MAX_PENDING by this much (they are never dropped
while there is room; past it the store has been down a long time and one is logged)."""
MAX_BATCH = 500
"""Changes per transaction: a backlog is written in slices, so an order's commit, which
shares the store's connection, never waits behind one long transaction."""
FLUSH_TIMEOUT_S = 5.0
"""Bound on the final write when the process stops."""

TRANSFER_FUNCTION = "transfer_to_staff"
END_CALL_FUNCTION = "end_call"


class Outcome(enum.StrEnum):
    """How a call ended, as staff and the daily report see it (CONTRACT §13)."""

    ORDERED = "ordered"
    NO_ORDER = "no_order"
    TRANSFERRED = "transferred"
    AGENT_FAILED = "agent_failed"
    BUSY = "busy"
    CLOSED = "closed"
    CALLER_HUNG_UP = "caller_hung_up"
    UNKNOWN = "unknown"  # the process died while the call was on


class LineKind(enum.StrEnum):
    TEXT = "text"  # one ConversationText line
    FUNCTION = "function"  # one client-side function call with its answer


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One transcript entry; `offset_ms` counts from the start of the call."""

    seq: int
    offset_ms: int
    kind: LineKind
    role: str = ""  # "user" | "assistant" (Deepgram's ConversationText roles)
    content: str = ""
    name: str = ""
    arguments: str = ""
    result: str = ""


class CallOpened(msgspec.Struct, frozen=True, kw_only=True):
    call_sid: str
    source: str  # "twilio" | "phone"
    caller: str
    started_at: datetime


class LineAdded(msgspec.Struct, frozen=True, kw_only=True):
    call_sid: str
    line: Line


class CallClosed(msgspec.Struct, frozen=True, kw_only=True):
    call_sid: str
    ended_at: datetime
    outcome: Outcome
    order_number: str | None = None
    greeted_ms: int | None = None
    ordered_ms: int | None = None
    lines_dropped: int = 0


Change = CallOpened | LineAdded | CallClosed


def source_of(call_sid: str) -> str:
    """Twilio's CallSids start with CA; the softphone's and `boba call`'s with PH."""
    return "phone" if call_sid.startswith("PH") else "twilio"


def decide_outcome(
    *,
    order_number: str | None,
    transferred: bool,
    end_reason: EndReason | None,
    caller_left_first: bool,
    goodbye_decided: bool,
) -> Outcome:
    """The outcome of a call that ran (CONTRACT §13). An order wins over everything: the
    shop has it. A caller who hangs up after the agent decided to say goodbye did not
    give up; one who hangs up before did."""
    if order_number is not None:
        return Outcome.ORDERED
    if transferred or (end_reason is not None and end_reason.value == "transfer"):
        return Outcome.TRANSFERRED  # (EndReason.TRANSFER where the core has it, CONTRACT §12)
    if end_reason is EndReason.AGENT_FAILED:
        return Outcome.AGENT_FAILED
    if caller_left_first and not goodbye_decided:
        return Outcome.CALLER_HUNG_UP
    if end_reason is None:
        return Outcome.AGENT_FAILED  # the runtime itself failed before the session ended
    return Outcome.NO_ORDER


def _transfer_succeeded(result: str) -> bool:
    """A `transfer_to_staff` answer that is not an error means the call is handed over."""
    try:
        decoded = msgspec.json.decode(result)
    except msgspec.DecodeError:
        return False
    return not (isinstance(decoded, dict) and "error" in decoded)


class CallRecordTap:
    """One call's view for the records (implements `call.runner.CallRecorderLike`).

    Every method is synchronous or returns at once: nothing here waits on the store.
    """

    def __init__(self, writer: CallRecordWriter) -> None:
        self.writer = writer
        self.call_sid = ""
        self.admitted = False
        self.opened = False
        self.t_start = 0.0
        self.seq = 0
        self.order_number: str | None = None
        self.greeted_ms: int | None = None
        self.ordered_ms: int | None = None
        self.transferred = False
        self.end_reason: EndReason | None = None
        self.caller_left_first = False
        self.goodbye_decided = False
        self.closed = False

    def _offset_ms(self, t: float) -> int:
        return max(0, round((t - self.t_start) * 1000))

    # -- CallRecorderLike --

    def begin(self, call_sid: str) -> None:
        """The call was admitted (token and capacity checked): from now on it is kept."""
        self.admitted = True
        self.call_sid = call_sid

    def record_input(self, t: float, event: CallEvent) -> None:
        if not self.admitted or self.closed:
            return
        match event:
            case twilio.Start(start=info) if not self.opened:
                self.call_sid = info.call_sid or self.call_sid
                if not self.call_sid:
                    return  # nothing to key the record on (the token check refuses these)
                self.opened = True
                self.t_start = t
                self.writer.open_call(
                    self.call_sid, caller=info.custom_parameters.get("caller", "")
                )
            case twilio.Stop() | CallerHungUp():
                if self.end_reason is None:
                    self.caller_left_first = True
            case model.OrderCommitted(order=order):
                self.order_number = order.order_number
                self.ordered_ms = self._offset_ms(t)
            case _:
                pass

    def record_outputs(self, t: float, actions: list[Action]) -> None:
        if not self.opened or self.closed:
            return
        for action in actions:
            match action:
                case Transcript(role=role, content=content):
                    if role == "assistant" and self.greeted_ms is None:
                        self.greeted_ms = self._offset_ms(t)
                    self._line(t, kind=LineKind.TEXT, role=role, content=content)
                case FunctionCalled(name=name, arguments=arguments, result=result):
                    if name == END_CALL_FUNCTION:
                        self.goodbye_decided = True
                    if name == TRANSFER_FUNCTION and _transfer_succeeded(result):
                        self.transferred = True
                    self._line(
                        t, kind=LineKind.FUNCTION, name=name, arguments=arguments, result=result
                    )
                case EndCall(reason=reason):
                    if self.end_reason is None:
                        self.end_reason = reason
                case _:
                    pass

    def _line(
        self,
        t: float,
        *,
        kind: LineKind,
        role: str = "",
        content: str = "",
        name: str = "",
        arguments: str = "",
        result: str = "",
    ) -> None:
        self.seq += 1
        line = Line(
            seq=self.seq, offset_ms=self._offset_ms(t), kind=kind, role=role, content=content,
            name=name, arguments=arguments, result=result,
        )
        self.writer.add_line(self.call_sid, line)

    async def run(self) -> None:
        """Nothing to do per call: the process's writer does the writing."""
        await trio.sleep_forever()

    async def flush(self) -> None:
        """The end of the call is queued by `aclose`; the writer writes it within ~0.5 s."""

    async def aclose(self) -> None:
        if not self.opened or self.closed:
            return
        self.closed = True
        outcome = decide_outcome(
            order_number=self.order_number,
            transferred=self.transferred,
            end_reason=self.end_reason,
            caller_left_first=self.caller_left_first,
            goodbye_decided=self.goodbye_decided,
        )
        self.writer.close_call(
            self.call_sid,
            outcome=outcome,
            order_number=self.order_number,
            greeted_ms=self.greeted_ms,
            ordered_ms=self.ordered_ms,
        )


# --- the process's writer ------------------------------------------------------------------


def owner_is_dead(owner: str, me: str) -> bool:
    """True when `owner` is a writer on this host that is certainly gone: its process no
    longer runs, or it had this process's pid before (a restarted container's pid 1)."""
    return tagged_process_is_gone(owner, me, same_pid_is_gone=True)


class CallRecordWriter:
    """Queues call records from this process's calls and writes them in batches."""

    def __init__(
        self,
        store: OrderStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        owner: str | None = None,
        max_pending: int = MAX_PENDING,
        flush_interval: float = FLUSH_INTERVAL_S,
        heartbeat: float = HEARTBEAT_S,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner if owner is not None else new_process_tag()
        self.max_pending = max_pending
        self.flush_interval = flush_interval
        self.heartbeat = heartbeat
        self.stale_seconds = stale_seconds
        self._pending: deque[Change] = deque()
        self._dropped: dict[str, int] = {}  # call sid -> transcript lines dropped
        self._lock = trio.Lock()
        self._wakeup = trio.Event()
        self.lines_dropped_total = 0

    def tap(self) -> CallRecordTap:
        """The per-call half, for `CallDeps.open_recorder`."""
        return CallRecordTap(self)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- queueing (synchronous, from the call's tasks) --

    def _queue(self, change: Change, *, droppable: bool) -> bool:
        limit = self.max_pending if droppable else self.max_pending + CONTROL_SLACK
        if len(self._pending) >= limit:
            return False
        self._pending.append(change)
        if len(self._pending) == 1:
            self._wakeup.set()
        return True

    def open_call(self, call_sid: str, *, caller: str) -> None:
        change = CallOpened(
            call_sid=call_sid, source=source_of(call_sid), caller=caller, started_at=self.clock()
        )
        if not self._queue(change, droppable=False):
            log.error("call %s: no room to keep its record (the store is behind)", call_sid)

    def add_line(self, call_sid: str, line: Line) -> None:
        if not self._queue(LineAdded(call_sid=call_sid, line=line), droppable=True):
            self._dropped[call_sid] = self._dropped.get(call_sid, 0) + 1
            self.lines_dropped_total += 1

    def close_call(
        self,
        call_sid: str,
        *,
        outcome: Outcome,
        order_number: str | None = None,
        greeted_ms: int | None = None,
        ordered_ms: int | None = None,
    ) -> None:
        change = CallClosed(
            call_sid=call_sid,
            ended_at=self.clock(),
            outcome=outcome,
            order_number=order_number,
            greeted_ms=greeted_ms,
            ordered_ms=ordered_ms,
            lines_dropped=self._dropped.pop(call_sid, 0),
        )
        if not self._queue(change, droppable=False):
            log.error("call %s: no room to keep how it ended (the store is behind)", call_sid)

    def record_unanswered(self, call_sid: str, *, caller: str, outcome: Outcome) -> None:
        """A call turned away before any stream (`busy`, `closed`): opened and ended at once."""
        self.open_call(call_sid, caller=caller)
        self.close_call(call_sid, outcome=outcome)

    # -- writing --

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled: write batches, touch open calls, end the calls of dead writers.

        The first sweep happens before `started`, so a restart marks the calls its
        crashed predecessor left open before it takes a new one.
        """
        with contextlib.suppress(StoreError):
            await self.sweep_orphans()
        task_status.started()
        next_beat = trio.current_time() + self.heartbeat
        try:
            while True:
                with trio.move_on_at(next_beat):
                    await self._wakeup.wait()
                    await trio.sleep(self.flush_interval)  # gather a batch
                try:
                    await self.flush()
                    if trio.current_time() >= next_beat:
                        next_beat = trio.current_time() + self.heartbeat
                        await self.store.write(self._touch_open_calls)
                        await self.sweep_orphans()
                except StoreError as exc:
                    log.warning("call records: write deferred (%s)", exc)
                    await trio.sleep(self.flush_interval)
        finally:
            with trio.move_on_after(FLUSH_TIMEOUT_S, shield=True):
                try:
                    await self.flush()
                except StoreError as exc:
                    log.error("call records: %d changes lost at stop (%s)", self.pending, exc)

    async def flush(self) -> None:
        """Write everything queued now, `MAX_BATCH` changes per transaction. On a store
        error the unwritten changes go back to the front of the queue and it is raised."""
        async with self._lock:
            self._wakeup = trio.Event()
            while self._pending:
                size = min(len(self._pending), MAX_BATCH)
                batch = [self._pending.popleft() for _ in range(size)]
                now = format_precise_time(self.clock())
                try:
                    await self.store.write(functools.partial(self._apply, batch=batch, now=now))
                except BaseException:
                    self._pending.extendleft(reversed(batch))
                    raise

    def _apply(self, conn: StoreConnection, *, batch: Sequence[Change], now: str) -> None:
        for change in batch:
            match change:
                case CallOpened():
                    conn.execute(
                        "INSERT INTO calls (call_sid, source, caller, started_at, owner, "
                        "seen_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (call_sid) DO NOTHING",
                        (
                            change.call_sid,
                            change.source,
                            change.caller,
                            format_precise_time(change.started_at),
                            self.owner,
                            now,
                        ),
                    )
                case LineAdded(call_sid=call_sid, line=line):
                    conn.execute(
                        "INSERT INTO call_lines (call_sid, seq, offset_ms, kind, role, content, "
                        "name, arguments, result) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? "
                        "WHERE EXISTS (SELECT 1 FROM calls WHERE call_sid = ?) "
                        "ON CONFLICT (call_sid, seq) DO NOTHING",
                        (
                            call_sid,
                            line.seq,
                            line.offset_ms,
                            line.kind.value,
                            line.role,
                            line.content,
                            line.name,
                            line.arguments,
                            line.result,
                            call_sid,
                        ),
                    )
                case CallClosed():
                    # An order committed for this call counts even if its result never
                    # reached the session (the caller hung up during the commit).
                    conn.execute(
                        "UPDATE calls SET ended_at = ?, seen_at = ?, lines_dropped = "
                        "lines_dropped + ?, greeted_ms = ?, "
                        "order_number = coalesce(?, (SELECT o.order_number FROM orders o "
                        "WHERE o.call_sid = calls.call_sid ORDER BY o.id DESC LIMIT 1)), "
                        "outcome = CASE WHEN EXISTS (SELECT 1 FROM orders o "
                        "WHERE o.call_sid = calls.call_sid) THEN 'ordered' ELSE ? END, "
                        "ordered_ms = coalesce(?, ordered_ms) "
                        "WHERE call_sid = ?",
                        (
                            format_precise_time(change.ended_at),
                            now,
                            change.lines_dropped,
                            change.greeted_ms,
                            change.order_number,
                            change.outcome.value,
                            change.ordered_ms,
                            change.call_sid,
                        ),
                    )

    def _touch_open_calls(self, conn: StoreConnection) -> None:
        conn.execute(
            "UPDATE calls SET seen_at = ? WHERE owner = ? AND outcome IS NULL",
            (format_precise_time(self.clock()), self.owner),
        )

    async def sweep_orphans(self) -> list[str]:
        """Open calls whose writer is gone become `unknown` (ended when last seen)."""
        cutoff = format_precise_time(self.clock() - timedelta(seconds=self.stale_seconds))

        def work(conn: StoreConnection) -> list[str]:
            rows = list(
                conn.execute(
                    "SELECT call_sid, owner, seen_at FROM calls WHERE outcome IS NULL "
                    "AND owner <> ?",
                    (self.owner,),
                )
            )
            gone = [
                str(sid)
                for sid, owner, seen_at in rows
                if str(seen_at) < cutoff or owner_is_dead(str(owner), self.owner)
            ]
            for sid in gone:
                conn.execute(
                    "UPDATE calls SET outcome = 'unknown', ended_at = seen_at "
                    "WHERE call_sid = ? AND outcome IS NULL",
                    (sid,),
                )
            return gone

        gone = await self.store.write(work)
        for sid in gone:
            log.warning("call %s: its process stopped mid-call; outcome unknown", sid)
        return gone

    def recorder_factory(
        self, inner: Callable[[CallConfig], CallRecorderLike] | None
    ) -> Callable[[CallConfig], CallRecorderLike]:
        """`CallDeps.open_recorder` that also keeps the call record (and still writes the
        session file through `inner` when `BOBA_RECORD_DIR` is set)."""

        def open_recorder(config: CallConfig) -> CallRecorderLike:
            if inner is None:
                return self.tap()
            return TeeRecorder((inner(config), self.tap()))

        return open_recorder


class TeeRecorder:
    """Hands every input and output of the core to several recorders."""

    def __init__(self, parts: Sequence[CallRecorderLike]) -> None:
        self.parts = tuple(parts)

    def record_input(self, t: float, event: CallEvent) -> None:
        for part in self.parts:
            part.record_input(t, event)

    def record_outputs(self, t: float, actions: list[Action]) -> None:
        for part in self.parts:
            part.record_outputs(t, actions)

    def begin(self, call_sid: str) -> None:
        for part in self.parts:
            part.begin(call_sid)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for part in self.parts:
                nursery.start_soon(part.run)

    async def flush(self) -> None:
        for part in self.parts:
            await part.flush()

    async def aclose(self) -> None:
        for part in self.parts:
            await part.aclose()
