"""A whole order by voice, end to end: `boba serve` with the local agent's offline speech,
called over `/twilio` exactly as Twilio calls (signed `/voice`, then the media stream:
continuous 20 ms μ-law frames, silence between the caller's utterances, marks echoed as
the agent's audio plays). The caller's lines are spoken by eSpeak NG in a caller's voice."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.fakes.twilio_client import FRAME_BYTES, SILENCE, TwilioStream, dial, make_call_sid
from tests.helpers.server import running_server, settings_for_test

speech = pytest.importorskip("boba_runtime.agent.speech")
pytest.importorskip("pocketsphinx")
pytest.importorskip("espeakng_loader")
pytestmark = [pytest.mark.speech, pytest.mark.slow]

ORDER = [
    "hi there, can I get a taro milk tea with tapioca pearls please",
    "yes",
    "nothing else",
    "four one five, five five five, zero one four two",
    "yes",
    "goodbye",
]


class Caller:
    """Plays Twilio's inbound track: queued speech when there is some, silence otherwise."""

    def __init__(self, stream: TwilioStream) -> None:
        self.stream = stream
        self.queue: deque[bytes] = deque()

    def say(self, ulaw: bytes) -> None:
        self.queue.extend(ulaw[at : at + FRAME_BYTES] for at in range(0, len(ulaw), FRAME_BYTES))

    async def run(self) -> None:
        start = trio.current_time()
        n = 0
        while not self.stream.closed.is_set():
            try:
                await self.stream.send_media(self.queue.popleft() if self.queue else SILENCE)
            except ConnectionClosed:
                return  # the server ended the call between our check and this frame
            n += 1
            await trio.sleep_until(start + n * 0.02)

    async def wait_quiet(self, marks: int, timeout: float = 60) -> None:
        """Until the agent's reply `marks` has played and the line has been quiet 0.5 s."""
        played = self.stream.played
        with trio.fail_after(timeout):
            while True:
                before = played.media_bytes
                await trio.sleep(0.5)
                if len(played.marks_echoed) >= marks and played.media_bytes == before \
                        and not self.queue:
                    return
                if self.stream.closed.is_set():
                    return  # the call is over: nothing more will play


async def test_a_full_order_by_voice_over_twilio(tmp_path: Path) -> None:
    synth = speech.synthesizer()
    from boba_runtime.agent.speech.caller import CALLER_VOICES, phone_audio

    lines = [await trio.to_thread.run_sync(phone_audio, synth, text, CALLER_VOICES[0])
             for text in ORDER]
    settings = settings_for_test(tmp_path / "shop", {"BOBA_AUDIO": "mulaw"}, speech=True)
    async with (
        running_server(tmp_path / "shop", settings=settings) as server,
        httpx.AsyncClient() as client,
    ):
        async with dial(client, server_url=server.base_url, public_url=server.base_url,
                        auth_token=None, call_sid=make_call_sid(7), caller="+14155550199",
                        audio=False) as stream:
            caller = Caller(stream)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(caller.run)
                await caller.wait_quiet(1)  # the greeting
                for turn, ulaw in enumerate(lines, start=2):
                    caller.say(ulaw)
                    if stream.closed.is_set():
                        break
                    await caller.wait_quiet(turn)
                nursery.cancel_scope.cancel()
        listed = (await client.get(f"{server.base_url}/api/orders")).json()
        assert [o["order_number"] for o in listed] == [listed[0]["order_number"]]
        order = (await client.get(f"{server.base_url}/api/orders/{listed[0]['order_number']}",
                                  headers=server.staff_headers)).json()
    assert stream.played.errors == []
    assert order["phone"] == "+14155550142"
    assert [(i["flavor"], i["toppings"]) for i in order["items"]] == [("taro milk tea", ["boba"])]
    assert stream.close_code is not None  # the agent ended the call after "goodbye"
