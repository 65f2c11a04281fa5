"""The softphone page's μ-law coder is bit-exact with the core's (`boba_proto.audio`),
checked over every 16-bit sample by running `phone.js`'s own functions in Node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from boba_proto import audio

PHONE_JS = Path(__file__).resolve().parents[2] / "boba_web" / "static" / "phone.js"


def test_mulaw_in_the_page_matches_the_core(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    source = PHONE_JS.read_text(encoding="utf-8")
    coder = source[source.index("  function ulawToLinear"):source.index("  function base64ToBytes")]
    script = tmp_path / "ulaw.js"
    script.write_text(coder + """
const decoded = []; for (let u = 0; u < 256; u += 1) decoded.push(ulawToLinear(u));
const encoded = []; for (let x = -32768; x < 32768; x += 1) encoded.push(linearToUlaw(x));
console.log(JSON.stringify({decoded, encoded}));
""", encoding="utf-8")
    result = json.loads(subprocess.run([node, str(script)], check=True, capture_output=True,
                                       text=True, timeout=30).stdout)
    assert result["decoded"] == audio.ulaw_decode(bytes(range(256))).tolist()
    everything = np.arange(-32768, 32768, dtype=np.int16)
    assert result["encoded"] == list(audio.ulaw_encode(everything))
