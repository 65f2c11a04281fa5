"""The offline recogniser's accuracy on caller speech as a phone carries it (issue 19).

30 caller utterances (the example scripts and more; phone numbers digit by digit), each
in the dialogue state it is said in, spoken by eSpeak NG in two caller voices at two
speeds, converted to μ-law 8 kHz and back to 16 kHz with our resampler, and recognised
with that state's grammar. An utterance counts as understood when the local agent's
`understand` draws the same meaning from what was heard as from what was said.

    python -m tests.speech.accuracy      # prints every miss and the figure
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from boba_proto import audio
from boba_proto.local_agent.dialogue import DialoguePhase, LocalDialogue
from boba_proto.local_agent.speech_grammar import Listen
from boba_proto.local_agent.understand import Lexicon, understand
from boba_runtime.agent.speech import SpeechEngines
from boba_runtime.agent.speech.agent import listen_for
from boba_runtime.agent.speech.caller import CALLER_VOICES, phone_audio
from boba_runtime.agent.speech.synth import Voice
from tests.protocol.dialogue_harness import builtin_menu

T, C, P, K, D = (DialoguePhase.TAKING, DialoguePhase.CONFIRMING_DRINK,
                 DialoguePhase.ASKING_PHONE, DialoguePhase.CONFIRMING_PHONE,
                 DialoguePhase.PLACED)

UTTERANCES: list[tuple[DialoguePhase, str]] = [
    (T, "hi there, can I get a taro milk tea with tapioca pearls please"),
    (T, "I'd like to order two drinks"),
    (T, "a black milk tea with the crystal agar, seventy five percent sweet"),
    (T, "a black milk tea with boba and vanilla cream, matcha stencil on top, less ice"),
    (T, "and a taro milk tea, no sugar"),
    (T, "can I get a black milk tea with egg pudding, half sweet, no ice"),
    (T, "what's on the menu"),
    (T, "remove the second one"),
    (T, "that's all"),
    (T, "two taro milk teas with boba please"),
    (T, "a black milk tea with vanilla cream and the matcha stencil on top"),
    (T, "is my order ready"),
    (T, "I'll have a taro milk tea, twenty five percent sweet, extra ice"),
    (C, "yes, that's right"),
    (C, "actually make it taro milk tea"),
    (C, "no boba"),
    (C, "egg pudding instead please, half sweet, no ice"),
    (C, "the matcha stencil on top too"),
    (C, "yes"),
    (C, "make it less ice"),
    (C, "no, that's all"),
    (P, "four one five, five five five, zero one four two"),
    (P, "my number is six five zero, two two one, eight seven three nine"),
    (P, "nine one seven, eight zero zero, four two two six"),
    (P, "two one two, five five five, zero one nine eight"),
    (K, "yes"),
    (K, "correct"),
    (K, "no"),
    (D, "no thanks, bye"),
    (D, "goodbye"),
]

SPEEDS = (1.0, 1.25)
"""Each caller voice at its own rate, and 25 % faster."""


def voices() -> list[Voice]:
    return [Voice(v.name, round(v.words_per_minute * s), v.pitch)
            for v in CALLER_VOICES for s in SPEEDS]


def meaning(lexicon: Lexicon, text: str) -> tuple[object, ...]:
    """What the dialogue acts on: the drinks, the intents, the digits."""
    u = understand(lexicon, text)
    drinks = tuple(
        (d.flavor, tuple(sorted(d.toppings)), tuple(sorted(d.addons)),
         tuple(sorted(d.no_toppings)), d.clear_toppings, d.sweetness, d.ice, d.quantity)
        for d in u.drinks if d.has_content
    )
    return (drinks, u.yes, u.no, u.done, u.bye, u.menu_question, u.status_question,
            u.cart_question, u.remove, u.position, u.digits, u.announced_count)


@dataclass
class Trial:
    phase: DialoguePhase
    said: str
    voice: Voice
    heard: str | None
    understood: bool
    audio_s: float
    cpu_s: float


def listen_in(phase: DialoguePhase) -> Listen:
    dialogue = LocalDialogue(builtin_menu())
    dialogue.phase = phase
    return listen_for(dialogue)


def run() -> list[Trial]:
    menu = builtin_menu()
    lexicon = Lexicon(menu)
    engines = SpeechEngines(menu)
    decoder = engines.recognizer.decoder()
    to_16k = audio.resampler(audio.TWILIO_RATE, 16000)
    trials = []
    for voice in voices():
        for phase, said in UTTERANCES:
            ulaw = phone_audio(engines.synthesizer, said, voice)
            wide, _ = to_16k.process(audio.ulaw_decode(ulaw), to_16k.initial_state())
            pad = np.zeros(4000, dtype=np.int16)  # the detector's pre-roll and hangover
            heard = decoder.recognize(np.concatenate([pad, wide, pad]), listen_in(phase))
            understood = heard.text is not None and (
                meaning(lexicon, heard.text) == meaning(lexicon, said)
            )
            trials.append(Trial(phase, said, voice, heard.text, understood,
                                len(ulaw) / 8000, heard.cpu_seconds))
    return trials


if __name__ == "__main__":
    started = time.perf_counter()
    results = run()
    for t in results:
        if not t.understood:
            print(f"MISS {t.voice.name}@{t.voice.words_per_minute} [{t.phase.value}] "
                  f"{t.said!r} -> {t.heard!r}")
    ok = sum(t.understood for t in results)
    cpu = sum(t.cpu_s for t in results)
    speech_s = sum(t.audio_s for t in results)
    print(f"understood {ok}/{len(results)} = {ok / len(results):.1%}; recognition CPU "
          f"{cpu:.1f} s for {speech_s:.1f} s of speech ({cpu / speech_s:.2f} x real time); "
          f"{time.perf_counter() - started:.0f} s in all")
