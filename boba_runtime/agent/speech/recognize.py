"""Speech to text with PocketSphinx, constrained by the grammar of what the caller may say
now (`boba_proto.local_agent.speech_grammar`). The acoustic model ships in the `pocketsphinx` wheel
(`pip install .[speech]`); nothing is downloaded.

A `Recognizer` is built once per menu (pronunciations of the menu's words: the CMU
dictionary shipped with the model, and eSpeak NG's phonemes mapped to the model's phone set
for words it lacks, such as "boba"); `decoder()` gives each call its own `CallDecoder`
(PocketSphinx decoders are not thread-safe), whose `recognize` runs in a worker thread.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from boba_proto.local_agent.speech_grammar import Listen, grammar, vocabulary
from boba_proto.menu import Menu
from boba_runtime.agent.speech.synth import SpeechUnavailable, Synthesizer

__all__ = ["CallDecoder", "Recognized", "Recognizer", "arpabet"]

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 16000
"""The acoustic model's rate: caller audio is resampled to it."""

# eSpeak NG's English phoneme names -> the CMU phone set of the en-US acoustic model.
_ESPEAK_TO_CMU: Final = {
    "a": "AE", "a#": "AH", "A:": "AA", "A@": "AA R", "0": "AA", "O": "AO", "O:": "AO",
    "O2": "AO", "O@": "AO R", "o@": "AO R", "aU": "AW", "aI": "AY", "aI@": "AY ER",
    "aU@": "AW ER", "@": "AH", "@2": "AH", "@5": "AH", "@L": "AH L", "3": "ER", "3:": "ER",
    "V": "AH", "E": "EH", "E2": "EH", "E#": "EH", "e@": "EH R", "eI": "EY", "I": "IH",
    "I2": "IH", "I#": "IH", "i": "IY", "i:": "IY", "i@": "IY R", "i@3": "IY R", "oU": "OW",
    "OI": "OY", "U": "UH", "u:": "UW", "U@": "UH R", "n-": "AH N", "m-": "AH M",
    "l-": "AH L", "b": "B", "d": "D", "f": "F", "g": "G", "h": "HH", "k": "K", "l": "L",
    "m": "M", "n": "N", "p": "P", "r": "R", "r-": "R", "s": "S", "t": "T", "v": "V",
    "w": "W", "z": "Z", "tS": "CH", "dZ": "JH", "S": "SH", "Z": "ZH", "T": "TH", "D": "DH",
    "N": "NG", "j": "Y", "?": "T", "t#": "T", "d#": "D", "x": "K", "z#": "Z",
}


def arpabet(espeak_phonemes: list[str]) -> str:
    """eSpeak NG phonemes ("b 'oU b @") as CMU phones ("B OW B AH"); unknown ones dropped."""
    phones: list[str] = []
    for raw in espeak_phonemes:
        name = raw.strip("',;%=")
        mapped = _ESPEAK_TO_CMU.get(name) or _ESPEAK_TO_CMU.get(name.rstrip(":"))
        if mapped:
            phones += mapped.split()
        elif name:
            log.debug("speech: no CMU phone for eSpeak phoneme %r", name)
    return " ".join(phones)


@functools.cache
def _model_dir() -> Path:
    try:
        import pocketsphinx
    except ImportError as exc:
        raise SpeechUnavailable(
            "PocketSphinx is not installed: pip install 'bobarista[speech]'"
        ) from exc
    return Path(pocketsphinx.get_model_path()) / "en-us"


@functools.cache
def _cmu_dictionary() -> dict[str, list[str]]:
    """The CMU pronouncing dictionary shipped with the model. Only each word's first
    pronunciation is used: the alternatives cost more accuracy than they bring (73 %
    understood with them, 77 % without, on tests/speech/accuracy.py)."""
    entries: dict[str, list[str]] = {}
    with open(_model_dir() / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            word, _, phones = line.strip().partition(" ")
            if phones:
                entries.setdefault(word.split("(")[0], []).append(phones)
    return entries


class Recognized:
    """What was heard: the words, or None when nothing in the grammar fitted."""

    __slots__ = ("cpu_seconds", "text")

    def __init__(self, text: str | None, cpu_seconds: float) -> None:
        self.text = text
        self.cpu_seconds = cpu_seconds

    def __repr__(self) -> str:
        return f"Recognized({self.text!r})"


class Recognizer:
    """The pronunciations and grammars of one menu; makes one decoder per call."""

    def __init__(self, menu: Menu, synthesizer: Synthesizer) -> None:
        self.menu = menu
        model = _model_dir()
        cmu = _cmu_dictionary()
        lines = []
        for word in sorted(vocabulary(menu)):
            phones = (cmu.get(word) or [arpabet(synthesizer.phonemes(word))])[0]
            if not phones:
                raise SpeechUnavailable(f"no pronunciation for the menu word {word!r}")
            lines.append(f"{word} {phones}")
        self._dir = tempfile.TemporaryDirectory(prefix="boba-speech-")
        self.dictionary = Path(self._dir.name) / "menu.dict"
        self.dictionary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.acoustic_model = model / "en-us"
        self._grammars: dict[Listen, str] = {}
        self._lock = threading.Lock()

    def grammar(self, listen: Listen) -> str:
        with self._lock:
            text = self._grammars.get(listen)
            if text is None:
                text = self._grammars[listen] = grammar(self.menu, listen)
            return text

    def decoder(self) -> CallDecoder:
        """A decoder for one call (blocking: ~0.1 s; call it from a worker thread)."""
        return CallDecoder(self)

    def close(self) -> None:
        self._dir.cleanup()


class CallDecoder:
    """One call's PocketSphinx decoder; `recognize` blocks (run it in a worker thread)."""

    def __init__(self, recognizer: Recognizer) -> None:
        from pocketsphinx import Config, Decoder

        self._recognizer = recognizer
        config = Config(
            hmm=str(recognizer.acoustic_model), dict=str(recognizer.dictionary), lm=None,
            samprate=SAMPLE_RATE, loglevel="FATAL",
            # The lattice pass over a grammar's search graph costs 50x the search itself
            # and changes nothing we use: keep the Viterbi best path.
            bestpath=False,
        )
        self._decoder = Decoder(config)
        self._searches: set[Listen] = set()

    def recognize(self, pcm: npt.NDArray[np.int16], listen: Listen) -> Recognized:
        """The words of one utterance (16 kHz int16), within what `listen` allows."""
        started = time_cpu()
        name = f"listen{listen.value}"
        if listen not in self._searches:
            self._decoder.add_jsgf_string(name, self._recognizer.grammar(listen))
            self._searches.add(listen)
        self._decoder.activate_search(name)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.astype("<i2").tobytes(), full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        return Recognized(text or None, time_cpu() - started)


def time_cpu() -> float:
    """CPU time of this thread: what recognition costs, whatever else the process does."""
    return time.thread_time()
