"""μ-law codec against committed audioop tables, and Twilio 160-byte framing."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from boba_proto.audio import (
    TWILIO_FRAME_BYTES,
    ULAW_SILENCE,
    FramerState,
    flush_ulaw,
    frame_ulaw,
    ulaw_decode,
    ulaw_encode,
)
from boba_proto.errors import LocalProtocolError

DATA = Path(__file__).parent / "data"
# Pinned so a regenerated or damaged table cannot silently move the goalposts
# (see data/ulaw_make_tables.py for how they were made).
DECODE_SHA256 = "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"
ENCODE_SHA256 = "617fa4850d68d3906597e949f7625fb2fc46db479e29707f33159b3d131721cb"
EVERY_INT16 = np.arange(65536, dtype=np.uint16).view(np.int16)  # in uint16 bit-pattern order


def _table(name: str, sha256: str) -> bytes:
    raw = (DATA / name).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == sha256, f"{name} is not the table audioop made"
    return raw


def test_decode_matches_audioop_for_all_256_codes() -> None:
    expected = np.frombuffer(_table("ulaw_decode_expected.s16le", DECODE_SHA256), dtype="<i2")
    decoded = ulaw_decode(bytes(range(256)))
    assert decoded.dtype == np.int16
    np.testing.assert_array_equal(decoded, expected)


def test_encode_matches_audioop_for_all_65536_inputs() -> None:
    expected = _table("ulaw_encode_expected.u8", ENCODE_SHA256)
    encoded = ulaw_encode(EVERY_INT16)
    mismatches = np.flatnonzero(
        np.frombuffer(encoded, np.uint8) != np.frombuffer(expected, np.uint8)
    )
    assert mismatches.size == 0, f"first mismatching inputs: {EVERY_INT16[mismatches[:10]]}"


def test_the_audioop_quirk_on_small_negatives_is_kept() -> None:
    # audioop shifts right by 2 before encoding, so -1..-4 become 14-bit -1 and encode as
    # 0x7E rather than G.191's negative-zero code 0x7F; zero and +1..+3 give 0xFF.
    assert ulaw_encode(np.array([-1, -4, 0, 3], dtype=np.int16)) == b"\x7e\x7e\xff\xff"


def test_against_live_audioop_when_this_python_still_has_it() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    noise = np.random.default_rng(7).integers(-32768, 32768, 4000).astype(np.int16)
    assert ulaw_encode(noise) == audioop.lin2ulaw(noise.tobytes(), 2)
    codes = bytes(np.random.default_rng(8).integers(0, 256, 4000).astype(np.uint8))
    assert ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)


def test_silence_code_decodes_to_zero_and_encoding_is_monotonic() -> None:
    assert ulaw_decode(bytes([ULAW_SILENCE]))[0] == 0
    levels = ulaw_decode(ulaw_encode(np.arange(-32768, 32768, dtype=np.int16)))
    assert np.all(np.diff(levels.astype(np.int32)) >= 0)


def test_decoded_levels_are_fixed_points_of_the_codec() -> None:
    levels = ulaw_decode(bytes(range(256)))
    np.testing.assert_array_equal(ulaw_decode(ulaw_encode(levels)), levels)


def test_encode_refuses_what_is_not_int16() -> None:
    with pytest.raises(LocalProtocolError, match="int16"):
        ulaw_encode(np.zeros(4, dtype=np.float64))


@given(st.lists(st.binary(max_size=700), max_size=12), st.sampled_from([160, 320, 7]))
def test_framing_emits_whole_frames_and_loses_nothing(
    chunks: list[bytes], frame_bytes: int
) -> None:
    state, emitted = FramerState(), []
    for chunk in chunks:
        out, state = frame_ulaw(chunk, state, frame_bytes=frame_bytes)
        assert len(out) % frame_bytes == 0
        assert len(state.held) < frame_bytes
        emitted.append(out)
    assert b"".join(emitted) + state.held == b"".join(chunks)
    tail, state = flush_ulaw(state, frame_bytes=frame_bytes)
    assert state == FramerState()
    assert len(tail) in (0, frame_bytes)


def test_flush_pads_the_last_partial_frame_with_silence() -> None:
    out, state = frame_ulaw(b"\x01" * 200, FramerState())
    assert out == b"\x01" * TWILIO_FRAME_BYTES and state.held == b"\x01" * 40
    tail, state = flush_ulaw(state)
    assert tail == b"\x01" * 40 + bytes([ULAW_SILENCE]) * 120
    assert flush_ulaw(state) == (b"", FramerState())


def test_a_state_holding_a_whole_frame_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        frame_ulaw(b"", FramerState(b"\0" * 160))
    with pytest.raises(LocalProtocolError):
        flush_ulaw(FramerState(b"\0" * 200))
