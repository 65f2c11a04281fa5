"""Build the golden recordings in tests/golden/*.jsonl by driving the real core.

A deliberate tool, not part of CI:  `python tests/golden/make_sessions.py [NAME...]`.

Each session is a scripted phone call run on a virtual clock through `CallSession`, with
the runtime's side simulated here: a fake Twilio (caller μ-law every 20 ms, DTMF, mark
echoes when the queued audio has "played", all pending marks echoed at once on `clear`,
`stop`), a fake agent (Welcome, SettingsApplied after Settings, speech as real linear16 or
μ-law tones in uneven chunks, function calls shaped as Deepgram sends them, waiting for
their responses), timers (StartTimer/CancelTimer honoured on the virtual clock) and a
store (CommitOrder -> OrderCommitted with a number, LookupOrders -> OrdersFound). Every
input and output goes through `recording.Recorder`, exactly as the runtime records a real
call, so the files are what `BOBA_RECORD_DIR` would hold for these calls.

After regenerating, run `pytest tests/golden --snapshot-update` and review the snapshot diff.
"""

from __future__ import annotations

import heapq
import itertools
import json
import sys
from collections.abc import Callable, Generator
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from boba_proto import agent, call, menu, model, recording, shop, twilio

HERE = Path(__file__).parent
STARTED_AT = "2026-11-25T10:00:00Z"
CALLER = "+14155550123"
FRAME = 0.02

Script = Generator[float, None, None]
"""A script yields how long to wait (virtual seconds) before its next step."""


def build_config(
    profile: agent.AudioProfile, *, max_call_seconds: float = 600.0, transfer: bool = False
) -> call.CallConfig:
    """The config `boba serve` builds with default settings and the built-in menu."""
    the_menu = menu.parse_menu(
        files("boba_proto").joinpath("menu.toml").read_text(encoding="utf-8"), source="menu.toml"
    )
    settings = agent.build_settings(
        profile=profile,
        listen_model="nova-3",
        think_provider="google",
        think_model="gemini-3.5-flash",
        speak_model="aura-2-odysseus-en",
        prompt=menu.build_prompt(the_menu, transfer=transfer),
        functions=menu.function_specs(the_menu, transfer=transfer),
        greeting="Hey! I am your Deepgram BobaRista. What would you like to order?",
    )
    return call.CallConfig(
        profile=profile, agent_settings=settings, menu=the_menu, max_call_seconds=max_call_seconds,
        transfer_enabled=transfer,
    )


