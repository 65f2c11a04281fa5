"""eSpeak NG speech synthesis through ctypes (the library and its data ship in the
`espeakng-loader` wheel, `pip install .[speech]`; nothing is downloaded).

libespeak-ng keeps one global synthesizer per process and is not re-entrant, so a
`Synthesizer` owns it behind a lock: calls are serialised, each runs in a worker thread
(the caller does `trio.to_thread.run_sync(synth.speak, ...)`), never on the trio loop.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["SpeechUnavailable", "Synthesizer", "Voice"]

_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_ESPEAK_RATE: Final = 1
_ESPEAK_VOLUME: Final = 2
_ESPEAK_PITCH: Final = 3
_CHARS_UTF8: Final = 1
_END_PAUSE: Final = 0x1000
_EE_OK: Final = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class SpeechUnavailable(RuntimeError):
    """The offline speech engines are not installed (or failed to load) on this host."""


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG voice: its name (`en-us`, `en+f3`...), words per minute and pitch 0-99."""

    name: str = "en-us"
    words_per_minute: int = 165
    pitch: int = 50


class Synthesizer:
    """Text to int16 PCM at `sample_rate` (22050 Hz for eSpeak NG's voices)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise SpeechUnavailable(
                "eSpeak NG is not installed: pip install 'bobarista[speech]'"
            ) from exc
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise SpeechUnavailable(f"libespeak-ng failed to load: {exc}") from exc
        data_path = espeakng_loader.get_data_path().encode()
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                              ctypes.c_int]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if rate <= 0:
            raise SpeechUnavailable(f"eSpeak NG failed to initialise (data in {data_path!r})")
        self.sample_rate: int = rate
        self._lib = lib
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []

        def collect(wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
            if count > 0:
                self._chunks.append(ctypes.string_at(wav, count * 2))
            return 0  # 0 = go on

        self._callback = _SynthCallback(collect)  # kept alive as long as the library uses it
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: Voice | None = None

    def speak(self, text: str, voice: Voice = Voice()) -> npt.NDArray[np.int16]:
        """The whole of `text` spoken, as int16 samples at `self.sample_rate` (blocking)."""
        data = text.encode("utf-8") + b"\0"
        with self._lock:
            if voice != self._voice:
                if self._lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                    raise ValueError(f"eSpeak NG has no voice {voice.name!r}")
                self._lib.espeak_SetParameter(_ESPEAK_RATE, voice.words_per_minute, 0)
                self._lib.espeak_SetParameter(_ESPEAK_PITCH, voice.pitch, 0)
                self._voice = voice
            self._chunks = []
            status = self._lib.espeak_Synth(data, len(data), 0, 0, 0,
                                            _CHARS_UTF8 | _END_PAUSE, None, None)
            self._lib.espeak_Synchronize()
            pcm, self._chunks = b"".join(self._chunks), []
        if status != _EE_OK:
            raise RuntimeError(f"eSpeak NG could not speak that (status {status})")
        return np.frombuffer(pcm, dtype="<i2").astype(np.int16)

    def phonemes(self, word: str, voice: str = "en-us") -> list[str]:
        """eSpeak NG's phonemes for `word` (its ASCII names, stress marks kept), for words
        the recogniser's dictionary lacks ("boba", "matcha")."""
        with self._lock:
            if self._voice is None or self._voice.name != voice:
                if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                    raise ValueError(f"eSpeak NG has no voice {voice!r}")
                self._voice = None
            text = ctypes.c_char_p(word.encode("utf-8"))
            out: list[str] = []
            while text.value:  # one call per clause
                result = self._lib.espeak_TextToPhonemes(ctypes.byref(text), _CHARS_UTF8,
                                                         ord(" ") << 8)
                out += (result or b"").decode("utf-8", "replace").split()
        return out
