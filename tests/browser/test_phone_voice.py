"""`/phone` with a microphone (issue 19): headless Chromium's fake capture device plays a
WAV of a caller ordering a drink (eSpeak NG speech, pauses between the lines); the page
sends it as 20 ms μ-law frames (AudioWorklet) to a real `boba serve` whose local agent
hears it, and the order reaches the board. Needs Chromium and `.[speech]` (the `browser`
nox session installs both)."""

from __future__ import annotations

import io
import wave
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from boba_runtime.config.auth import make_session_cookie
from tests.browser.cdp import find_chromium, launch_browser
from tests.helpers.server import running_server, settings_for_test

pytest.importorskip("pocketsphinx")
pytest.importorskip("espeakng_loader")
pytestmark = [pytest.mark.browser, pytest.mark.speech, pytest.mark.slow]

TRANSCRIPT = "Array.from(document.querySelectorAll('#transcript li'), li => li.textContent)"

# (seconds of silence before the line, the line): room for each reply before the next line.
LINES = [
    (3.0, "hi there, can I get a taro milk tea with tapioca pearls please"),
    (9.0, "yes"),
    (6.0, "nothing else"),
    (12.0, "four one five, five five five, zero one four two"),
    (9.0, "yes"),
]
TAIL_S = 90.0  # Chromium loops the file: the call is over long before it starts again


def caller_wav() -> bytes:
    from boba_runtime.agent.speech import synthesizer
    from boba_runtime.agent.speech.caller import CALLER_VOICES

    synth = synthesizer()
    rate = synth.sample_rate
    parts = []
    for pause, text in LINES:
        parts.append(np.zeros(int(rate * pause), dtype=np.int16))
        parts.append(synth.speak(text, CALLER_VOICES[0]))
    parts.append(np.zeros(int(rate * TAIL_S), dtype=np.int16))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.concatenate(parts).astype("<i2").tobytes())
    return buffer.getvalue()


async def test_a_drink_ordered_by_voice_from_the_phone_page(tmp_path: Path) -> None:
    chromium = find_chromium()
    assert chromium is not None, "no Chromium: run scripts/setup-browser.sh"
    wav = tmp_path / "caller.wav"
    wav.write_bytes(caller_wav())
    flags = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
             f"--use-file-for-fake-audio-capture={wav}")
    settings = settings_for_test(tmp_path / "shop", speech=True)
    async with running_server(tmp_path / "shop", settings=settings) as server:
        base = server.base_url
        services = server.services
        cookie = make_session_cookie(
            services.secret_key, datetime.now(UTC), password=services.staff_password
        )
        async with launch_browser(chromium, extra_flags=flags) as browser:
            page = await browser.new_page(width=768, height=1024)
            await page.send("Network.setCookie", name="boba_session", value=cookie, url=base)
            await page.goto(f"{base}/phone")
            await page.click("#mic")  # ticked before dialling: the call starts with it
            await page.click("#dial")
            try:
                await page.wait_for(
                    f"{TRANSCRIPT}.some(t => t.startsWith('agent: Your order is placed!'))",
                    timeout=120,
                )
            finally:
                lines = await page.evaluate(TRANSCRIPT)
                print("\n".join(lines))
            assert any(t.startswith("caller: ") and "taro milk tea" in t for t in lines), lines
            assert await page.evaluate("document.getElementById('mic').checked") is True
            assert await page.evaluate("!document.getElementById('text').disabled")  # kept
            errors = [line for line in browser.console if "error" in line.lower()]
            assert errors == []
        async with httpx.AsyncClient(base_url=base) as client:
            board = (await client.get("/api/orders")).json()
    assert [(o["items"][0]["flavor"], o["items"][0]["toppings"]) for o in board] == [
        ("taro milk tea", ["boba"])]