class Sim:
    """One simulated call: a virtual clock, the core, and fakes of everything around it."""

    def __init__(
        self,
        profile: agent.AudioProfile,
        *,
        seed: int,
        max_call_seconds: float = 600.0,
        real_start: twilio.Start | None = None,
        quiet_payload: bytes = bytes([0xFF]) * 160,
        transfer: bool = False,
    ) -> None:
        self.config = build_config(profile, max_call_seconds=max_call_seconds, transfer=transfer)
        self.profile = profile
        self.session = call.CallSession(self.config)
        self.recorder = recording.Recorder(self.config, started_at=STARTED_AT)
        self.lines = [self.recorder.header()]
        self.rng = np.random.default_rng(seed)
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._timer_generation: dict[str, int] = {}
        self._seq = itertools.count(1)
        self._chunk = itertools.count(1)
        self.stream_sid = real_start.stream_sid if real_start else f"MZ{seed:032d}"
        self.call_sid = real_start.start.call_sid if real_start else f"CA{seed:032d}"
        self._real_start = real_start
        self._quiet_payload = quiet_payload
        self.caller_speaking = False
        self.caller_online = True
        self.ended = False
        self.responses: dict[str, dict[str, Any]] = {}
        self.settings_applied = False
        self._play_until = 0.0
        self._pending_marks: dict[str, int] = {}  # name -> echo token
        self._mark_tokens = itertools.count()
        self._fn_ids = itertools.count(1)
        self._orders = 0
        self.committed: list[model.Order] = []

    # --- the event loop ---------------------------------------------------------------------

    def at(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (round(self.now + delay, 6), next(self._order), action))

    def feed(self, event: call.CallEvent) -> None:
        if self.ended:
            return
        self.lines.append(self.recorder.input(self.now, event))
        actions = self.session.handle(event)
        self.lines += self.recorder.outputs(self.now, actions)
        for action in actions:
            self._react(action)

    def run(self, script: Callable[[Sim], Script], *, limit: float = 120.0) -> list[str]:
        self.at(0.0, lambda: self.feed(twilio.Connected(protocol="Call", version="1.0.0")))
        self.at(0.001, self._start)
        self.at(0.04, lambda: self.feed(call.AgentConnected()))
        self.at(0.05, lambda: self.feed(agent.Welcome(request_id=f"req-{self.stream_sid[-4:]}")))
        self.at(0.052, self._media)
        steps = script(self)
        self.at(0.0, lambda: self._step(steps))
        while self._queue and not self.ended:
            t, _, action = heapq.heappop(self._queue)
            if t > limit:
                raise RuntimeError(f"the scripted call did not end within {limit} s")
            self.now = t
            action()
        return self.lines

    def _step(self, steps: Script) -> None:
        try:
            delay = next(steps)
        except StopIteration:
            return
        self.at(delay, lambda: self._step(steps))

    # --- fake Twilio ------------------------------------------------------------------------

    def _start(self) -> None:
        if self._real_start is not None:
            next(self._seq)
            self.feed(self._real_start)
            return
        self.feed(
            twilio.Start(
                stream_sid=self.stream_sid,
                sequence_number=str(next(self._seq)),
                start=twilio.StartInfo(
                    stream_sid=self.stream_sid,
                    call_sid=self.call_sid,
                    account_sid="AC" + "0" * 32,
                    tracks=["inbound"],
                    media_format=twilio.MediaFormat(
                        encoding="audio/x-mulaw", sample_rate=8000, channels=1
                    ),
                    custom_parameters={
                        "caller": CALLER,
                        "callSid": self.call_sid,
                        "token": "0" * 32,
                    },
                ),
            )
        )

    def _caller_payload(self) -> bytes:
        if self.caller_speaking:
            codes = self.rng.integers(0x10, 0x70, 160) | (self.rng.integers(0, 2, 160) << 7)
            return bytes(codes.astype(np.uint8))
        return self._quiet_payload  # a quiet line: Twilio keeps sending frames

    def _media(self) -> None:
        if not self.caller_online or self.ended:
            return
        chunk = next(self._chunk)
        self.feed(
            twilio.Media(
                stream_sid=self.stream_sid,
                sequence_number=str(next(self._seq)),
                media=twilio.MediaInfo(
                    track="inbound",
                    chunk=str(chunk),
                    timestamp=str(52 + 20 * (chunk - 1)),
                    payload=self._caller_payload(),
                ),
            )
        )
        self.at(FRAME, self._media)

    def _echo_mark(self, name: str, token: int) -> None:
        if self._pending_marks.get(name) != token or not self.caller_online:
            return
        del self._pending_marks[name]
        self.feed(
            twilio.Mark(
                stream_sid=self.stream_sid,
                sequence_number=str(next(self._seq)),
                mark=twilio.MarkInfo(name=name),
            )
        )

    def dtmf(self, digit: str) -> None:
        self.feed(
            twilio.Dtmf(
                stream_sid=self.stream_sid,
                sequence_number=str(next(self._seq)),
                dtmf=twilio.DtmfInfo(track="inbound_track", digit=digit),
            )
        )

    def stop(self) -> None:
        self.caller_online = False
        self.feed(
            twilio.Stop(
                stream_sid=self.stream_sid,
                sequence_number=str(next(self._seq)),
                stop=twilio.StopInfo(account_sid="AC" + "0" * 32, call_sid=self.call_sid),
            )
        )

    def twilio_raw(self, frame: dict[str, Any]) -> None:
        self.feed(twilio.decode(json.dumps(frame)))

    # --- reacting to the core's actions -----------------------------------------------------

    def _react(self, action: call.Action) -> None:
        match action:
            case call.SendToTwilio(text=text):
                self._twilio_receives(twilio.decode_outbound(text))
            case call.SendToAgent(text=text):
                self._agent_receives(agent.decode_client(text))
            case call.StartTimer(name=name, seconds=seconds):
                generation = self._timer_generation.get(name, 0) + 1
                self._timer_generation[name] = generation
                self.at(seconds, lambda: self._fire(name, generation))
            case call.CancelTimer(name=name):
                self._timer_generation[name] = self._timer_generation.get(name, 0) + 1
            case call.RequestEffect(effect=effect):
                self.at(0.035, lambda: self.feed(self._store(effect)))
            case call.EndCall():
                self.ended = True

    def _fire(self, name: str, generation: int) -> None:
        if self._timer_generation.get(name) == generation:
            self.feed(call.TimerFired(name=name))

    def _twilio_receives(self, message: twilio.TwilioOutbound) -> None:
        match message:
            case twilio.SendMedia(payload=payload):
                self._play_until = max(self._play_until, self.now) + len(payload) / 8000
            case twilio.SendMark(name=name):
                token = next(self._mark_tokens)
                self._pending_marks[name] = token
                self.at(self._play_until - self.now + 0.01, lambda: self._echo_mark(name, token))
            case twilio.SendClear():
                self._play_until = self.now
                for name, token in list(self._pending_marks.items()):
                    self.at(0.005, lambda n=name, k=token: self._echo_mark(n, k))

    def _agent_receives(self, message: agent.AgentClientMessage) -> None:
        match message:
            case agent.AgentSettings():
                self.at(0.12, self._settings_applied)
            case agent.FunctionCallResponse(id=fid, content=content):
                self.responses[fid] = json.loads(content)
            case _:
                pass

    def _settings_applied(self) -> None:
        self.feed(agent.SettingsApplied())
        self.settings_applied = True

    def _store(self, effect: model.EffectRequest) -> model.EffectResult:
        if isinstance(effect, model.CommitOrder):
            self._orders += 1
            order = model.Order(
                order_number=str(4781 + self._orders),
                status=model.OrderStatus.RECEIVED,
                phone=effect.draft.phone,
                items=effect.draft.items,
                total_cents=effect.draft.total_cents,
                created_at=f"2026-11-25T10:00:{int(self.now):02d}Z",
                sms_received="queued",
                call_sid=effect.draft.call_sid,
                name=effect.draft.name,
                ready_in_minutes=shop.wait_minutes(
                    shop.PrepTimes(per_drink=effect.draft.prep_minutes_per_drink,
                                   minimum=effect.draft.prep_minutes_min),
                    sum(len(o.items) for o in self.committed),
                ),
            )
            self.committed.append(order)
            return model.OrderCommitted(request_id=effect.request_id, order=order)
        found = tuple(
            o for o in self.committed
            if o.phone in effect.phones
            and (effect.order_number is None or o.order_number == effect.order_number)
        )
        return model.OrdersFound(request_id=effect.request_id, orders=found)

    # --- the fake agent's moves (used by scripts with `yield from`) -------------------------

    def agent_send(self, message: agent.AgentMessage) -> None:
        self.feed(message)

    def sold_out(self, **names: list[str]) -> None:
        """Staff marked items sold out: the runtime tells the core before the next call."""
        self.feed(call.AvailabilityChanged(availability=shop.Availability(
            **{kind: frozenset(items) for kind, items in names.items()})))

    def speech(self, seconds: float) -> bytes:
        """Agent speech in the profile's output format: a few harmonics with an envelope."""
        rate = self.profile.output_rate
        n = int(seconds * rate)
        t = np.arange(n) / rate
        f0 = float(self.rng.uniform(110, 180))
        wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
        pcm = (wave * envelope * 6000).astype(np.int16)
        if self.profile is agent.AudioProfile.LINEAR16:
            return pcm.astype("<i2").tobytes()
        from boba_proto import audio

        return audio.ulaw_encode(pcm)

    def say(self, text: str, seconds: float, *, interrupted_after: float | None = None) -> Script:
        """The agent speaks: latency report, transcript, audio in uneven chunks, done."""
        self.agent_send(
            agent.AgentStartedSpeaking(total_latency=0.84, tts_latency=0.21, ttt_latency=0.63)
        )
        self.agent_send(agent.ConversationText(role="assistant", content=text))
        data = self.speech(seconds)
        width = self.profile.sample_width
        at = 0
        sent_seconds = 0.0
        while at < len(data):
            size = int(self.rng.integers(1200, 4800)) * width + int(self.rng.integers(0, 2))
            piece = data[at : at + size]
            at += size
            self.feed(call.AgentAudio(data=piece))
            # TTS arrives faster than real time, about 3x
            step = len(piece) / (self.profile.output_rate * width) / 3
            sent_seconds += step
            yield step
            if interrupted_after is not None and sent_seconds >= interrupted_after:
                return
        self.agent_send(agent.AgentAudioDone())

    def caller_says(self, text: str, seconds: float) -> Script:
        """The caller talks; the agent hears the start at once and the words at the end."""
        self.caller_speaking = True
        yield 0.24
        self.agent_send(agent.UserStartedSpeaking())
        yield seconds
        self.caller_speaking = False
        yield 0.3
        self.agent_send(agent.ConversationText(role="user", content=text))
        yield 0.05

    def functions(self, *calls: tuple[str, dict[str, Any]]) -> Script:
        """One FunctionCallRequest with these calls; waits until each is answered."""
        ids = [f"call_{next(self._fn_ids)}" for _ in calls]
        self.agent_send(
            agent.FunctionCallRequest(
                functions=[
                    agent.FunctionCall(
                        id=fid, name=name, arguments=json.dumps(args), client_side=True
                    )
                    for fid, (name, args) in zip(ids, calls, strict=True)
                ]
            )
        )
        while not all(fid in self.responses for fid in ids):
            yield 0.01
        yield 0.4  # the agent thinks before it speaks

    def wait_until_played(self) -> Script:
        while self._pending_marks:
            yield 0.02
        yield 0.3

    def greet(self) -> Script:
        while not self.settings_applied:
            yield 0.01
        yield 0.35
        yield from self.say("Hey! I am your Deepgram BobaRista. What would you like to order?", 1.6)
        yield from self.wait_until_played()

    def goodbye(self, text: str = "Thanks for calling, goodbye!") -> Script:
        yield from self.functions(("end_call", {}))
        yield from self.say(text, 0.9)
        while not self.ended:
            yield 0.05


