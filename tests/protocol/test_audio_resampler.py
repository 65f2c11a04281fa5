"""The streaming polyphase resampler: chunking invariance, exactness, quality, latency."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from boba_proto.audio import (
    STOPBAND_DB,
    Resampler,
    ResamplerState,
    agent_to_caller,
    agent_to_caller_batch,
    caller_to_agent,
    caller_to_agent_batch,
    resampler,
    ulaw_decode,
    ulaw_encode,
)
from boba_proto.errors import LocalProtocolError

REQUIRED = [(8000, 48000), (24000, 8000), (8000, 16000), (48000, 8000), (22050, 8000)]
EXTRA = [(16000, 8000), (8000, 24000), (44100, 48000), (16000, 24000)]
TONE_AMPLITUDE = 16384.0  # -6 dBFS


def _noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20001, n).astype(np.int16)


def _in_chunks(r: Resampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    state, out, start = r.initial_state(), [], 0
    for size in [*sizes, len(x)]:  # the last entry sweeps up whatever is left
        piece = x[start : start + size]
        start += len(piece)
        y, state = r.process(piece, state)
        out.append(y)
    return np.concatenate(out)


def _whole(r: Resampler, x: np.ndarray) -> np.ndarray:
    return r.process(x, r.initial_state())[0]


def _tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    n = np.arange(round(rate * seconds))
    return np.rint(TONE_AMPLITUDE * np.cos(2 * np.pi * freq * n / rate)).astype(np.int16)


def _fit(y: np.ndarray, freq: float, rate: int, skip: int) -> tuple[float, float, float]:
    """Least-squares fit of a sinusoid at `freq` after `skip` samples of start-up transient.
    Returns (amplitude, phase lag in radians, RMS of what the sinusoid does not explain)."""
    n = np.arange(skip, len(y))
    basis = np.stack([np.cos(2 * np.pi * freq * n / rate), np.sin(2 * np.pi * freq * n / rate)])
    seg = y[skip:].astype(np.float64)
    (a, b), *_ = np.linalg.lstsq(basis.T, seg, rcond=None)
    residual = seg - basis.T @ np.array([a, b])
    return float(np.hypot(a, b)), float(np.arctan2(b, a)), float(np.sqrt(np.mean(residual**2)))


def _db(ratio: float) -> float:
    return float(20 * np.log10(max(ratio, 1e-12)))


# ------------------------------------------------------------------------ exactness


@pytest.mark.parametrize(("in_rate", "out_rate"), REQUIRED + EXTRA)
def test_whole_signal_equals_scipy_upfirdn_with_the_same_taps(in_rate: int, out_rate: int) -> None:
    r = resampler(in_rate, out_rate)
    x = _noise(in_rate // 5, seed=in_rate + out_rate)
    y = _whole(r, x)
    assert len(y) == -(-len(x) * r.spec.up // r.spec.down)
    reference = signal.upfirdn(r.taps, x.astype(np.float64), r.spec.up, r.spec.down)[: len(y)]
    reference = np.clip(np.rint(reference), -32768, 32767)
    assert np.abs(y.astype(np.int32) - reference).max() <= 1


@pytest.mark.parametrize(("in_rate", "out_rate"), REQUIRED)
@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 900), max_size=20), seed=st.integers(0, 2**16))
def test_any_chunking_gives_the_whole_signal_output_within_1_lsb(
    in_rate: int, out_rate: int, sizes: list[int], seed: int
) -> None:
    r = resampler(in_rate, out_rate)
    x = _noise(4000, seed)
    whole = _whole(r, x)
    chunked = _in_chunks(r, x, sizes)
    assert len(chunked) == len(whole)
    assert np.abs(chunked.astype(np.int32) - whole).max(initial=0) <= 1


def test_state_is_a_value_reusing_it_repeats_the_output() -> None:
    r = resampler(24000, 8000)
    _, state = r.process(_noise(481, 1), r.initial_state())
    chunk = _noise(480, 2)
    first, after_first = r.process(chunk, state)
    second, after_second = r.process(chunk, state)
    np.testing.assert_array_equal(first, second)
    assert after_first == after_second
    assert state.phase != 0  # 481 samples leave the decimator mid-cycle


def test_empty_and_tiny_chunks_produce_exactly_the_determined_outputs() -> None:
    r = resampler(48000, 8000)
    state = r.initial_state()
    total = 0
    for _ in range(13):  # 13 samples in, one at a time
        y, state = r.process(_noise(1, 3), state)
        total += len(y)
    assert total == 3  # outputs at input indices 0, 6, 12
    y, same = r.process(np.zeros(0, dtype=np.int16), state)
    assert len(y) == 0 and same == state


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 1000), max_size=10))  # 500 samples = 1000 bytes
def test_bytes_api_carries_odd_bytes_and_matches_the_array_api(cuts: list[int]) -> None:
    r = resampler(24000, 8000)
    x = _noise(500, 4)
    raw = x.astype("<i2").tobytes()
    state, out = r.initial_state(), []
    for start, stop in zip([0, *sorted(cuts)], [*sorted(cuts), len(raw)], strict=True):
        y, state = r.process_bytes(raw[start:stop], state)
        out.append(y)
        assert len(state.pending) == stop % 2
    assert np.array_equal(np.frombuffer(b"".join(out), "<i2"), _whole(r, x))


def test_call_paths_match_codec_plus_resampler() -> None:
    caller = ulaw_encode(_tone(440, 8000, 0.1))
    to_agent, _ = caller_to_agent(caller, resampler(8000, 48000).initial_state())
    expected = _whole(resampler(8000, 48000), ulaw_decode(caller))
    assert np.array_equal(np.frombuffer(to_agent, "<i2"), expected)

    agent = _tone(440, 24000, 0.1).astype("<i2").tobytes()
    state, parts = resampler(24000, 8000).initial_state(), []
    for start in range(0, len(agent), 333):  # odd cuts: samples split across chunks
        ulaw, state = agent_to_caller(agent[start : start + 333], state)
        parts.append(ulaw)
    assert state.pending == b""
    assert b"".join(parts) == ulaw_encode(_whole(resampler(24000, 8000), _tone(440, 24000, 0.1)))


def test_misuse_is_reported_as_our_fault() -> None:
    up, down = resampler(8000, 48000), resampler(24000, 8000)
    with pytest.raises(LocalProtocolError, match="24000 -> 8000"):
        up.process(_noise(10, 5), down.initial_state())
    with pytest.raises(LocalProtocolError, match="int16"):
        up.process(np.zeros(10), up.initial_state())  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="odd byte"):
        up.process(_noise(10, 5), up.process_bytes(b"\x01", up.initial_state())[1])
    with pytest.raises(LocalProtocolError, match="corrupt"):
        up.process(_noise(10, 5), ResamplerState(in_rate=8000, out_rate=48000, history=b""))
    with pytest.raises(LocalProtocolError, match="positive"):
        Resampler(0, 8000)


def test_equal_rates_pass_samples_through() -> None:
    r = resampler(16000, 16000)
    x = _noise(321, 6)
    assert np.array_equal(_in_chunks(r, x, [5, 100]), x)
    assert r.delay_seconds == 0


# ------------------------------------------------------------------------ quality


@pytest.mark.parametrize(("in_rate", "out_rate"), REQUIRED + EXTRA)
def test_design_reaches_the_stopband_target(in_rate: int, out_rate: int) -> None:
    r = resampler(in_rate, out_rate)
    filter_rate = in_rate * r.spec.up
    freqs, response = signal.freqz(
        r.taps, worN=np.linspace(r.spec.stop_hz, filter_rate / 2, 8000), fs=filter_rate
    )
    worst = _db(float(np.abs(response).max()) / r.spec.up)
    assert STOPBAND_DB >= 70.0  # the design target
    assert r.spec.stopband_db >= STOPBAND_DB
    assert worst <= -STOPBAND_DB + 0.5, f"{worst:.1f} dB at {freqs[np.abs(response).argmax()]} Hz"


def test_24k_to_8k_every_tone_from_4600_to_12000_hz_is_60_db_down() -> None:
    r = resampler(24000, 8000)
    skip = r.taps_per_phase  # start-up transient, in output samples
    worst = (-999.0, 0.0)
    for freq in np.arange(4600.0, 12000.1, 25.0):
        x = _tone(freq, 24000, 0.1)
        y = _whole(r, x)[skip:].astype(np.float64)
        level = _db(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        worst = max(worst, (level, freq))
    assert worst[0] <= -60.0, f"{worst[1]} Hz comes out at {worst[0]:.1f} dB"


def test_8k_to_48k_images_are_60_db_down() -> None:
    r = resampler(8000, 48000)
    for freq in np.arange(300.0, 3401.0, 100.0):
        y = _whole(r, _tone(freq, 8000, 0.25))
        amplitude, _, residual = _fit(y, freq, 48000, skip=r.spec.num_taps)
        images_db = _db(residual / (amplitude / np.sqrt(2)))
        assert images_db <= -60.0, f"{freq} Hz: images at {images_db:.1f} dB"


@pytest.mark.parametrize(("in_rate", "out_rate"), REQUIRED)
def test_telephony_band_is_flat_within_0_1_db(in_rate: int, out_rate: int) -> None:
    r = resampler(in_rate, out_rate)
    skip = 2 * int(r.delay_seconds * out_rate) + 2
    for freq in [300.0, 500.0, 997.0, 1500.0, 2000.0, 2500.0, 3000.0, 3400.0]:
        amplitude, _, _ = _fit(_whole(r, _tone(freq, in_rate, 0.2)), freq, out_rate, skip)
        gain_db = _db(amplitude / TONE_AMPLITUDE)
        assert abs(gain_db) <= 0.1, f"{freq} Hz: {gain_db:+.3f} dB"


@pytest.mark.parametrize(("in_rate", "out_rate"), REQUIRED)
def test_group_delay_is_as_documented_and_at_most_2_ms(in_rate: int, out_rate: int) -> None:
    r = resampler(in_rate, out_rate)
    assert r.delay_seconds <= 0.002
    freq = 400.0  # one period (2.5 ms) is longer than the delay, so the phase is unambiguous
    y = _whole(r, _tone(freq, in_rate, 0.2))
    _, lag, _ = _fit(y, freq, out_rate, skip=int(0.01 * out_rate))
    measured = (lag % (2 * np.pi)) / (2 * np.pi * freq)
    assert measured == pytest.approx(r.delay_seconds, abs=2e-6)


# ------------------------------------------------------------------------ batched


@pytest.mark.parametrize(
    ("in_rate", "out_rate"), [(8000, 48000), (24000, 8000), (8000, 16000), (48000, 8000)]
)
@settings(max_examples=25, deadline=None)
@given(
    calls=st.integers(1, 9),
    frame=st.integers(0, 700),
    warmup=st.integers(0, 700),
    seed=st.integers(0, 2**16),
)
def test_batch_rows_equal_per_call_processing(
    in_rate: int, out_rate: int, calls: int, frame: int, warmup: int, seed: int
) -> None:
    r = resampler(in_rate, out_rate)
    rng = np.random.default_rng(seed)
    states = [  # different histories, same phase (same warm-up length)
        r.process(_noise(warmup, seed + i), r.initial_state())[1] for i in range(calls)
    ]
    frames = rng.integers(-32768, 32768, (calls, frame)).astype(np.int16)
    batch, batch_states = r.process_batch(frames, states)
    for i in range(calls):
        alone, alone_state = r.process(frames[i], states[i])
        assert np.abs(batch[i].astype(np.int32) - alone).max(initial=0) <= 1
        assert batch_states[i] == alone_state


def test_batch_call_paths_match_the_per_call_paths() -> None:
    # The batch runs in float32, so a sample may land 1 LSB away, and then its μ-law code
    # on the neighbouring level; compare in level steps.
    levels = np.unique(ulaw_decode(bytes(range(256))))

    def steps_apart(a: bytes, b: bytes) -> int:
        rank_a = np.searchsorted(levels, ulaw_decode(a))
        rank_b = np.searchsorted(levels, ulaw_decode(b))
        return int(np.abs(rank_a - rank_b).max(initial=0))

    caller = [ulaw_encode(_noise(160, i)) for i in range(5)]
    up_states = [resampler(8000, 48000).initial_state()] * 5
    batch, _ = caller_to_agent_batch(caller, up_states)
    for got, c, s in zip(batch, caller, up_states, strict=True):
        alone = np.frombuffer(caller_to_agent(c, s)[0], "<i2").astype(np.int32)
        assert np.abs(np.frombuffer(got, "<i2") - alone).max() <= 1

    agent = [_noise(480, 10 + i).astype("<i2").tobytes() for i in range(5)]
    down_states = [resampler(24000, 8000).initial_state()] * 5
    ulaw, states = agent_to_caller_batch(agent, down_states)
    for got, a, s in zip(ulaw, agent, down_states, strict=True):
        assert len(got) == 160
        assert steps_apart(got, agent_to_caller(a, s)[0]) <= 1
    assert states[0].phase == 0


def test_batch_refuses_mixed_phases_and_general_ratios() -> None:
    r = resampler(24000, 8000)
    mixed = [r.initial_state(), r.process(_noise(1, 0), r.initial_state())[1]]
    with pytest.raises(LocalProtocolError, match="same phase"):
        r.process_batch(np.zeros((2, 480), dtype=np.int16), mixed)
    odd, up = resampler(22050, 8000), resampler(8000, 48000)
    with pytest.raises(LocalProtocolError, match="L == 1 or M == 1"):
        odd.process_batch(np.zeros((1, 441), dtype=np.int16), [odd.initial_state()])
    with pytest.raises(LocalProtocolError, match="one length"):
        caller_to_agent_batch([b"\xff" * 160, b"\xff"], [up.initial_state()] * 2)
