"""`boba call --voice` (issue 19): each scripted line is spoken into the call as audio,
the agent's words are printed, what it heard too, and its audio is saved as a WAV file."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest

from tests.helpers.server import running_server, settings_for_test

pytest.importorskip("boba_runtime.agent.speech")
pytest.importorskip("pocketsphinx")
pytest.importorskip("espeakng_loader")
pytestmark = [pytest.mark.speech, pytest.mark.slow]

SCRIPT = [
    "can I get a black milk tea with egg pudding, half sweet, no ice",
    "yes",
    "nothing else",
    "four one five, five five five, zero one four two",
    "yes",
]


async def test_a_voice_call_from_the_terminal_orders_and_saves_the_agents_audio(
    tmp_path: Path,
) -> None:
    from boba_runtime.cli.phone import EXIT_ORDER, run_phone_call
    from boba_runtime.cli.phone_voice import CallerVoice

    lines = list(SCRIPT)
    out = io.StringIO()

    async def next_line() -> str | None:
        return lines.pop(0) if lines else None

    wav = tmp_path / "agent.wav"
    settings = settings_for_test(tmp_path / "shop", speech=True)
    async with running_server(tmp_path / "shop", settings=settings) as server:
        code = await run_phone_call(
            server.base_url, server.services.staff_password, next_line, out=out,
            turn_timeout=30, voice=CallerVoice(), save_audio=str(wav),
        )
    printed = out.getvalue().splitlines()
    assert code == EXIT_ORDER, "\n".join(printed)
    heard = [line for line in printed if line.startswith("heard: ")]
    assert len(heard) == len(SCRIPT)
    assert "egg pudding" in heard[0] and "half sweet" in heard[0]
    assert heard[3] == "heard: four one five five five five zero one four two"
    assert any(line.startswith("agent: Your order is placed!") for line in printed)
    with wave.open(str(wav)) as saved:
        assert (saved.getframerate(), saved.getnchannels(), saved.getsampwidth()) == (8000, 1, 2)
        assert saved.getnframes() / 8000 > 10  # the greeting and five replies, spoken
