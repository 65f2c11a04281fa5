"""Telephony audio: G.711 μ-law, a streaming polyphase resampler, Twilio 160-byte framing.

Everything here is pure: state is a frozen value passed in and handed back, so a call's audio
path can be replayed, tested chunk by chunk, and reset on barge-in by dropping a value.

- μ-law uses two lookup tables (256 codes to decode, 65,536 int16 inputs to encode) that are
  bit-exact with the old `audioop.ulaw2lin` / `audioop.lin2ulaw` (gone in Python 3.13). Like
  audioop, the encoder works on the sample shifted right by 2 (a 14-bit value, arithmetic
  shift), which is where it differs from the ITU G.191 reference on some negative inputs.
- The resampler is a causal polyphase FIR for any rational ratio L/M, designed with
  `scipy.signal.kaiserord` + `firwin` for at least 70 dB of stopband. Feeding a signal in any
  chunking gives the same output as feeding it whole (float64 inside; int16 results agree to
  within 1 LSB, in practice exactly). Nothing is held back: every call returns every output
  sample its input determines, and the only latency is the filter's group delay
  (`Resampler.delay_seconds`, about 1.8 ms for the telephony ratios).
- Framing keeps μ-law output in multiples of 160 bytes (20 ms at 8 kHz) with the remainder in
  `FramerState`, and `flush_ulaw` pads the last partial frame with μ-law silence.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from math import gcd
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
from scipy import signal

from boba_proto.errors import LocalProtocolError

__all__ = [
    "AGENT_INPUT_RATE",
    "AGENT_OUTPUT_RATE",
    "STOPBAND_DB",
    "TWILIO_FRAME_BYTES",
    "TWILIO_RATE",
    "ULAW_SILENCE",
    "FilterSpec",
    "FramerState",
    "Resampler",
    "ResamplerState",
    "agent_to_caller",
    "agent_to_caller_batch",
    "caller_to_agent",
    "caller_to_agent_batch",
    "filter_spec",
    "flush_ulaw",
    "frame_ulaw",
    "resampler",
    "ulaw_decode",
    "ulaw_encode",
]

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]

ULAW_SILENCE: Final = 0xFF
"""The μ-law code of linear 0 (audioop encodes 0 as 0xFF)."""
TWILIO_FRAME_BYTES: Final = 160
"""One Twilio media frame: 20 ms of μ-law at 8 kHz."""
TWILIO_RATE: Final = 8000
AGENT_INPUT_RATE: Final = 48000
"""What we send the agent in `BOBA_AUDIO=linear16` (CONTRACT §2): linear16 at 48 kHz."""
AGENT_OUTPUT_RATE: Final = 24000
"""What the agent speaks in `BOBA_AUDIO=linear16`: linear16 at 24 kHz."""
STOPBAND_DB: Final = 70.0
"""Every resampler filter is verified to attenuate its stopband at least this much."""

_PCM16_LE: Final = np.dtype("<i2")


# --------------------------------------------------------------------------- G.711 μ-law


def _ulaw_decode_table() -> Int16Array:
    """The 256-entry decode table, computed like audioop's `st_ulaw2linear16`."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    table = np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)
    table.flags.writeable = False
    return table


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """The 65,536-entry encode table indexed by `int16.view(uint16)`, like audioop's
    `lin2ulaw`: the 16-bit sample is shifted right by 2 (arithmetic) and then encoded by
    `st_14linear2ulaw` (bias 33, clip at 8159, 8 segments)."""
    pcm14 = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 2
    negative = pcm14 < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.where(negative, -pcm14, pcm14), 8159) + 33
    # Segment = number of bits above the 6 lowest: 0x3F -> 0, 0x7F -> 1, ... 0x1FFF -> 7.
    segment = np.searchsorted(
        np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), magnitude
    )
    # Clipped magnitudes reach 8159 + 33 = 0x2000, past the last segment: audioop's "segment 8".
    mantissa = (magnitude >> (np.minimum(segment, 7) + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F ^ mask, ((segment << 4) | mantissa) ^ mask)
    table = code.astype(np.uint8)
    table.flags.writeable = False
    return table


_ULAW_DECODE: Final = _ulaw_decode_table()
_ULAW_ENCODE: Final = _ulaw_encode_table()


def ulaw_decode(data: bytes) -> Int16Array:
    """μ-law bytes to int16 samples (one per byte), exactly as `audioop.ulaw2lin(data, 2)`."""
    codes = np.frombuffer(data, dtype=np.uint8)
    decoded: Int16Array = _ULAW_DECODE[codes]
    return decoded


def ulaw_encode(pcm: Int16Array) -> bytes:
    """int16 samples to μ-law bytes, exactly as `audioop.lin2ulaw(pcm.tobytes(), 2)`."""
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise LocalProtocolError(
            f"ulaw_encode takes a 1-D int16 array, got {pcm.ndim}-D {pcm.dtype}"
        )
    return _ULAW_ENCODE[pcm.view(np.uint16)].tobytes()


# --------------------------------------------------------------------------- resampler


class FilterSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The design of one rate conversion, kept so docs and tests can quote it.

    The low-pass runs at `in_rate * up`. Its cutoff sits at the Nyquist frequency of the
    lower of the two rates, with a transition band of ±15 % around it: for anything touching
    8 kHz that is pass 3.4 kHz / stop 4.6 kHz, the telephony band. Going down, the band
    4.0-4.6 kHz is only partly suppressed, but it folds onto 3.4-4.0 kHz, above the band a
    phone carries; everything from 4.6 kHz up is at least `STOPBAND_DB` down.
    """

    in_rate: int
    out_rate: int
    up: int
    down: int
    pass_hz: float
    stop_hz: float
    kaiser_beta: float
    num_taps: int
    stopband_db: float  # measured attenuation (positive dB) over [stop_hz, in_rate*up/2]

    @property
    def delay_seconds(self) -> float:
        """Group delay of the linear-phase filter: (N - 1) / 2 samples at the filter rate."""
        return (self.num_taps - 1) / 2 / (self.in_rate * self.up)


def _measured_stopband_db(taps: Float64Array, rate: float, stop_hz: float) -> float:
    """Worst attenuation over the stopband, from a 16x oversampled FFT, re the DC gain."""
    nfft = max(1 << 16, 1 << int(np.ceil(np.log2(16 * len(taps)))))
    response = np.abs(np.fft.rfft(taps, nfft))
    freqs = np.arange(len(response)) * (rate / nfft)
    worst = float(response[freqs >= stop_hz].max())
    return float(-20.0 * np.log10(worst / abs(float(taps.sum()))))


@functools.cache
def _design(in_rate: int, out_rate: int) -> tuple[FilterSpec, Float64Array]:
    """Design the anti-alias / anti-image filter for in_rate -> out_rate (pure, so cached).

    `kaiserord` is an estimate; the attenuation asked of it is raised in 0.5 dB steps until
    the measured stopband reaches `STOPBAND_DB`.
    """
    if in_rate <= 0 or out_rate <= 0:
        raise LocalProtocolError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
    common = gcd(in_rate, out_rate)
    up, down = out_rate // common, in_rate // common
    if up == down == 1:
        spec = FilterSpec(
            in_rate=in_rate, out_rate=out_rate, up=1, down=1, pass_hz=in_rate / 2,
            stop_hz=in_rate / 2, kaiser_beta=0.0, num_taps=1, stopband_db=float("inf"),
        )
        identity = np.ones(1)
        identity.flags.writeable = False
        return spec, identity
    filter_rate = in_rate * up
    edge = min(in_rate, out_rate) / 2
    pass_hz, stop_hz = 0.85 * edge, 1.15 * edge
    asked_db = STOPBAND_DB
    while True:
        num_taps, beta = signal.kaiserord(asked_db, (stop_hz - pass_hz) / (filter_rate / 2))
        num_taps |= 1  # odd: a whole-sample delay at the filter rate
        taps = signal.firwin(
            num_taps, (pass_hz + stop_hz) / 2, window=("kaiser", beta), fs=filter_rate
        ).astype(np.float64)
        measured = _measured_stopband_db(taps, filter_rate, stop_hz)
        if measured >= STOPBAND_DB:
            break
        asked_db += 0.5
    taps = taps * up  # zero-stuffing by `up` divides the gain by `up`
    taps.flags.writeable = False
    spec = FilterSpec(
        in_rate=in_rate, out_rate=out_rate, up=up, down=down, pass_hz=pass_hz, stop_hz=stop_hz,
        kaiser_beta=float(beta), num_taps=num_taps, stopband_db=measured,
    )
    return spec, taps


def filter_spec(in_rate: int, out_rate: int) -> FilterSpec:
    """The filter design used for in_rate -> out_rate."""
    return _design(in_rate, out_rate)[0]


class ResamplerState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a stream's resampler carries from one chunk to the next.

    `history` holds the last `taps_per_phase - 1` input samples (int16 little-endian), `phase`
    is where the next output falls, in filter-rate samples past the start of the next chunk
    (0 <= phase < down), and `pending` is an odd trailing byte of linear16 input that
    `process_bytes` could not use yet (a sample split across two network chunks).
    """

    in_rate: int
    out_rate: int
    history: bytes
    phase: int = 0
    pending: bytes = b""


class Resampler:
    """An immutable polyphase FIR rate converter for one (in_rate, out_rate) pair.

    Output sample k is sum_j h[j] * x_up[k*down - j], with x_up the input zero-stuffed by
    `up`; the polyphase matrix keeps only the taps that meet non-zero samples, so each
    output costs `taps_per_phase` multiply-adds. Use `resampler(in, out)` to share designs.
    """

    __slots__ = (
        "_batch_block", "_blocks", "_by_phase", "_by_phase_t", "_spec", "_taps", "_taps_per_phase",
    )

    def __init__(self, in_rate: int, out_rate: int) -> None:
        spec, taps = _design(in_rate, out_rate)
        up = spec.up
        per_phase = -(-len(taps) // up)
        padded = np.zeros(per_phase * up)
        padded[: len(taps)] = taps
        # by_phase[p, j] multiplies window sample j of x[m - Q + 1 .. m], i.e. tap p + (Q-1-j)*up.
        by_phase = np.ascontiguousarray(padded.reshape(per_phase, up).T[:, ::-1])
        by_phase.flags.writeable = False
        by_phase_t = np.ascontiguousarray(by_phase.T)
        by_phase_t.flags.writeable = False
        self._spec = spec
        self._taps = taps
        self._taps_per_phase = per_phase
        self._by_phase: Float64Array = by_phase
        self._by_phase_t: Float64Array = by_phase_t
        self._blocks: tuple[Float64Array, ...] = ()
        self._batch_block: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
        if spec.up == 1 or spec.down == 1:
            self._blocks = _block_toeplitz(by_phase_t, spec.down)
            self._batch_block = _toeplitz(by_phase_t, spec.down, _BATCH_BLOCK).astype(np.float32)
            self._batch_block.flags.writeable = False

    def __repr__(self) -> str:
        s = self._spec
        return (
            f"Resampler({s.in_rate} -> {s.out_rate}: x{s.up}/{s.down}, {s.num_taps} taps, "
            f"{self.delay_seconds * 1e3:.3f} ms)"
        )

    @property
    def spec(self) -> FilterSpec:
        return self._spec

    @property
    def taps(self) -> Float64Array:
        """The prototype filter at `in_rate * up` (read-only; gain `up` included)."""
        return self._taps

    @property
    def in_rate(self) -> int:
        return self._spec.in_rate

    @property
    def out_rate(self) -> int:
        return self._spec.out_rate

    @property
    def taps_per_phase(self) -> int:
        return self._taps_per_phase

    @property
    def delay_seconds(self) -> float:
        """How far the output lags the input: the filter's group delay, nothing buffered."""
        return self._spec.delay_seconds

    def initial_state(self) -> ResamplerState:
        """The state of a stream that starts from silence."""
        return ResamplerState(
            in_rate=self.in_rate,
            out_rate=self.out_rate,
            history=bytes(2 * (self._taps_per_phase - 1)),
        )

    @property
    def batchable(self) -> bool:
        """Whether `process_batch` applies (pure interpolation or pure decimation)."""
        return bool(self._blocks)

    def output_length(self, input_length: int, state: ResamplerState) -> int:
        """How many samples `process` returns for `input_length` samples in this state."""
        ahead = input_length * self._spec.up - state.phase
        return max(0, -(-ahead // self._spec.down))

    def process(
        self, samples: Int16Array, state: ResamplerState
    ) -> tuple[Int16Array, ResamplerState]:
        """Resample one chunk of int16 samples; returns int16 output and the next state."""
        self._check(state)
        if state.pending:
            raise LocalProtocolError(
                "this stream has an odd byte pending from process_bytes; keep using bytes"
            )
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise LocalProtocolError(
                f"Resampler.process takes a 1-D int16 array, got {samples.ndim}-D {samples.dtype}"
            )
        output, history, phase = self._run(samples, state)
        return output, ResamplerState(
            in_rate=state.in_rate, out_rate=state.out_rate, history=history, phase=phase
        )

    def process_bytes(self, data: bytes, state: ResamplerState) -> tuple[bytes, ResamplerState]:
        """Resample linear16 little-endian bytes; an odd trailing byte waits in the state."""
        output, state = self.process_pcm16(data, state)
        return output.astype(_PCM16_LE, copy=False).tobytes(), state

    def process_pcm16(
        self, data: bytes, state: ResamplerState
    ) -> tuple[Int16Array, ResamplerState]:
        """Like `process_bytes`, but the output stays an int16 array (to feed an encoder)."""
        self._check(state)
        if state.pending:
            data = state.pending + data
        usable = len(data) & ~1
        samples = np.frombuffer(data, dtype=_PCM16_LE, count=usable // 2)
        output, history, phase = self._run(samples, state)
        return output, ResamplerState(
            in_rate=state.in_rate,
            out_rate=state.out_rate,
            history=history,
            phase=phase,
            pending=data[usable:],
        )

    def process_batch(
        self, frames: Int16Array, states: Sequence[ResamplerState]
    ) -> tuple[Int16Array, list[ResamplerState]]:
        """Resample one frame for each of many streams at once: row i of `frames` (C x n
        int16) continues `states[i]`. One float32 GEMM against a blocked Toeplitz matrix
        does all rows, so numpy's per-call overhead is paid once per tick; the result equals
        `process` row by row within 1 LSB (float32 rounding; almost always exactly).

        Every state must be at the same `phase` with nothing pending (streams fed whole
        frames, e.g. 20 ms each, always are); only pure interpolation or decimation ratios.
        """
        if not self._blocks:
            raise LocalProtocolError(f"process_batch needs L == 1 or M == 1, not {self!r}")
        if frames.dtype != np.int16 or frames.ndim != 2 or len(frames) != len(states):
            raise LocalProtocolError(
                f"process_batch takes a C x n int16 array and C states, got "
                f"{frames.ndim}-D {frames.dtype} with {len(frames)} rows for {len(states)} states"
            )
        if not states:
            return np.empty((0, 0), dtype=np.int16), []
        phase = states[0].phase
        for state in states:
            self._check(state)
            if state.phase != phase or state.pending:
                raise LocalProtocolError(
                    "process_batch needs every stream at the same phase with no pending byte"
                )
        up, down, q = self._spec.up, self._spec.down, self._taps_per_phase
        calls, n = frames.shape
        count = self.output_length(n, states[0])
        rows = n if down == 1 else count
        whole, left = divmod(rows, _BATCH_BLOCK)
        row_len = q - 1 + n
        extended = np.empty((calls, row_len), dtype=np.float32)
        history = np.frombuffer(b"".join(s.history for s in states), dtype=_PCM16_LE)
        extended[:, : q - 1] = history.reshape(calls, q - 1)
        extended[:, q - 1 :] = frames
        width = up if down == 1 else 1
        step = extended.strides[1]
        parts: list[npt.NDArray[np.floating[Any]]] = []
        if whole:
            # Block j of a row is the input span its _BATCH_BLOCK rows of windows cover; the
            # reshape copies the overlapping blocks into one matrix, and one GEMM does all.
            span, reach = _BATCH_BLOCK * down, self._batch_block.shape[0]
            blocks = np.ndarray(
                (calls, whole, reach), np.float32, extended, phase * step,
                (row_len * step, span * step, step),
            )
            acc = blocks.reshape(calls * whole, reach) @ self._batch_block
            parts.append(acc.reshape(calls, whole * _BATCH_BLOCK * width))
        if left:
            offset = (phase + whole * _BATCH_BLOCK * down) * step
            tail = np.ndarray(
                (calls, left, q), np.float32, extended, offset,
                (row_len * step, down * step, step),
            )
            parts.append((tail @ self._batch_block[:q, :width]).reshape(calls, -1))
        if not parts:
            parts.append(np.empty((calls, 0), dtype=np.float32))
        filtered = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        np.rint(filtered, out=filtered)
        filtered.clip(-32768.0, 32767.0, out=filtered)
        kept = extended[:, n : q - 1 + n].astype(_PCM16_LE).tobytes()
        size = 2 * (q - 1)
        next_phase = phase + count * down - n * up
        new_states = [
            ResamplerState(
                in_rate=self.in_rate, out_rate=self.out_rate,
                history=kept[i * size : (i + 1) * size], phase=next_phase,
            )
            for i in range(calls)
        ]
        return filtered.astype(np.int16), new_states

    def _check(self, state: ResamplerState) -> None:
        if (state.in_rate, state.out_rate) != (self.in_rate, self.out_rate):
            raise LocalProtocolError(
                f"state of a {state.in_rate} -> {state.out_rate} stream passed to the "
                f"{self.in_rate} -> {self.out_rate} resampler"
            )
        if len(state.history) != 2 * (self._taps_per_phase - 1) or not (
            0 <= state.phase < self._spec.down
        ):
            raise LocalProtocolError("corrupt ResamplerState: history length or phase is off")

    def _run(
        self, samples: npt.NDArray[np.signedinteger[Any]], state: ResamplerState
    ) -> tuple[Int16Array, bytes, int]:
        """Filter one chunk. The window for output i is x_ext[m_i : m_i + Q], where x_ext is
        the kept history followed by the chunk and m_i the chunk index of its newest input."""
        up, down, q = self._spec.up, self._spec.down, self._taps_per_phase
        n = len(samples)
        count = self.output_length(n, state)
        # Room past the end lets whole Toeplitz blocks read zeros that meet zero taps.
        extended = np.zeros(q - 1 + n + _BLOCK * max(up, down) + q)
        extended[: q - 1] = np.frombuffer(state.history, dtype=_PCM16_LE)
        extended[q - 1 : q - 1 + n] = samples
        new_history = extended[n : q - 1 + n].astype(_PCM16_LE).tobytes()
        next_phase = state.phase + count * down - n * up
        if count == 0:
            return np.empty(0, dtype=np.int16), new_history, next_phase
        if self._blocks:
            # Pure interpolation (phase always 0; `up` outputs per input row) or pure
            # decimation (one output per row, rows `down` apart, starting at `phase`).
            rows = n if down == 1 else count
            filtered = _rows_times(extended, state.phase, down, rows, q, self._by_phase_t,
                                   self._blocks)
        else:
            # General L/M: gather each output's window and its phase's taps.
            t = state.phase + down * np.arange(count)
            newest = t // up
            windows = extended[newest[:, None] + np.arange(q)]
            filtered = np.einsum("ij,ij->i", self._by_phase[t % up], windows)
        np.rint(filtered, out=filtered)
        filtered.clip(-32768.0, 32767.0, out=filtered)
        return filtered.astype(np.int16), new_history, next_phase


_BLOCK: Final = 32
"""Rows per Toeplitz block: a 20 ms frame at 8, 16, 24 or 48 kHz is a whole number of them."""


_BATCH_BLOCK: Final = 8
"""Rows per block in `process_batch`: small blocks keep the Toeplitz matrix dense (81 % for
the bridge's filters) while one GEMM still has a large inner dimension."""


def _toeplitz(coef: Float64Array, stride: int, block: int) -> Float64Array:
    """T with `x[j*stride*block : ... + T.shape[0]] @ T` = rows j*block .. j*block+block-1 of
    `Y[r] = x[r*stride : r*stride + Q] @ coef` (coef is Q x P), laid out row-major."""
    q, p = coef.shape
    full = np.zeros(((block - 1) * stride + q, block * p))
    for i in range(block):
        full[i * stride : i * stride + q, i * p : (i + 1) * p] = coef
    full.flags.writeable = False
    return full


def _block_toeplitz(coef: Float64Array, stride: int) -> tuple[Float64Array, ...]:
    """Split the product `Y[r] = x[r*stride : r*stride + Q] @ coef` (coef is Q x P) into
    non-overlapping input blocks of _BLOCK*stride samples, so each term is one contiguous
    GEMM: Y_blocks = sum_c X_c @ T_c, with X_c the input reshaped into blocks shifted by c."""
    dense = _toeplitz(coef, stride, _BLOCK)
    span = _BLOCK * stride
    terms = -(-dense.shape[0] // span)
    full = np.zeros((terms * span, dense.shape[1]))
    full[: dense.shape[0]] = dense
    parts = tuple(np.ascontiguousarray(full[c * span : (c + 1) * span]) for c in range(terms))
    for part in parts:
        part.flags.writeable = False
    return parts


def _rows_times(
    extended: Float64Array, start: int, stride: int, rows: int, q: int, coef: Float64Array,
    blocks: tuple[Float64Array, ...],
) -> Float64Array:
    """All rows of `extended[start + r*stride : ... + q] @ coef`, raveled (r major)."""
    step = extended.strides[0]
    span = _BLOCK * stride
    whole = rows // _BLOCK
    out: list[Float64Array] = []
    if whole:
        shape, strides = (whole, span), (span * step, step)
        acc = np.ndarray(shape, np.float64, extended, start * step, strides) @ blocks[0]
        for c, part in enumerate(blocks[1:], start=1):
            offset = (start + c * span) * step
            acc += np.ndarray(shape, np.float64, extended, offset, strides) @ part
        out.append(acc.ravel())
    left = rows - whole * _BLOCK
    if left:
        offset = (start + whole * span) * step
        tail = np.ndarray((left, q), np.float64, extended, offset, (stride * step, step))
        out.append((tail @ coef).ravel())
    return out[0] if len(out) == 1 else np.concatenate(out)


@functools.cache
def resampler(in_rate: int, out_rate: int) -> Resampler:
    """The shared (immutable) resampler for a rate pair."""
    return Resampler(in_rate, out_rate)


def caller_to_agent(
    ulaw: bytes, state: ResamplerState, *, agent_rate: int = AGENT_INPUT_RATE
) -> tuple[bytes, ResamplerState]:
    """Twilio μ-law 8 kHz to linear16 LE at `agent_rate` (start from
    `resampler(8000, agent_rate).initial_state()`)."""
    output, state = resampler(TWILIO_RATE, agent_rate).process(ulaw_decode(ulaw), state)
    return output.astype(_PCM16_LE, copy=False).tobytes(), state


def agent_to_caller(
    pcm: bytes, state: ResamplerState, *, agent_rate: int = AGENT_OUTPUT_RATE
) -> tuple[bytes, ResamplerState]:
    """Agent linear16 LE at `agent_rate` to μ-law 8 kHz (start from
    `resampler(agent_rate, 8000).initial_state()`). An odd trailing byte waits in the state.
    Pass the result through `frame_ulaw` to get whole Twilio frames."""
    converted, state = resampler(agent_rate, TWILIO_RATE).process_pcm16(pcm, state)
    return ulaw_encode(converted), state


def caller_to_agent_batch(
    frames: Sequence[bytes], states: Sequence[ResamplerState], *, agent_rate: int = AGENT_INPUT_RATE
) -> tuple[list[bytes], list[ResamplerState]]:
    """`caller_to_agent` for many calls' equal-length μ-law frames in one tick."""
    if not frames:
        return [], []
    size = len(frames[0])
    if any(len(frame) != size for frame in frames):
        raise LocalProtocolError("caller_to_agent_batch needs frames of one length")
    pcm = ulaw_decode(b"".join(frames)).reshape(len(frames), size)
    output, new_states = resampler(TWILIO_RATE, agent_rate).process_batch(pcm, states)
    raw = output.astype(_PCM16_LE, copy=False).tobytes()
    width = 2 * output.shape[1]
    return [raw[i * width : (i + 1) * width] for i in range(len(frames))], new_states


def agent_to_caller_batch(
    chunks: Sequence[bytes], states: Sequence[ResamplerState], *,
    agent_rate: int = AGENT_OUTPUT_RATE,
) -> tuple[list[bytes], list[ResamplerState]]:
    """`agent_to_caller` for many calls' equal-length, even-length linear16 chunks at once."""
    if not chunks:
        return [], []
    size = len(chunks[0])
    if size % 2 or any(len(chunk) != size for chunk in chunks):
        raise LocalProtocolError("agent_to_caller_batch needs chunks of one even length")
    pcm = np.frombuffer(b"".join(chunks), dtype=_PCM16_LE).reshape(len(chunks), size // 2)
    output, new_states = resampler(agent_rate, TWILIO_RATE).process_batch(
        pcm.astype(np.int16, copy=False), states
    )
    encoded = ulaw_encode(output.ravel())
    width = output.shape[1]
    return [encoded[i * width : (i + 1) * width] for i in range(len(chunks))], new_states


# --------------------------------------------------------------------------- framing


class FramerState(msgspec.Struct, frozen=True):
    """μ-law bytes held back because they do not fill a whole frame yet (< frame_bytes)."""

    held: bytes = b""


def frame_ulaw(
    data: bytes, state: FramerState, *, frame_bytes: int = TWILIO_FRAME_BYTES
) -> tuple[bytes, FramerState]:
    """Return the whole frames in held + data (length a multiple of `frame_bytes`) and keep
    the rest for the next chunk."""
    if frame_bytes <= 0 or len(state.held) >= frame_bytes:
        raise LocalProtocolError(
            f"frame_ulaw: {len(state.held)} bytes held for {frame_bytes}-byte frames"
        )
    joined = state.held + data if state.held else data
    whole = len(joined) - len(joined) % frame_bytes
    return joined[:whole], FramerState(joined[whole:])


def flush_ulaw(
    state: FramerState, *, frame_bytes: int = TWILIO_FRAME_BYTES
) -> tuple[bytes, FramerState]:
    """End of an utterance: the held bytes padded with μ-law silence to one whole frame
    (b"" when nothing is held), and an empty state."""
    if len(state.held) >= frame_bytes:
        raise LocalProtocolError(
            f"flush_ulaw: {len(state.held)} bytes held for {frame_bytes}-byte frames"
        )
    if not state.held:
        return b"", FramerState()
    padding = bytes([ULAW_SILENCE]) * (frame_bytes - len(state.held))
    return state.held + padding, FramerState()
