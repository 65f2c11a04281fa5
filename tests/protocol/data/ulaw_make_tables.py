"""Regenerate the committed μ-law golden tables from `audioop` (Python <= 3.12 only).

Run once from the repository root, then review and commit the two files:

    python tests/protocol/data/ulaw_make_tables.py

- `ulaw_decode_expected.s16le`: 256 int16 little-endian samples,
  `audioop.ulaw2lin(bytes(range(256)), 2)`.
- `ulaw_encode_expected.u8`: 65,536 μ-law codes, `audioop.lin2ulaw` of every int16 value in
  the order of its uint16 bit pattern (0, 1, ..., 32767, -32768, ..., -1), so that entry `i`
  is the code of the sample whose bits are `i`.

The tests compare `boba_proto.audio` against these files, so they also run on Python 3.13,
where `audioop` no longer exists; their SHA-256 is pinned in tests/protocol/test_audio.py.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).parent
DECODE = HERE / "ulaw_decode_expected.s16le"
ENCODE = HERE / "ulaw_encode_expected.u8"


def main() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # only here: removed in Python 3.13

    if sys.byteorder != "little":
        raise SystemExit("run this on a little-endian machine (audioop uses native order)")
    every_pattern = b"".join(i.to_bytes(2, "little") for i in range(65536))
    DECODE.write_bytes(audioop.ulaw2lin(bytes(range(256)), 2))
    ENCODE.write_bytes(audioop.lin2ulaw(every_pattern, 2))
    for path in (DECODE, ENCODE):
        print(path.name, hashlib.sha256(path.read_bytes()).hexdigest())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
