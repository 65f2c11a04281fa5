"""The process's caller-audio batcher: frames of one scheduler pass go through the core
together, each call gets its own actions, and a cancelled leader still flushes."""

from __future__ import annotations

import trio

from boba_proto import twilio
from boba_proto.call import Action, CallSession, SendAgentAudio
from boba_runtime.call.media_batch import CallerAudioBatcher
from tests.protocol.test_call import LINEAR16, conversing, media


class FakeCall:
    def __init__(self, session: CallSession) -> None:
        self.session = session
        self.ended = False
        self.media_in_batch = 0
        self.handled: list[tuple[twilio.Media, list[Action]]] = []
        self.failed = False

    def media_handled(self, event: twilio.Media, actions: list[Action]) -> None:
        self.handled.append((event, actions))

    def media_failed(self) -> None:
        self.failed = True


async def test_frames_of_one_pass_are_one_batch_and_each_call_gets_its_audio() -> None:
    batcher = CallerAudioBatcher()
    calls = [FakeCall(conversing(LINEAR16)) for _ in range(8)]
    async with trio.open_nursery() as nursery:
        for call in calls:  # all runnable in the same scheduler pass, like readers woken by I/O
            nursery.start_soon(batcher.submit, call, media(b"\x10" * 320))
    assert (batcher.batches, batcher.frames) == (1, 8)
    for call in calls:
        [(_, actions)] = call.handled
        assert [type(a) for a in actions] == [SendAgentAudio]
        assert isinstance(actions[0], SendAgentAudio) and len(actions[0].data) == 3840
        assert call.media_in_batch == 0


async def test_an_ended_call_is_skipped_and_a_failing_one_ends_alone() -> None:
    batcher = CallerAudioBatcher()
    gone, broken, fine = (FakeCall(conversing(LINEAR16)) for _ in range(3))

    def explode(event: twilio.Media, actions: list[Action]) -> None:
        raise RuntimeError("a bug in one call's dispatch")

    broken.media_handled = explode  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        for call in (gone, broken, fine):
            nursery.start_soon(batcher.submit, call, media(b"\x10" * 320))
        gone.ended = True  # hung up before the batch ran
    assert gone.handled == [] and not gone.failed
    assert broken.failed
    assert len(fine.handled) == 1


async def test_a_cancelled_leader_still_flushes_the_others() -> None:
    batcher = CallerAudioBatcher()
    leader, other = FakeCall(conversing(LINEAR16)), FakeCall(conversing(LINEAR16))
    with trio.CancelScope() as scope:
        scope.cancel()
        await batcher.submit(leader, media(b"\x10" * 320))  # cancelled at its sleep(0)
    assert len(leader.handled) == 1
    await batcher.submit(other, media(b"\x10" * 320))
    assert len(other.handled) == 1
