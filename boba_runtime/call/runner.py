"""`run_call`: one phone call, driven by trio around the sans-IO `CallSession` (DESIGN §3).

    call nursery (one per call)
    ├── phone reader:  frame → twilio.decode → session.handle → dispatch actions
    ├── agent task:    connect → AgentConnected → frame → agent.decode → handle
    ├── phone writer ← bounded send queue (queued media dropped on barge-in, clear goes first)
    ├── agent writer ← bounded send queue
    ├── timer tasks    StartTimer/CancelTimer → TimerFired back into handle
    └── effect tasks   CommitOrder / LookupOrders against the store → result into handle

Readers call `session.handle` themselves (it never awaits, and trio runs one task at a
time, so no lock and no channel hop per frame); every action is dispatched without
awaiting. A hang-up is a cancellation of the call nursery; cleanup lives in `finally`.

`run_call` is transport-agnostic: the *phone side* is anything with `receive()`, `send()`
and `close()` (the Twilio WebSocket in `boba_web.twilio_routes`, the staff softphone and
`boba call` over `/phone/ws`), and the *agent side* is any `AgentConnector`
(`boba_runtime.call.agent_link`: Deepgram, the fake agent of the tests, or the local agent).
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

import msgspec
import trio

from boba_proto import agent, model, twilio
from boba_proto.call import (
    WELCOME_TIMEOUT_SECONDS,
    Action,
    AgentAudio,
    AgentConnected,
    AgentErrorReported,
    AgentLatency,
    AgentLost,
    AgentWarningReported,
    AvailabilityChanged,
    CallConfig,
    CallerHungUp,
    CallEvent,
    CallSession,
    CancelTimer,
    EndCall,
    EndReason,
    FunctionCalled,
    PhoneStuck,
    RequestEffect,
    SendAgentAudio,
    SendToAgent,
    SendToTwilio,
    StartTimer,
    TimerFired,
    Transcript,
    TwilioFrameKind,
    TwilioMalformed,
)
from boba_proto.errors import InvalidAgentSetting, RemoteProtocolError
from boba_proto.menu import Menu, build_prompt, function_specs
from boba_runtime.call.agent_link import (
    AgentClosed,
    AgentConnection,
    AgentConnector,
    AgentUnreachable,
)
from boba_runtime.call.media_batch import CallerAudioBatcher
from boba_runtime.call.preopen import PreopenedAgents
from boba_runtime.call.registry import CallOutcome, CallRegistry, CallsFull
from boba_runtime.config.logs import call_log_scope, name_current_call
from boba_runtime.config.logsafe import shown
from boba_runtime.config.settings import Settings, SettingsError
from boba_runtime.metrics import Metrics
from boba_runtime.store.order_store import StoreError
from boba_runtime.store.shop import ShopState

log = logging.getLogger(__name__)

PHONE_QUEUE = 256
"""Frames queued for the phone side (media is ≤ 100 ms each: about 25 s of audio)."""
AGENT_QUEUE = 128
"""Frames queued for the agent (caller audio is 40 ms each: about 5 s)."""
CONTROL_SLACK = 64
"""Control frames (marks, JSON) may exceed a send queue by this much; they are never dropped."""
CLOSE_TIMEOUT_S = 2.0
"""Bound on closing either socket at the end of a call (CONTRACT §5: agent within 2 s)."""
START_TIMEOUT_S = 10.0
"""How long an accepted phone socket may wait before its `start` (CONTRACT §3: 10 s)."""
COMMIT_TIMEOUT_S = 15.0
"""Bound on one store effect; a commit in flight finishes even if the caller hangs up."""

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # wrong token
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013  # no free call slot


# --- the two sides --------------------------------------------------------------------------


class PhoneClosed(Exception):
    """The phone side's socket is gone."""


