"""The call registry of one process: who is on the line, their stream tokens, how calls ended.

`/voice` asks it whether there is room (CONTRACT §2 `BOBA_MAX_CALLS`, counted per process)
and for the per-call stream token it puts into the TwiML; `WS /twilio` checks the token and
holds a slot while the call runs; `/voice/after` asks how the call ended, to know whether
the caller hears the apology. Everything lives in one object built per `Services` (no
module-level state) and is touched only from the trio thread, so it needs no lock.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from boba_runtime.call import stream_tokens
from boba_runtime.call.stream_tokens import TOKEN_TTL_S

PENDING_SECONDS = 30.0
"""How long a `/voice` answer holds a slot before its stream must have started."""

ENDED_MEMORY = 4096
"""How many finished calls' outcomes are kept for `/voice/after` (oldest forgotten first)."""

ENDED_SECONDS = 600.0
"""How long a finished call's outcome is kept for `/voice/after`."""


class CallOutcome(enum.Enum):
    """What `/voice/after` needs to know about a finished stream."""

    NORMAL = "normal"  # stop, hang-up, end_call, time limit, too many malformed frames
    FAILED = "failed"  # the agent failed or could not be reached (or our own bug): apologise
    TRANSFER = "transfer"  # transfer_to_staff: `/voice/after` dials BOBA_TRANSFER_NUMBER


class CallsFull(Exception):
    """Every slot is taken: the caller gets the busy message."""


class StreamAlreadyRunning(CallsFull):
    """A second stream for a call whose stream is running (Twilio opens one per call, so
    this is a replayed handshake and TwiML): refused like a call with no free slot."""


class CallRegistry:
    """Active and announced calls of this process, and outcomes of recent ones.

    A slot is *pending* from the `/voice` answer until the stream starts (or
    `PENDING_SECONDS` pass), then *active* until the call ends. Both count towards
    `max_calls`, so a burst of webhooks cannot overshoot while streams are connecting.
    """

    def __init__(
        self,
        *,
        max_calls: int,
        secret_key: bytes,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        token_ttl: float = TOKEN_TTL_S,
    ) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        self.max_calls = max_calls
        self._stream_key = stream_tokens.stream_key(secret_key)
        self._clock = clock
        self._wall_clock = wall_clock
        self.token_ttl = token_ttl
        self._pending: dict[str, float] = {}  # call sid -> expiry
        self._active: set[str] = set()  # call sids whose stream is running (one each)
        self._anonymous_active = 0  # calls without a Twilio CallSid (softphone, tests)
        self._ended: OrderedDict[str, tuple[CallOutcome, float]] = OrderedDict()

    # --- tokens ---------------------------------------------------------------------------

    def token_for(self, call_sid: str, caller: str) -> str:
        """The stream token `/voice` puts into the TwiML for this call and caller."""
        return stream_tokens.issue_token(
            self._stream_key, call_sid, caller, now=self._wall_clock(), ttl=self.token_ttl
        )

    def token_problem(self, call_sid: str, caller: str, token: str) -> str | None:
        """None for a token issued for this callSid and caller, not yet expired; else why.

        That a token is used only once is checked separately, in the store (see
        `boba_web.twilio_routes.token_check`): a replay may reach another worker.
        """
        return stream_tokens.token_problem(
            self._stream_key, call_sid, caller, token, now=self._wall_clock()
        )

    # --- capacity ---------------------------------------------------------------------------

    @property
    def active_count(self) -> int:
        """Calls whose stream is running now."""
        return len(self._active) + self._anonymous_active

    @property
    def load(self) -> int:
        """Active calls plus answered calls whose stream has not started yet."""
        self._expire_pending()
        pending = sum(1 for sid in self._pending if sid not in self._active)
        return self.active_count + pending

    def reserve(self, call_sid: str) -> None:
        """Hold a slot for a call `/voice` is answering; raises `CallsFull` if there is none."""
        self._expire_pending()
        if call_sid in self._pending or call_sid in self._active:
            # Twilio retried the webhook: the slot is already held.
            self._pending[call_sid] = self._clock() + PENDING_SECONDS
            return
        if self.load >= self.max_calls:
            raise CallsFull(f"{self.max_calls} calls already in progress")
        self._pending[call_sid] = self._clock() + PENDING_SECONDS

    @contextmanager
    def active(self, call_sid: str | None) -> Iterator[None]:
        """Count a running call for as long as the `with` block lasts.

        A stream whose call was reserved by `/voice` takes over that slot. A stream that was
        never announced (softphone, `boba call`) is admitted only if there is room.
        """
        self._expire_pending()
        if call_sid and call_sid in self._active:
            raise StreamAlreadyRunning(f"a stream for call {call_sid} is already running")
        if call_sid:
            if call_sid not in self._pending and self.load >= self.max_calls:
                raise CallsFull(f"{self.max_calls} calls already in progress")
            self._pending.pop(call_sid, None)
            self._active.add(call_sid)
        else:
            if self.load >= self.max_calls:
                raise CallsFull(f"{self.max_calls} calls already in progress")
            self._anonymous_active += 1
        try:
            yield
        finally:
            if call_sid:
                self._active.discard(call_sid)
            else:
                self._anonymous_active -= 1

    def release(self, call_sid: str) -> None:
        """Give back a slot held by `/voice` whose stream will never come."""
        self._pending.pop(call_sid, None)

    def _expire_pending(self) -> None:
        now = self._clock()
        for sid in [sid for sid, expiry in self._pending.items() if expiry <= now]:
            del self._pending[sid]

    # --- outcomes for /voice/after ---------------------------------------------------------

    def record_end(self, call_sid: str, outcome: CallOutcome) -> None:
        """Remember how a call's stream ended; a failure is never overwritten by a later end."""
        if not call_sid:
            return
        now = self._clock()
        previous = self._ended.pop(call_sid, None)
        if previous is not None and previous[0] is CallOutcome.FAILED:
            outcome = CallOutcome.FAILED
        self._ended[call_sid] = (outcome, now + ENDED_SECONDS)
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)

    def outcome(self, call_sid: str) -> CallOutcome | None:
        """How the call ended, or `None` if this process does not know (yet)."""
        entry = self._ended.get(call_sid)
        if entry is None:
            return None
        outcome, expiry = entry
        if expiry <= self._clock():
            del self._ended[call_sid]
            return None
        return outcome
