"""The softphone page's μ-law coder is bit-exact with the core's (`boba_proto.audio`),
checked over every 16-bit sample by running `phone.js`'s own functions in headless
Chromium: the browser is where that code runs, and the `browser` nox session installs it
(this replaced a Node.js test that skipped wherever Node was missing, i.e. in CI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boba_proto import audio
from tests.browser.cdp import Browser

pytestmark = pytest.mark.browser

PHONE_JS = Path(__file__).resolve().parents[2] / "boba_web" / "static" / "phone.js"


def ulaw_coder_source() -> str:
    """`ulawToLinear` and `linearToUlaw` exactly as the page defines them."""
    source = PHONE_JS.read_text(encoding="utf-8")
    return source[source.index("  function ulawToLinear"):source.index("  function base64ToBytes")]


async def test_mulaw_in_the_page_matches_the_core(browser: Browser) -> None:
    page = await browser.new_page(width=320, height=240)
    result = await page.evaluate("(() => {\n" + ulaw_coder_source() + """
  const decoded = []; for (let u = 0; u < 256; u += 1) decoded.push(ulawToLinear(u));
  const encoded = []; for (let x = -32768; x < 32768; x += 1) encoded.push(linearToUlaw(x));
  return {decoded, encoded};
})()""")
    assert result["decoded"] == audio.ulaw_decode(bytes(range(256))).tolist()
    everything = np.arange(-32768, 32768, dtype=np.int16)
    assert result["encoded"] == list(audio.ulaw_encode(everything))