class PhoneSide(Protocol):
    """What `run_call` needs from the caller's side (Twilio, softphone, `boba call`)."""

    async def receive(self) -> str | bytes:
        """The next frame; raises `PhoneClosed` when the socket is gone."""
        ...

    async def send(self, text: str) -> None:
        """Send one text frame; raises `PhoneClosed` when the socket is gone."""
        ...

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close the socket (idempotent)."""
        ...


class OrderStoreLike(Protocol):
    async def commit_order(self, draft: model.OrderDraft) -> model.Order: ...

    async def orders_for_phones(
        self, phones: Any, *, order_number: str | None = None, limit: int = 10
    ) -> list[model.Order]: ...


class CallRecorderLike(Protocol):
    """Receives every input and output of the core (see `boba_runtime.call.recorder`)."""

    def record_input(self, t: float, event: CallEvent) -> None: ...

    def record_outputs(self, t: float, actions: list[Action]) -> None: ...

    def begin(self, call_sid: str) -> None:
        """The call was admitted: from now on the recording is kept (named after the sid)."""
        ...

    async def run(self) -> None:
        """Write buffered lines now and then, until cancelled."""
        ...

    async def flush(self) -> None:
        """Write buffered lines now."""
        ...

    async def aclose(self) -> None:
        """Write what is left (nothing at all if `begin` never came)."""
        ...


@dataclass(frozen=True, kw_only=True)
class CallDeps:
    """What every call of this process shares; built once, by the composition root
    (`boba_web.app.build_call_deps`)."""

    config: CallConfig  # the template: caller and call_sid are filled per call
    store: OrderStoreLike
    registry: CallRegistry
    max_message_bytes: int = 65536
    metrics: Metrics | None = None
    open_recorder: Callable[[CallConfig], CallRecorderLike] | None = None
    start_timeout_s: float = START_TIMEOUT_S
    """A phone socket that has not sent `start` within this long is closed (CONTRACT §3)."""
    caller_audio: CallerAudioBatcher | None = None  # None: each call resamples on its own
    preopened: PreopenedAgents | None = None  # agent links opened while /voice answered
    shop: ShopState | None = None  # what is sold out now (CONTRACT §12)
    share_outcome: ShareOutcome | None = None
    """Tells every instance how a call ended (the store's `call_outcomes`): called before
    the phone socket closes, because Twilio's `/voice/after` that follows may reach
    another instance. Must not raise for the store's trouble (log it)."""


ShareOutcome = Callable[[str, CallOutcome], Awaitable[None]]
"""`(call_sid, outcome)` → saved where `/voice/after` on any instance finds it."""


AgentChooser = Callable[[Mapping[str, Any]], AgentConnector]
"""The agent connector for a call whose socket has this ASGI scope (its `server` address
is where the local agent of this very server is reached)."""


@dataclass(frozen=True, kw_only=True)
class CallWiring:
    """What a route that runs calls gets from the composition root (`boba_web.app`)."""

    deps: CallDeps
    choose_agent: AgentChooser


Authorize = Callable[[twilio.Start], str | Awaitable[str | None] | None]
"""Checks `start` before any agent connection: None to admit, else why the call is refused.
May be async (the stream token's single use is kept in the store)."""

Observe = Callable[[Action], None]
"""Sees every observation action (Transcript, FunctionCalled, ...), e.g. for a softphone."""

DecodePhone = Callable[[str | bytes], CallEvent]
"""Turns one phone-side frame into an input of the core; raises `RemoteProtocolError`.
`twilio.decode` for Twilio; `/phone/ws` adds its `text` event (`CallerText`)."""


@dataclass
class CallReport:
    """How a call went, for the caller of `run_call` (tests, `/phone/ws`, logs)."""

    call_sid: str = ""
    end_reason: EndReason | None = None
    refused: str | None = None  # why the call was refused before it began
    orders: list[model.Order] = field(default_factory=list)
    malformed: int = 0  # the core's count (malformed and unknown phone frames)
    media_dropped: int = 0
    agent_audio_dropped: int = 0


# --- a bounded send queue that knows media from control -----------------------------------------

T = TypeVar("T")


class SendQueue(Generic[T]):
    """A bounded FIFO for one socket's writer (not to be confused with the store's SMS
    outbox: this one lives and dies with a call).

    Droppable items (audio) are refused when `capacity` items are queued; control items
    are accepted up to `capacity + CONTROL_SLACK` and beyond that the peer is considered
    stuck (`put` returns False and the caller ends the call).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[tuple[T, bool]] = deque()  # (item, droppable)
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        # The socket's `send_nowait`, when it has one: with nothing queued an item is
        # written at once instead of waking the writer (see `DirectAgentConnection`).
        self.direct: Callable[[T], T | None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, *, droppable: bool) -> bool:
        limit = self.capacity if droppable else self.capacity + CONTROL_SLACK
        if self._closed or len(self._items) >= limit:
            return False
        if self.direct is not None and not self._items:
            rest = self.direct(item)
            if rest is None:
                return True  # written
            if rest is not item:  # partly written: the writer must finish it, always
                item, droppable = rest, False
        self._items.append((item, droppable))
        self._lot.unpark()
        return True

    def put_first(self, item: T) -> None:
        self._items.appendleft((item, False))
        self._lot.unpark()

    def drop_droppable(self) -> int:
        """Forget every queued droppable item (barge-in); returns how many."""
        kept = deque(entry for entry in self._items if not entry[1])
        dropped = len(self._items) - len(kept)
        self._items = kept
        return dropped

    def close(self, *, discard: bool = False) -> None:
        """No more items; with `discard`, forget the queued ones too (the call is over)."""
        self._closed = True
        if discard:
            self._items.clear()
        self._lot.unpark_all()

    async def get(self) -> T:
        """The next item; raises `trio.EndOfChannel` once closed and empty."""
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            await self._lot.park()
        return self._items.popleft()[0]


# --- one call ---------------------------------------------------------------------------------


class _Call:
    """The runtime state of one call; all methods run in the call's trio tasks."""

    def __init__(
        self,
        phone: PhoneSide,
        deps: CallDeps,
        connect_agent: AgentConnector,
        authorize: Authorize | None,
        observe: Observe | None,
        decode_phone: DecodePhone = twilio.decode,
    ) -> None:
        self.phone = phone
        self.decode_phone = decode_phone
        self.deps = deps
        self.connect_agent = connect_agent
        self.authorize = authorize
        self.observe = observe
        self.session = CallSession(deps.config)
        self.report = CallReport()
        self.phone_out: SendQueue[str] = SendQueue(PHONE_QUEUE)
        self.phone_out.direct = getattr(phone, "send_nowait", None)
        self.agent_out: SendQueue[str | bytes] = SendQueue(AGENT_QUEUE)
        self.timers: dict[str, trio.CancelScope] = {}
        self.effect_started: dict[str, float] = {}  # request id -> when the effect began
        self.nursery: trio.Nursery | None = None  # the call nursery: cancelled at the end
        self.link_nursery: trio.Nursery | None = None  # outlives it, to close the agent well
        self.agent_connect_scope = trio.CancelScope()
        self.agent_read_scope = trio.CancelScope()
        self.agent_open = False
        self.recorder: CallRecorderLike | None = None
        self.t0 = trio.current_time()
        self.ended = False
        self.started = False
        self.close_code = CLOSE_NORMAL
        self.slot = ExitStack()
        self.start_deadline = self.t0 + deps.start_timeout_s
        self.batcher = deps.caller_audio
        self.media_in_batch = 0  # frames of this call waiting in the batcher

    @property
    def log_sid(self) -> str:
        """The call's sid for a log line: it came from the peer, so escaped (no forged lines)."""
        return shown(self.report.call_sid) if self.report.call_sid else "(no sid)"

    # --- the core -------------------------------------------------------------------------

    def feed(self, event: CallEvent) -> None:
        """Give one input to the session and carry out what it asks (never awaits)."""
        if self.ended:
            return
        if self.media_in_batch and self.batcher is not None:
            self.batcher.flush()  # this call's earlier frames first: the core sees inputs in order
            if self.ended:
                return
        if isinstance(event, AgentLost) and self.deps.metrics is not None:
            self.deps.metrics.agent_error()  # unreachable or dropped: a failure like `Error`
        t = trio.current_time() - self.t0
        if self.recorder is not None:
            self.recorder.record_input(t, event)
        actions = self.session.handle(event)
        if self.recorder is not None and actions:
            self.recorder.record_outputs(t, actions)
        for action in actions:
            self.dispatch(action)

    def media_handled(self, event: twilio.Media, actions: list[Action]) -> None:
        """What `feed` does after `handle`, for a frame the batcher handled."""
        if self.recorder is not None:
            t = trio.current_time() - self.t0
            self.recorder.record_input(t, event)
            if actions:
                self.recorder.record_outputs(t, actions)
        for action in actions:
            self.dispatch(action)

    def media_failed(self) -> None:
        if not self.ended:
            self.end(EndReason.AGENT_FAILED)

    def dispatch(self, action: Action) -> None:
        match action:
            case SendToTwilio(text=text, kind=kind):
                if not self.ended:
                    self._to_phone(text, kind)
            case SendAgentAudio(data=data):
                if not self.ended and not self.agent_out.put(data, droppable=True):
                    self.report.agent_audio_dropped += 1
            case SendToAgent(text=text):
                if not self.ended and not self.agent_out.put(text, droppable=False):
                    self._fail("the agent is not reading its socket")
            case StartTimer(name=name, seconds=seconds):
                self._start_timer(name, seconds)
            case CancelTimer(name=name):
                scope = self.timers.pop(name, None)
                if scope is not None:
                    scope.cancel()
            case RequestEffect(effect=effect):
                assert self.nursery is not None
                self.effect_started[effect.request_id] = trio.current_time()
                self.nursery.start_soon(self._run_effect, effect)
            case EndCall(reason=reason):
                self.end(reason)
            case _:
                self._observe(action)

    def _to_phone(self, text: str, kind: TwilioFrameKind) -> None:
        if kind is TwilioFrameKind.CLEAR:
            # Barge-in: audio still waiting here must never play; the clear goes first.
            self.report.media_dropped += self.phone_out.drop_droppable()
            self.phone_out.put_first(text)
            return
        droppable = kind is TwilioFrameKind.MEDIA
        if not self.phone_out.put(text, droppable=droppable):
            if droppable:
                self.report.media_dropped += 1
            else:
                self._phone_stuck("the phone side is not reading its socket")

    def _observe(self, action: Action) -> None:
        metrics = self.deps.metrics
        match action:
            # What callers say (phone numbers included) stays out of the INFO log.
            case Transcript(role=role, content=content):
                log.debug("call %s %s: %s", self.log_sid, role, shown(content))
            case FunctionCalled(id=call_id, name=name, arguments=arguments, result=result):
                log.debug(
                    "call %s fn %s(%s) -> %s", self.log_sid, name, shown(arguments), shown(result)
                )
                if metrics is not None:
                    # Pure functions answer at once; store-bound ones took their effect's time.
                    started = self.effect_started.pop(call_id, trio.current_time())
                    metrics.function_call(name, trio.current_time() - started)
            case AgentLatency(total_seconds=seconds):
                if metrics is not None:
                    metrics.agent_latency(seconds)
            case AgentErrorReported(code=code, description=description):
                log.warning(
                    "call %s agent error %s: %s", self.log_sid, shown(code), shown(description)
                )
                if metrics is not None:
                    metrics.agent_error()
            case AgentWarningReported(code=code, description=description):
                log.info(
                    "call %s agent warning %s: %s", self.log_sid, shown(code), shown(description)
                )
        if self.observe is not None:
            self.observe(action)

    # --- ending -------------------------------------------------------------------------------

    def end(self, reason: EndReason) -> None:
        """The session ended the call: remember why, then cancel everything of this call."""
        if self.ended:
            return
        self.ended = True
        self.report.end_reason = reason
        outcome = CallOutcome.FAILED if reason.apologise else CallOutcome.NORMAL
        if reason is EndReason.TRANSFER:
            outcome = CallOutcome.TRANSFER
        self.deps.registry.record_end(self.report.call_sid, outcome)
        log.info("call %s ended: %s", self.log_sid, reason.value)
        self._stop()

    def _stop(self) -> None:
        """Cancel this call's tasks; the agent link itself is closed gracefully afterwards."""
        self.phone_out.close(discard=True)
        self.agent_out.close(discard=True)
        for scope in self.timers.values():
            scope.cancel()
        self.timers.clear()
        self.agent_read_scope.cancel()
        if not self.agent_open:
            self.agent_connect_scope.cancel()
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    def _fail(self, why: str) -> None:
        """A runtime failure (not the session's decision): end as an agent failure."""
        log.error("call %s: %s", self.log_sid, why)
        if not self.ended:
            self.feed(AgentLost(reason=why))
        if not self.ended:  # the session was already closing: end anyway
            self.end(EndReason.AGENT_FAILED)

    def _phone_stuck(self, why: str) -> None:
        """The phone side stopped reading: its own end reason, not the agent's failure."""
        log.error("call %s: %s", self.log_sid, why)
        self.feed(PhoneStuck(reason=why))
        if not self.ended:  # cannot happen (the session closes on PhoneStuck), but be sure
            self.end(EndReason.PHONE_STUCK)

    def refuse(self, why: str, code: int) -> None:
        self.report.refused = why
        self.close_code = code
        self.ended = True
        log.warning("call %s refused: %s", self.log_sid, why)
        self._stop()

    # --- timers -------------------------------------------------------------------------------

    def _start_timer(self, name: str, seconds: float) -> None:
        old = self.timers.pop(name, None)
        if old is not None:
            old.cancel()
        scope = trio.CancelScope()
        self.timers[name] = scope
        assert self.nursery is not None
        self.nursery.start_soon(self._timer, name, seconds, scope)

    async def _timer(self, name: str, seconds: float, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(seconds)
            if self.timers.get(name) is scope:
                del self.timers[name]
                self.feed(TimerFired(name=name))

    # --- effects ------------------------------------------------------------------------------

    async def _run_effect(self, effect: model.CommitOrder | model.LookupOrders) -> None:
        result: model.EffectResult
        try:
            match effect:
                case model.CommitOrder(request_id=request_id, draft=draft):
                    draft = self._keyed(draft)
                    # Shielded: a caller hanging up mid-commit must not leave it half-known.
                    with trio.CancelScope(shield=True), trio.fail_after(COMMIT_TIMEOUT_S):
                        order = await self.deps.store.commit_order(draft)
                    self.report.orders.append(order)
                    log.info("call %s committed order %s", self.log_sid, order.order_number)
                    result = model.OrderCommitted(request_id=request_id, order=order)
                case model.LookupOrders(request_id=request_id, phones=phones):
                    with trio.fail_after(COMMIT_TIMEOUT_S):
                        orders = await self.deps.store.orders_for_phones(
                            phones, order_number=effect.order_number
                        )
                    result = model.OrdersFound(request_id=request_id, orders=tuple(orders))
        except (StoreError, trio.TooSlowError) as exc:
            log.error("call %s: store effect failed: %s", self.log_sid, exc)
            result = model.EffectFailed(request_id=effect.request_id, reason=str(exc) or "timeout")
        self.feed(result)

    def _keyed(self, draft: model.OrderDraft) -> model.OrderDraft:
        """The draft with its checkout key: the call and its n-th order, so the caller's
        retry of a checkout whose answer was lost (told "try again" although it had
        committed) gets the order already placed, not a second one."""
        call_sid = draft.call_sid or self.report.call_sid
        if draft.checkout_key is not None or not call_sid:
            return draft
        key = f"{call_sid}/{len(self.report.orders) + 1}"
        return msgspec.structs.replace(draft, checkout_key=key)

    # --- the phone side -----------------------------------------------------------------------

    async def _receive(self) -> str | bytes | None:
        """The next phone frame; None when the socket has waited too long for `start`."""
        if self.started:
            return await self.phone.receive()
        with trio.move_on_at(self.start_deadline):
            return await self.phone.receive()
        return None

    async def phone_reader(self) -> None:
        limit = self.deps.max_message_bytes
        try:
            while True:
                frame = await self._receive()
                if frame is None:
                    self.refuse(
                        f"no start within {self.deps.start_timeout_s:g} s", CLOSE_POLICY
                    )
                    return
                if len(frame) > limit:
                    log.warning(
                        "call %s: %d-byte message over the %d-byte limit; closing",
                        self.log_sid,
                        len(frame),
                        limit,
                    )
                    self.close_code = CLOSE_TOO_BIG
                    self.feed(CallerHungUp())
                    return
                try:
                    event = self.decode_phone(frame)
                except RemoteProtocolError as exc:
                    log.info("call %s: skipped a frame: %s", self.log_sid, shown(exc.message))
                    self.feed(TwilioMalformed(reason=exc.message))
                    continue
                if isinstance(event, twilio.Start) and not self.started:
                    if not await self._admit(event):
                        return
                    self.feed(event)
                    assert self.link_nursery is not None
                    self.link_nursery.start_soon(self.agent_main)
                    continue
                if self.batcher is not None and isinstance(event, twilio.Media):
                    await self.batcher.submit(self, event)
                    continue
                self.feed(event)
        except PhoneClosed:
            self.feed(CallerHungUp())

    async def _admit(self, start: twilio.Start) -> bool:
        """Token and capacity checks, before any agent connection is opened."""
        call_sid = start.start.call_sid
        self.report.call_sid = call_sid
        name_current_call(call_sid)  # every log line of this call's tasks carries it now
        if self.authorize is not None:
            verdict = self.authorize(start)
            why = await verdict if inspect.isawaitable(verdict) else verdict
            if why is not None:
                self.refuse(why, CLOSE_POLICY)
                return False
        try:
            self.slot.enter_context(self.deps.registry.active(call_sid or None))
        except CallsFull as exc:
            self.refuse(str(exc), CLOSE_TRY_LATER)
            return False
        self.started = True  # from here on the call counts as begun (and ended, in metrics)
        if self.deps.metrics is not None:
            self.deps.metrics.call_started()
        if self.recorder is not None:
            self.recorder.begin(call_sid)
        return True

    async def phone_writer(self) -> None:
        try:
            while True:
                text = await self.phone_out.get()
                await self.phone.send(text)
        except trio.EndOfChannel:
            return
        except PhoneClosed:
            self.feed(CallerHungUp())

    # --- the agent side -----------------------------------------------------------------------

    def _agent_closed(self, exc: AgentClosed) -> None:
        log.warning("call %s: agent link lost: %s", self.log_sid, exc.reason)
        self.feed(AgentLost(reason=exc.reason))

    async def agent_main(self) -> None:
        """Connect, read until the call ends, then close the link gracefully (≤ 2 s).

        This task runs outside the call nursery, so ending the call stops its reading
        (a cancel scope) but lets trio-websocket finish the close handshake.
        """
        connect = self.connect_agent
        if self.deps.preopened is not None:  # opened while /voice was answered?
            connect = self.deps.preopened.take(self.report.call_sid, connect)
        try:
            with self.agent_connect_scope:
                async with connect() as link:
                    self.agent_open = True
                    if self.ended:
                        return
                    self.agent_out.direct = getattr(link, "send_nowait", None)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self.agent_writer, link)
                            with self.agent_read_scope:
                                try:
                                    await self._agent_reader(link)
                                except AgentClosed as exc:
                                    self._agent_closed(exc)
                            # The call is over: the writer stops at its closed queue.
                    finally:
                        self.agent_out.direct = None  # the link is closing
        except AgentUnreachable as exc:
            log.error("call %s: agent unreachable: %s", self.log_sid, exc.reason)
            self.feed(AgentLost(reason=exc.reason))
        except AgentClosed as exc:
            self._agent_closed(exc)

    async def _agent_reader(self, link: AgentConnection) -> None:
        # Waiting for `Welcome` before `Settings` is the core's decision (its `welcome`
        # timer); here every frame is simply passed on.
        self.feed(AgentConnected())
        while True:
            self._agent_frame(await link.receive())

    def _agent_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.feed(AgentAudio(data=frame))
            return
        try:
            message = agent.decode(frame)
        except RemoteProtocolError as exc:
            log.warning(
                "call %s: skipped an agent message: %s", self.log_sid, shown(exc.message)
            )
            return
        if isinstance(message, agent.FunctionCallRequest):
            self._sync_availability()
        self.feed(message)

    def _sync_availability(self) -> None:
        """Tell the session what is sold out now, when that changed since it last heard
        (CONTRACT §12: a call in progress sees it at its next function call)."""
        shop = self.deps.shop
        if shop is None:
            return
        current = shop.availability
        if current != self.session.tool_state.availability:
            self.feed(AvailabilityChanged(availability=current))

    async def agent_writer(self, link: AgentConnection) -> None:
        try:
            while True:
                await link.send(await self.agent_out.get())
        except trio.EndOfChannel:
            return
        except AgentClosed as exc:
            self.feed(AgentLost(reason=exc.reason))

    # --- cleanup ------------------------------------------------------------------------------

    async def close_phone(self) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            with suppress(PhoneClosed):
                await self.phone.close(self.close_code)


async def run_call(
    phone: PhoneSide,
    deps: CallDeps,
    connect_agent: AgentConnector,
    *,
    authorize: Authorize | None = None,
    observe: Observe | None = None,
    decode_phone: DecodePhone = twilio.decode,
) -> CallReport:
    """Run one call until it ends; returns how it went. Never raises for a peer's fault.

    The phone side must already be accepted. `authorize` sees the `start` event before
    any agent connection is opened (the per-call token check); a refused call is closed
    with 1008 and never reaches the agent. `observe` sees every observation action
    (transcripts, function calls); `decode_phone` reads the phone side's frames (the
    `/phone/ws` softphone adds a `text` event to Twilio's). The phone socket is closed
    when the call ends (that is what makes Twilio fetch `/voice/after`), the agent socket
    within 2 s.
    """
    with call_log_scope():
        return await _run_call(phone, deps, connect_agent, authorize, observe, decode_phone)


async def _run_call(
    phone: PhoneSide,
    deps: CallDeps,
    connect_agent: AgentConnector,
    authorize: Authorize | None,
    observe: Observe | None,
    decode_phone: DecodePhone,
) -> CallReport:
    call = _Call(phone, deps, connect_agent, authorize, observe, decode_phone)
    try:
        async with trio.open_nursery() as link_nursery:
            call.link_nursery = link_nursery
            try:
                async with trio.open_nursery() as nursery:
                    call.nursery = nursery
                    if deps.open_recorder is not None:
                        call.recorder = deps.open_recorder(deps.config)
                        nursery.start_soon(call.recorder.run)
                    nursery.start_soon(call.phone_writer)
                    await call.phone_reader()
                    # The reader returns on a refusal, an oversized frame or a closed
                    # socket; in every case the call is over.
                    if not call.ended:
                        call.end(EndReason.COMPLETED)
            finally:
                # Close the phone side first (Twilio then fetches /voice/after); the
                # link nursery then waits for the agent socket's close (≤ 2 s).
                if not call.ended:
                    call.end(EndReason.COMPLETED)
                call._stop()
                if call.recorder is not None:
                    # The file is complete by the time Twilio (or a test) hears the end.
                    with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                        await call.recorder.flush()
                await _share_outcome(call, deps)
                await call.close_phone()
    except Exception:
        # Our own bug: the caller should hear the apology rather than silence.
        log.exception("call %s crashed", call.log_sid)
        if call.report.end_reason is None or not call.report.end_reason.apologise:
            call.report.end_reason = EndReason.AGENT_FAILED
            deps.registry.record_end(call.report.call_sid, CallOutcome.FAILED)
    finally:
        call.ended = True
        if call.recorder is not None:
            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await call.recorder.aclose()
        call.slot.close()  # last: a free slot means this call is completely over
        if call.started and deps.metrics is not None:  # call_started() was counted
            deps.metrics.call_ended(trio.current_time() - call.t0)
    call.report.malformed = call.session.malformed_count  # the core counts them, once
    return call.report


async def _share_outcome(call: _Call, deps: CallDeps) -> None:
    """The registry's answer for this call, told to every instance before the phone side
    closes (that close makes Twilio fetch `/voice/after`, maybe from another instance)."""
    call_sid = call.report.call_sid
    if deps.share_outcome is None or not call_sid:
        return
    outcome = deps.registry.outcome(call_sid)
    if outcome is None:
        return
    with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
        await deps.share_outcome(call_sid, outcome)


# --- the call template from settings ------------------------------------------------------------

SETTING_OF_FIELD: Final = {
    "think_provider": "BOBA_THINK_PROVIDER",
    "listen_model": "BOBA_LISTEN_MODEL",
    "think_model": "BOBA_THINK_MODEL",
    "speak_model": "BOBA_SPEAK_MODEL",
    "functions": "BOBA_MENU",  # the functions come from the menu
}
"""Which setting is at fault for each field `agent.build_settings` may refuse."""


def call_config_from_settings(settings: Settings, menu: Menu) -> CallConfig:
    """The per-process `CallConfig` template: agent `Settings` from CONTRACT §2 and the menu."""
    profile = agent.AudioProfile(settings.audio)
    transfer = getattr(settings, "transfer_number", None) is not None
    try:
        agent_settings = agent.build_settings(
            profile=profile,
            listen_model=settings.listen_model,
            think_provider=settings.think_provider,
            think_model=settings.think_model,
            speak_model=settings.speak_model,
            prompt=build_prompt(menu, transfer=transfer),
            functions=function_specs(menu, transfer=transfer),
            greeting=settings.greeting,
        )
    except InvalidAgentSetting as exc:
        # Settings Deepgram would refuse mid-call stop the start instead (CONTRACT §2).
        raise SettingsError(SETTING_OF_FIELD[exc.field], exc.message) from None
    return CallConfig(
        profile=profile,
        agent_settings=agent_settings,
        menu=menu,
        max_call_seconds=float(settings.max_call_seconds),
        welcome_timeout_seconds=WELCOME_TIMEOUT_SECONDS,  # the core waits for Welcome
        sms_countries=settings.sms_countries,
        transfer_enabled=transfer,
    )
