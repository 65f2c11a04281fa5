"""Caller audio of every call of this process, resampled in one step per scheduler pass.

Every call's phone reader would otherwise resample its own 40 ms chunk: a dozen numpy
calls on 320 samples, where numpy's per-call overhead is most of the cost (issue #18's
profile: `caller_to_agent` ~10 % of the server's busy time at 20 calls). Here a reader
hands its `media` frame to the process's `CallerAudioBatcher` instead of the core. The
first frame of a batch makes its reader yield once (`trio.sleep(0)`): every other reader
trio woke in the same pass adds its frame meanwhile; then the batch goes through
`boba_proto.call.handle_media_batch` (one `caller_to_agent_batch` for all calls) and
each call dispatches its own actions. Nothing waits for a timer: under load many calls'
frames meet in one pass; with one call the batch is that call's frame alone.

Order per call is kept: a call with a frame in the batch flushes the batch before the
core sees any other input of that call (`flush` is synchronous, like `handle`).
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from boba_proto import twilio
from boba_proto.call import Action, CallSession, handle_media_batch

log = logging.getLogger(__name__)


class BatchedCall(Protocol):
    """What the batcher needs from a call (`boba_runtime.call.runner`'s `_Call`)."""

    session: CallSession
    ended: bool
    media_in_batch: int

    def media_handled(self, event: twilio.Media, actions: list[Action]) -> None:
        """Record and dispatch what the core returned for this frame."""
        ...

    def media_failed(self) -> None:
        """Dispatching this call's actions raised (our bug): end this call only."""
        ...


class CallerAudioBatcher:
    """One per process (built by the composition root, shared through `CallDeps`)."""

    def __init__(self) -> None:
        self._items: list[tuple[BatchedCall, twilio.Media]] = []
        self.batches = 0  # how many flushes ran, and how many frames they carried
        self.frames = 0

    async def submit(self, call: BatchedCall, event: twilio.Media) -> None:
        """Queue one frame; the first frame of a batch waits one scheduler pass, then flushes."""
        leader = not self._items
        self._items.append((call, event))
        call.media_in_batch += 1
        if not leader:
            return
        try:
            await trio.sleep(0)  # the other readers of this pass add their frames
        finally:
            self.flush()  # also when cancelled: the frames of other calls must not wait

    def flush(self) -> None:
        """Handle every queued frame now (synchronous, never awaits)."""
        items, self._items = self._items, []
        if not items:
            return
        for call, _ in items:
            call.media_in_batch = 0
        live = [(call, event) for call, event in items if not call.ended]
        results = handle_media_batch([(call.session, event) for call, event in live])
        self.batches += 1
        self.frames += len(live)
        for (call, event), actions in zip(live, results, strict=True):
            if call.ended:  # an earlier item of this batch ended it
                continue
            try:
                call.media_handled(event, actions)
            except Exception:
                log.exception("a call failed while dispatching its caller audio")
                call.media_failed()