# --------------------------------------------------------------------------- the calls

LINEAR16 = agent.AudioProfile.LINEAR16
MULAW = agent.AudioProfile.MULAW

TARO_BOBA = {"flavor": "taro milk tea", "toppings": ["boba"], "sweetness": "50%",
             "ice": "regular ice", "addons": []}


def plain_order(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("Can I get a taro milk tea with boba, half sweet?", 1.8)
    yield from sim.functions(("add_to_cart", TARO_BOBA))
    yield from sim.say("One taro milk tea with boba, half sweet, regular ice. Anything else?", 1.8)
    yield from sim.wait_until_played()
    yield from sim.caller_says("No, that's all.", 0.8)
    yield from sim.functions(("confirm_pending_to_cart", {}))
    yield from sim.say("What phone number should we text when it's ready?", 1.2)
    yield from sim.wait_until_played()
    yield from sim.caller_says("It's 415 555 0123.", 1.5)
    yield from sim.functions(("save_phone_number", {"phone": "415 555 0123"}))
    yield from sim.functions(("checkout_order", {}))
    yield from sim.say("Your order number is 4782. It's six twenty-five.", 1.4)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def two_drinks(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says(
        "A black milk tea with egg pudding, no ice, and a taro with crystal boba.", 3.0
    )
    yield from sim.functions(
        ("add_to_cart", {"flavor": "black milk tea", "toppings": ["pudding"], "ice": "no ice"}),
        ("confirm_pending_to_cart", {}),
    )
    yield from sim.functions(("add_to_cart", {"flavor": "taro", "toppings": ["crystal"]}))
    yield from sim.functions(("confirm_pending_to_cart", {}))
    yield from sim.say("Got it, two drinks. Anything else?", 1.2)
    yield from sim.wait_until_played()
    yield from sim.caller_says("No. Text me at 415 555 0123.", 1.6)
    yield from sim.functions(("checkout_order", {"phone": "4155550123"}))
    yield from sim.say("Order 4782, thirteen dollars even.", 1.2)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def change_of_mind(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("A taro milk tea with boba please.", 1.4)
    yield from sim.functions(("add_to_cart", {"flavor": "taro milk tea", "toppings": ["boba"]}))
    yield from sim.say("A taro milk tea with boba. Shall I add it?", 1.2)
    yield from sim.wait_until_played()
    yield from sim.caller_says(
        "Actually, make it a black milk tea, less sweet, and light ice.", 2.2
    )
    yield from sim.functions(
        ("update_pending_item",
         {"flavor": "black milk tea", "sweetness": "25%", "ice": "light ice"})
    )
    yield from sim.say("A black milk tea with boba, 25 percent sweet, less ice. Right?", 1.6)
    yield from sim.wait_until_played()
    yield from sim.caller_says("Yes.", 0.4)
    yield from sim.functions(("confirm_pending_to_cart", {}), ("get_cart", {}))
    yield from sim.functions(("checkout_order", {"phone": "+1 415 555 0123"}))
    yield from sim.say("Order 4782 is in, six twenty-five.", 1.0)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def off_menu_flavor(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("Do you have a mango smoothie with boba?", 1.5)
    yield from sim.functions(("add_to_cart", {"flavor": "mango smoothie", "toppings": ["boba"]}))
    yield from sim.say("Sorry, we only have taro milk tea and black milk tea.", 1.6)
    yield from sim.wait_until_played()
    yield from sim.caller_says("Then a taro, please.", 0.8)
    yield from sim.functions(("add_to_cart", {"flavor": "taro"}), ("confirm_pending_to_cart", {}))
    yield from sim.say("One taro milk tea. Anything else?", 1.0)
    yield from sim.wait_until_played()
    yield from sim.caller_says("No thanks, bye.", 0.6)
    yield from sim.goodbye("Okay, bye!")


def matcha_without_cream(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("Black milk tea with boba and the matcha stencil.", 1.8)
    yield from sim.functions(
        ("add_to_cart", {"flavor": "black milk tea", "toppings": ["boba"], "addons": ["matcha"]})
    )
    yield from sim.say("The matcha stencil needs vanilla cream. Shall I add cream?", 1.6)
    yield from sim.wait_until_played()
    yield from sim.caller_says("Sure, add the cream.", 0.8)
    yield from sim.functions(
        ("add_to_cart", {"flavor": "black milk tea", "toppings": ["boba", "vanilla cream"],
                         "addons": ["matcha stencil on top"]}),
        ("confirm_pending_to_cart", {}),
    )
    yield from sim.functions(("checkout_order", {"phone": "415-555-0123"}))
    yield from sim.say("Order 4782, seven fifty.", 1.0)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def eleventh_drink(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("Eleven black milk teas for the office!", 1.6)
    for _ in range(10):
        yield from sim.functions(("add_to_cart", {"flavor": "black milk tea"}),
                                 ("confirm_pending_to_cart", {}))
    yield from sim.functions(("add_to_cart", {"flavor": "black milk tea"}))
    yield from sim.say("I can only take ten drinks per order. I've got ten.", 1.6)
    yield from sim.wait_until_played()
    yield from sim.caller_says("Fine, ten then. 415 555 0123.", 1.4)
    yield from sim.functions(("checkout_order", {"phone": "4155550123"}))
    yield from sim.say("Order 4782, fifty-five dollars.", 1.0)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def checkout_twice(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("Taro milk tea with pudding, my number is 415 555 0123.", 2.2)
    yield from sim.functions(
        ("add_to_cart", {"flavor": "taro milk tea", "toppings": ["egg pudding"]}),
        ("save_phone_number", {"phone": "4155550123"}),
    )
    yield from sim.functions(("checkout_order", {}))
    yield from sim.say("Your order number is 4782.", 0.9)
    yield from sim.wait_until_played()
    yield from sim.caller_says("Sorry, what was the number again? Did it go through?", 1.6)
    # the model places the order again; the core answers with the same order
    yield from sim.functions(("checkout_order", {}), ("order_is_placed", {}))
    # a retransmitted request with an id that was already answered gets no second answer
    sim.agent_send(
        agent.FunctionCallRequest(
            functions=[
                agent.FunctionCall(id="call_3", name="checkout_order", arguments="{}",
                                   client_side=True),
                agent.FunctionCall(id="srv_1", name="lookup_weather", arguments="{}",
                                   client_side=False),
            ]
        )
    )
    yield 0.2
    yield from sim.functions(("order_status", {}))
    yield from sim.say("Yes, order 4782 is received and being made.", 1.2)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def menu_question(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("What do you have? And what does the matcha thing cost?", 2.0)
    yield from sim.functions(("menu_summary", {}))
    yield from sim.say(
        "We have taro milk tea and black milk tea at five fifty, toppings are seventy-five "
        "cents, and the matcha stencil is fifty cents, with vanilla cream.", 3.0
    )
    yield from sim.wait_until_played()
    yield from sim.caller_says("Okay, I'll think about it. Bye.", 1.0)
    yield from sim.goodbye("No problem, bye!")


def barge_in(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("What toppings are there?", 1.0)
    yield from sim.functions(("menu_summary", {}))
    yield from sim.say(
        "Our toppings are boba, egg pudding, crystal agar boba and vanilla cream, and you "
        "can add a matcha stencil on top with vanilla cream, and sweetness goes from...",
        4.0,
    )
    # the answer is all sent but Twilio is still playing it when the caller talks over it:
    # clear, the pending mark counts as cleared, not played
    yield 0.3
    yield from sim.caller_says("Just boba. Taro with boba.", 1.2)
    # the agent starts a reply and is interrupted again while it is still streaming
    yield from sim.say("Sure, one taro milk tea with boba, and would you like", 2.0,
                       interrupted_after=0.3)
    yield from sim.caller_says("Half sweet.", 0.6)
    yield from sim.functions(("add_to_cart", TARO_BOBA), ("confirm_pending_to_cart", {}))
    yield from sim.say("Taro with boba, got it. What number should we text?", 1.4)
    yield from sim.wait_until_played()
    yield from sim.caller_says("415 555 0123.", 1.2)
    yield from sim.functions(("checkout_order", {"phone": "4155550123"}))
    yield from sim.say("Order 4782.", 0.6)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def hangup_mid_order(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("A black milk tea with boba and...", 1.6)
    yield from sim.functions(("add_to_cart", {"flavor": "black milk tea", "toppings": ["boba"]}))
    yield from sim.say("A black milk tea with boba. Anything else?", 1.2)
    yield 0.4
    sim.stop()  # the caller hangs up while the agent is still talking: nothing is committed
    yield 0.1


def agent_error(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("Can I get a taro milk tea?", 1.0)
    yield from sim.functions(("add_to_cart", {"flavor": "taro milk tea"}))
    yield 0.5
    sim.agent_send(agent.AgentWarning(code="THINK_REQUEST_FAILED",
                                      description="The think provider timed out; retrying."))
    yield 1.5
    sim.agent_send(agent.AgentError(code="INTERNAL_SERVER_ERROR",
                                    description="An internal server error occurred."))
    yield 0.1


def unknown_messages_and_dtmf(sim: Sim) -> Script:
    yield from sim.greet()
    sim.feed(agent.decode(json.dumps({"type": "LatencyReport", "total_latency": 0.9})))
    sim.feed(agent.decode(json.dumps({"type": "FrustrationDetected", "count": 1,
                                      "escalated": False})))
    yield from sim.caller_says("A taro milk tea please, I'll type my number.", 1.8)
    yield from sim.functions(("add_to_cart", {"flavor": "taro milk tea"}),
                             ("confirm_pending_to_cart", {}))
    sim.twilio_raw({"event": "transcription", "streamSid": sim.stream_sid, "text": "?"})
    sim.feed(call.TwilioMalformed(reason="Twilio sent malformed JSON: truncated"))
    yield from sim.say("Sure, go ahead and type it.", 0.8)
    yield from sim.wait_until_played()
    for digit in "415555":
        sim.dtmf(digit)
        yield 0.25
    yield 2.5  # a pause: the digits so far go to the agent
    for digit in "0123#":
        sim.dtmf(digit)
        yield 0.25
    yield 0.3
    sim.feed(agent.decode(json.dumps({"type": "ThinkUpdated"})))
    yield from sim.functions(("save_phone_number", {"phone": "4155550123"}))
    yield from sim.functions(("checkout_order", {}))
    yield from sim.say("Order 4782, see you soon.", 0.9)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def cancelled_call_and_hold(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("What's the status of my order 4782?", 1.4)
    # the agent asks, then withdraws the call because the caller kept talking
    sim.agent_send(agent.FunctionCallRequest(functions=[agent.FunctionCall(
        id="call_9", name="order_status", arguments='{"order_number": "4782"}',
        client_side=True)]))
    sim.agent_send(agent.FunctionCallCancelled(
        functions=[agent.CancelledFunction(id="call_9", name="order_status")]))
    yield 0.3
    # the caller's line goes quiet (no media) for a while: keep-alives go to the agent
    sim.caller_online = False
    yield 7.0
    sim.caller_online = True
    sim.at(0.0, sim._media)
    yield from sim.caller_says("Sorry, I'm back. Never mind the order.", 1.2)
    yield from sim.functions(("order_status", {}))
    yield from sim.say("No orders from this number yet.", 1.0)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def time_limit(sim: Sim) -> Script:
    yield from sim.greet()
    yield from sim.caller_says("Hmm, let me think about what I want...", 3.0)
    while not sim.ended and sim.session.state is not call.CallState.ENDING:
        yield 0.05
    yield 0.3
    yield from sim.say(call.TIME_LIMIT_MESSAGE, 2.0)
    while not sim.ended:
        yield 0.05


REAL_DATA = HERE.parent / "protocol" / "data"


def real_wire_shapes(sim: Sim) -> Script:
    """Twilio's real 2020 capture (UUID streamSid, no caller parameter, its real payload)
    and every agent message type Deepgram documents, in the middle of an order."""
    yield from sim.greet()
    for line in (REAL_DATA / "agent-server-v1.jsonl").read_text(encoding="utf-8").splitlines():
        message = agent.decode(line)
        if isinstance(message, agent.Welcome | agent.SettingsApplied | agent.AgentError
                      | agent.FunctionCallRequest | agent.FunctionCallCancelled
                      | agent.UserStartedSpeaking | agent.AgentAudioDone
                      | agent.ConversationText):
            continue  # those drive the conversation; the script sends them where they belong
        sim.agent_send(message)
        yield 0.05
    yield from sim.caller_says("What's the status of my order?", 1.2)
    yield from sim.functions(("order_status", {}))  # no caller number on this stream
    yield from sim.say("Which phone number did you order with?", 1.2)
    yield from sim.wait_until_played()
    yield from sim.caller_says("No order yet. A black milk tea, less ice, to 415 555 0123.", 2.4)
    yield from sim.functions(
        ("add_to_cart", {"flavor": "black milk tea", "ice": "less ice"}),
        ("save_phone_number", {"phone": "415 555 0123"}),
        ("checkout_order", {}),
    )
    yield from sim.say("Order 4782, five fifty.", 1.0)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def sold_out_refusal(sim: Sim) -> Script:
    """Taro sold out during the day: refused by name, the caller takes black milk tea."""
    yield from sim.greet()
    yield from sim.caller_says("A taro milk tea with boba, please.", 1.6)
    sim.sold_out(flavors=["taro milk tea"])
    yield from sim.functions(("add_to_cart", TARO_BOBA))
    yield from sim.say("Sorry, taro is sold out right now. We still have black milk tea.", 1.8)
    yield from sim.wait_until_played()
    yield from sim.caller_says("What else is there?", 1.0)
    yield from sim.functions(("menu_summary", {}))
    yield from sim.say("We have black milk tea, with boba, egg pudding or crystal boba.", 1.8)
    yield from sim.wait_until_played()
    yield from sim.caller_says("OK, a black milk tea with boba then.", 1.4)
    yield from sim.functions(("add_to_cart", {"flavor": "black milk tea", "toppings": ["boba"]}))
    yield from sim.say("One black milk tea with boba. Anything else?", 1.4)
    yield from sim.wait_until_played()
    yield from sim.caller_says("No, that's it.", 0.8)
    yield from sim.functions(("confirm_pending_to_cart", {}),
                             ("save_phone_number", {"phone": "415 555 0123"}))
    yield from sim.functions(("checkout_order", {}))
    yield from sim.say("Your order number is 4, 7, 8, 2. That's six twenty-five, ready in "
                       "about five minutes.", 2.2)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def transfer(sim: Sim) -> Script:
    """The caller asks for a person: one sentence, then the stream ends after its mark."""
    yield from sim.greet()
    yield from sim.caller_says("Can I talk to someone? I have a nut allergy question.", 2.0)
    yield from sim.functions(("transfer_to_staff", {}))
    yield from sim.say("Sure, let me put you through to the shop.", 1.2)
    while not sim.ended:
        yield 0.05


def named_order(sim: Sim) -> Script:
    """A name for the cup, "Anything else?", and the number read digit by digit with the
    total and the wait."""
    yield from sim.greet()
    yield from sim.caller_says("A taro milk tea with boba.", 1.2)
    yield from sim.functions(("add_to_cart", TARO_BOBA))
    yield from sim.say("One taro milk tea with boba, half sweet, regular ice. Is that right?", 1.8)
    yield from sim.wait_until_played()
    yield from sim.caller_says("Yes.", 0.4)
    yield from sim.functions(("confirm_pending_to_cart", {}))
    yield from sim.say("Anything else?", 0.6)
    yield from sim.wait_until_played()
    yield from sim.caller_says("No. My number is 415 555 0123, and the name is Ana.", 2.4)
    yield from sim.functions(("save_phone_number", {"phone": "415 555 0123", "name": "Ana"}))
    yield from sim.functions(("checkout_order", {}))
    yield from sim.say("Thanks Ana! Your order number is 4, 7, 8, 2. That's six twenty-five, "
                       "ready in about five minutes.", 2.6)
    yield from sim.wait_until_played()
    yield from sim.goodbye()


def _real_sim(seed: int) -> Sim:
    inbound = (REAL_DATA / "twilio-2020-inbound.jsonl").read_text(encoding="utf-8").splitlines()
    start, first_media = twilio.decode(inbound[1]), twilio.decode(inbound[2])
    assert isinstance(start, twilio.Start) and isinstance(first_media, twilio.Media)
    return Sim(MULAW, seed=seed, real_start=start, quiet_payload=first_media.media.payload)


SESSIONS: dict[str, tuple[Callable[[Sim], Script], agent.AudioProfile, float, int]] = {
    # name: (script, audio profile, call-length limit, random seed: fixed, so a file
    # regenerated from an unchanged script comes out byte for byte the same)
    "plain_order": (plain_order, MULAW, 600.0, 11),
    "two_drinks": (two_drinks, LINEAR16, 600.0, 13),
    "change_of_mind": (change_of_mind, MULAW, 600.0, 4),
    "off_menu_flavor": (off_menu_flavor, MULAW, 600.0, 10),
    "matcha_without_cream": (matcha_without_cream, MULAW, 600.0, 8),
    "eleventh_drink": (eleventh_drink, MULAW, 600.0, 6),
    "checkout_twice": (checkout_twice, MULAW, 600.0, 5),
    "menu_question": (menu_question, LINEAR16, 600.0, 9),
    "barge_in": (barge_in, LINEAR16, 600.0, 2),
    "hangup_mid_order": (hangup_mid_order, MULAW, 600.0, 7),
    "agent_error": (agent_error, MULAW, 600.0, 1),
    "unknown_messages_and_dtmf": (unknown_messages_and_dtmf, MULAW, 600.0, 14),
    "cancelled_call_and_hold": (cancelled_call_and_hold, MULAW, 600.0, 3),
    "time_limit": (time_limit, LINEAR16, 8.0, 12),
    "real_wire_shapes": (real_wire_shapes, MULAW, 600.0, 15),
    # CONTRACT §12
    "sold_out_refusal": (sold_out_refusal, MULAW, 600.0, 16),
    "transfer": (transfer, MULAW, 600.0, 17),
    "named_order": (named_order, LINEAR16, 600.0, 18),
}


def make(name: str) -> list[str]:
    script, profile, max_seconds, seed = SESSIONS[name]
    if name == "real_wire_shapes":
        sim = _real_sim(seed)
    else:
        sim = Sim(profile, seed=seed, max_call_seconds=max_seconds,
                  transfer=name == "transfer")
    lines = sim.run(script)
    if not sim.ended:
        raise RuntimeError(f"{name}: the call never ended")
    return lines


def main(argv: list[str]) -> int:
    names = argv or list(SESSIONS)
    for name in names:
        lines = make(name)
        path = HERE / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{path}: {len(lines)} lines, {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
