"""DSP micro-benchmark for one call's audio path, per 20 ms tick (issue 3).

    nox -s bench_dsp                # = python bench/bench_dsp.py --pin (or the args after --)
    python bench/bench_dsp.py [--seconds 10] [--repeats 7] [--pin] [--json FILE]

- IN  (caller -> agent): 160 B μ-law @ 8 kHz -> 1920 B linear16 @ 48 kHz
- OUT (agent -> caller): 960 B linear16 @ 24 kHz -> 160 B μ-law @ 8 kHz (+ 160-byte framing)

Each figure is the median over repeats of the CPU time (`time.process_time`) to stream
`--seconds` of audio frame by frame with fresh state, divided by the number of frames. The
comparison is `scipy.signal.resample_poly` applied to each 20 ms chunk on its own (the
obvious stateless approach), plus `audioop` as a reference when this Python still has it.
It also measures how wrong resample_poly per chunk is at chunk edges, against resample_poly
over the whole signal, and how far our chunked output is from our whole-signal output.
Run it pinned to one core with one BLAS thread for stable numbers (the nox session does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS

import numpy as np
import scipy
from scipy import signal

from boba_proto.audio import (
    FramerState,
    agent_to_caller,
    agent_to_caller_batch,
    caller_to_agent,
    caller_to_agent_batch,
    frame_ulaw,
    resampler,
    ulaw_decode,
    ulaw_encode,
)

FRAME_IN = 160  # μ-law bytes per 20 ms at 8 kHz
FRAME_OUT_SAMPLES = 480  # linear16 samples per 20 ms at 24 kHz
TICK_US = 20_000.0


def _test_audio(seconds: float) -> tuple[bytes, bytes]:
    """Speech-band test content: a few tones plus noise, μ-law at 8 kHz and s16le at 24 kHz."""
    rng = np.random.default_rng(1)

    def make(rate: int) -> np.ndarray:
        t = np.arange(int(seconds * rate)) / rate
        x = sum(a * np.sin(2 * np.pi * f * t) for a, f in [(6000, 310), (4000, 997), (3000, 2400)])
        x = x + rng.normal(0, 800, len(t))
        return np.clip(np.rint(x), -32768, 32767).astype(np.int16)

    return ulaw_encode(make(8000)), make(24000).astype("<i2").tobytes()


def _cpu_us_per_frame(run: Callable[[], int], repeats: int) -> tuple[float, float]:
    """(median, best) CPU µs per frame over the repeats; the best is the figure least
    disturbed by other load on a shared machine (timeit's convention)."""
    run()  # warm-up: first touches of the tables, BLAS and the allocator cost 2-3x
    samples = []
    for _ in range(repeats):
        start = time.process_time_ns()
        frames = run()
        samples.append((time.process_time_ns() - start) / 1e3 / frames)
    return statistics.median(samples), min(samples)


# ------------------------------------------------------------------ the implementations


def ours_in(caller: bytes) -> Callable[[], int]:
    frames = [caller[i : i + FRAME_IN] for i in range(0, len(caller), FRAME_IN)]

    def run() -> int:
        state = resampler(8000, 48000).initial_state()
        for frame in frames:
            _, state = caller_to_agent(frame, state)
        return len(frames)

    return run


def ours_out(agent: bytes) -> Callable[[], int]:
    step = 2 * FRAME_OUT_SAMPLES
    chunks = [agent[i : i + step] for i in range(0, len(agent), step)]

    def run() -> int:
        state, framer = resampler(24000, 8000).initial_state(), FramerState()
        for chunk in chunks:
            ulaw, state = agent_to_caller(chunk, state)
            _, framer = frame_ulaw(ulaw, framer)
        return len(chunks)

    return run


def batch_in(caller: bytes, calls: int) -> Callable[[], int]:
    """One tick = every call's 20 ms frame through one batched call; cost per call-frame."""
    frames = [caller[i : i + FRAME_IN] for i in range(0, len(caller), FRAME_IN)]

    def run() -> int:
        states = [resampler(8000, 48000).initial_state()] * calls
        for frame in frames:
            _, states = caller_to_agent_batch([frame] * calls, states)
        return len(frames) * calls

    return run


def batch_out(agent: bytes, calls: int) -> Callable[[], int]:
    step = 2 * FRAME_OUT_SAMPLES
    chunks = [agent[i : i + step] for i in range(0, len(agent), step)]

    def run() -> int:
        states = [resampler(24000, 8000).initial_state()] * calls
        framers = [FramerState()] * calls
        for chunk in chunks:
            ulaw, states = agent_to_caller_batch([chunk] * calls, states)
            framed = [frame_ulaw(u, f) for u, f in zip(ulaw, framers, strict=True)]
            framers = [f for _, f in framed]
        return len(chunks) * calls

    return run


def poly_in(caller: bytes) -> Callable[[], int]:
    frames = [caller[i : i + FRAME_IN] for i in range(0, len(caller), FRAME_IN)]

    def run() -> int:
        for frame in frames:
            y = signal.resample_poly(ulaw_decode(frame).astype(np.float64), 6, 1)
            np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()
        return len(frames)

    return run


def poly_out(agent: bytes) -> Callable[[], int]:
    step = 2 * FRAME_OUT_SAMPLES
    chunks = [agent[i : i + step] for i in range(0, len(agent), step)]

    def run() -> int:
        for chunk in chunks:
            x = np.frombuffer(chunk, "<i2").astype(np.float64)
            y = signal.resample_poly(x, 1, 3)
            ulaw_encode(np.clip(np.rint(y), -32768, 32767).astype(np.int16))
        return len(chunks)

    return run


def audioop_pair(caller: bytes, agent: bytes) -> tuple[Callable[[], int], Callable[[], int]] | None:
    """The old stdlib path (linear interpolation, no anti-alias filter), for reference only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    frames = [caller[i : i + FRAME_IN] for i in range(0, len(caller), FRAME_IN)]
    step = 2 * FRAME_OUT_SAMPLES
    chunks = [agent[i : i + step] for i in range(0, len(agent), step)]

    def run_in() -> int:
        state = None
        for frame in frames:
            _, state = audioop.ratecv(audioop.ulaw2lin(frame, 2), 2, 1, 8000, 48000, state)
        return len(frames)

    def run_out() -> int:
        state = None
        for chunk in chunks:
            pcm, state = audioop.ratecv(chunk, 2, 1, 24000, 8000, state)
            audioop.lin2ulaw(pcm, 2)
        return len(chunks)

    return run_in, run_out


# ------------------------------------------------------------------ correctness at edges


def edge_errors(seconds: float) -> dict[str, dict[str, float]]:
    """997 Hz at -6 dBFS, streamed in 20 ms chunks; errors in int16 LSB against the whole
    signal through the same resampler."""
    result: dict[str, dict[str, float]] = {}
    for name, rate_in, up, down in [("8000->48000", 8000, 6, 1), ("24000->8000", 24000, 1, 3)]:
        n = int(seconds * rate_in)
        x = np.rint(16384 * np.sin(2 * np.pi * 997 * np.arange(n) / rate_in)).astype(np.int16)
        chunk = rate_in // 50
        whole = signal.resample_poly(x.astype(np.float64), up, down)
        pieces = [
            signal.resample_poly(x[i : i + chunk].astype(np.float64), up, down)
            for i in range(0, n, chunk)
        ]
        per_chunk = np.concatenate(pieces)
        error = np.rint(per_chunk) - np.rint(whole)
        r = resampler(rate_in, rate_in * up // down)
        ours_whole = r.process(x, r.initial_state())[0].astype(np.int32)
        state, ours_parts = r.initial_state(), []
        for i in range(0, n, chunk):
            y, state = r.process(x[i : i + chunk], state)
            ours_parts.append(y)
        ours_chunked = np.concatenate(ours_parts).astype(np.int32)
        peak = float(np.abs(error).max())
        result[name] = {
            "resample_poly_per_chunk_max_error_lsb": peak,
            "resample_poly_per_chunk_max_error_dbfs": float(20 * np.log10(peak / 32768)),
            "resample_poly_per_chunk_snr_db": float(
                10 * np.log10(np.mean(np.rint(whole) ** 2) / np.mean(error**2))
            ),
            "ours_chunked_vs_whole_max_error_lsb": float(np.abs(ours_chunked - ours_whole).max()),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--batch", type=int, nargs="*", default=[100, 1000], metavar="C",
        help="also time the batched path with C calls per tick (default: 100 1000)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--pin", action="store_true", help="run on one CPU only (the highest allowed; Linux)"
    )
    args = parser.parse_args(argv)
    if args.pin:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})

    caller, agent = _test_audio(args.seconds)
    rows: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
        "ours: μ-law LUT + stateful polyphase FIR (+ framing)": (
            _cpu_us_per_frame(ours_in(caller), args.repeats),
            _cpu_us_per_frame(ours_out(agent), args.repeats),
        ),
        "scipy.signal.resample_poly per 20 ms chunk (stateless)": (
            _cpu_us_per_frame(poly_in(caller), args.repeats),
            _cpu_us_per_frame(poly_out(agent), args.repeats),
        ),
    }
    for calls in args.batch:
        rows[f"ours, batched: {calls} calls per tick in one call (+ framing per call)"] = (
            _cpu_us_per_frame(batch_in(caller, calls), args.repeats),
            _cpu_us_per_frame(batch_out(agent, calls), args.repeats),
        )
    legacy = audioop_pair(caller, agent)
    if legacy is not None:
        rows["audioop ulaw2lin/ratecv/lin2ulaw (reference; no anti-alias filter)"] = (
            _cpu_us_per_frame(legacy[0], args.repeats),
            _cpu_us_per_frame(legacy[1], args.repeats),
        )
    edges = edge_errors(min(args.seconds, 5.0))

    (ours_in_us, _), (ours_out_us, _) = next(iter(rows.values()))
    ours_total = ours_in_us + ours_out_us
    print(
        f"# bench_dsp: Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, {args.seconds:g} s x {args.repeats} repeats, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
        f"CPUs {sorted(os.sched_getaffinity(0))}"
    )
    print("# CPU µs per 20 ms frame: median over repeats (best in the last column)")
    print()
    print("| implementation | caller->agent µs | agent->caller µs | µs per call-tick "
          "| calls/core (DSP only) | x ours | best µs per call-tick |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ((cost_in, best_in), (cost_out, best_out)) in rows.items():
        total = cost_in + cost_out
        print(
            f"| {name} | {cost_in:.2f} | {cost_out:.2f} | {total:.2f} "
            f"| {TICK_US / total:.0f} | {total / ours_total:.1f} | {best_in + best_out:.2f} |"
        )
    print()
    print("| 997 Hz @ -6 dBFS in 20 ms chunks | resample_poly per chunk: max error LSB (dBFS) "
          "| its SNR dB | ours chunked vs whole: max error LSB |")
    print("|---|---:|---:|---:|")
    for name, e in edges.items():
        print(
            f"| {name} | {e['resample_poly_per_chunk_max_error_lsb']:.0f} "
            f"({e['resample_poly_per_chunk_max_error_dbfs']:.1f}) "
            f"| {e['resample_poly_per_chunk_snr_db']:.1f} "
            f"| {e['ours_chunked_vs_whole_max_error_lsb']:.0f} |"
        )
    for rate_in, rate_out in [(8000, 48000), (24000, 8000)]:
        r = resampler(rate_in, rate_out)
        print(f"\n{r!r}: {r.taps_per_phase} taps per phase, stopband {r.spec.stopband_db:.1f} dB")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "python": platform.python_version(),
                    "per_frame_cpu_us": {
                        k: {"in_median": a[0], "in_best": a[1], "out_median": b[0],
                            "out_best": b[1]}
                        for k, (a, b) in rows.items()
                    },
                    "edge_errors": edges,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
