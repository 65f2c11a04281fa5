"""CPU cost of the local agent's offline speech for one whole call (issue 19).

    nox -s bench_speech             # = python bench/bench_speech.py
    python bench/bench_speech.py [--calls 3] [--json FILE]

One call is the plain order of examples/calls/plain_order.txt as a voice call: the
caller's six lines spoken (eSpeak NG, μ-law 8 kHz) and the agent's seven replies (the
greeting, then what the dialogue answers each line). For each call it measures, as thread
CPU time, exactly the work `boba_runtime.agent.speech.agent` does:

- listen, on the trio loop: μ-law decode, 8 -> 16 kHz resampling and the voice-activity
  detector, 20 ms frame by frame, over the whole call's inbound audio (speech + silences);
- recognise, in a worker thread: each utterance with its dialogue state's grammar;
- speak, in a worker thread: each reply synthesised and converted to μ-law 8 kHz.

It reports CPU seconds per call, and the share of one core while the call lasts (the call's
length is its audio: both sides' speech plus the pauses).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boba_proto import audio
from boba_proto.local_agent.vad import UtteranceEnded, VoiceActivityDetector
from boba_runtime.agent.speech import AGENT_VOICE, SpeechEngines
from boba_runtime.agent.speech.agent import listen_for
from boba_runtime.agent.speech.caller import CALLER_VOICES, phone_audio
from tests.protocol.dialogue_harness import Conversation, builtin_menu

CALLER_LINES = [
    "hi there, can I get a taro milk tea with tapioca pearls please",
    "yes",
    "nothing else",
    "four one five, five five five, zero one four two",
    "yes",
    "goodbye",
]
PAUSE_S = 1.5  # silence on the line after each utterance (the agent's turn is on top)


def one_call(engines: SpeechEngines) -> dict[str, float]:
    menu = builtin_menu()
    conversation = Conversation(menu)
    decoder = engines.recognizer.decoder()
    synth = engines.synthesizer
    listen_cpu = recognise_cpu = speak_cpu = 0.0
    call_seconds = 0.0
    replies = ["Hey! I am your Deepgram BobaRista. What would you like to order?"]
    for said in CALLER_LINES:
        ulaw = phone_audio(synth, said, CALLER_VOICES[0]) + b"\xff" * int(8000 * PAUSE_S)
        call_seconds += len(ulaw) / 8000
        vad = VoiceActivityDetector()
        to_16k = audio.resampler(8000, 16000)
        state = to_16k.initial_state()
        ended: list[UtteranceEnded] = []
        started = time.thread_time()
        for at in range(0, len(ulaw), 160):
            wide, state = to_16k.process(audio.ulaw_decode(ulaw[at : at + 160]), state)
            ended += [e for e in vad.feed(wide) if isinstance(e, UtteranceEnded)]
        listen_cpu += time.thread_time() - started
        for utterance in ended:
            samples = np.frombuffer(utterance.samples, dtype="<i2").astype(np.int16)
            heard = decoder.recognize(samples, listen_for(conversation.dialogue))
            recognise_cpu += heard.cpu_seconds
        replies.append(conversation.say(said).text)
    to_8k = audio.resampler(synth.sample_rate, 8000)
    for reply in replies:
        started = time.thread_time()
        pcm = synth.speak(reply, AGENT_VOICE)
        narrow, _ = to_8k.process(pcm, to_8k.initial_state())
        audio.ulaw_encode(narrow)
        speak_cpu += time.thread_time() - started
        call_seconds += len(pcm) / synth.sample_rate
    total = listen_cpu + recognise_cpu + speak_cpu
    return {"call_seconds": call_seconds, "listen_cpu_s": listen_cpu,
            "recognise_cpu_s": recognise_cpu, "speak_cpu_s": speak_cpu, "total_cpu_s": total,
            "share_of_a_core": total / call_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    started = time.perf_counter()
    engines = SpeechEngines(builtin_menu())
    setup_s = time.perf_counter() - started
    runs = [one_call(engines) for _ in range(args.calls)]
    median = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}
    print(f"offline speech, one plain-order call ({median['call_seconds']:.0f} s of audio), "
          f"median of {args.calls}:")
    for key in ("listen_cpu_s", "recognise_cpu_s", "speak_cpu_s", "total_cpu_s"):
        print(f"  {key:16} {median[key]:7.2f} s")
    print(f"  share of a core  {median['share_of_a_core']:7.1%}   (engines loaded once per "
          f"server in {setup_s:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"median": median, "runs": runs, "setup_s": setup_s,
             "machine": platform.platform(), "python": platform.python_version()}, indent=2))


if __name__ == "__main__":
    main()
