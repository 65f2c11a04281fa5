"""With BOBA_RECORD_DIR each call becomes a session file that `boba replay` reproduces
(CONTRACT §10; issue 7 point 4)."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from boba_runtime.cli.replay import main as replay_main
from tests.fakes.fake_agent import FakeAgentSession
from tests.fakes.twilio_client import make_call_sid
from tests.web.test_call_loopback import drink, order_script, shop_line


async def test_recorded_loopback_call_replays_exactly(tmp_path: Path, capsys) -> None:
    record_dir = tmp_path / "recordings"

    async def script(agent: FakeAgentSession) -> None:
        # The digit reaches the agent after the 2 s DTMF pause: a timer firing to record.
        await agent.wait_injected(1)
        assert agent.injected_user == ["The caller typed 7"]
        await order_script(agent, [drink("taro milk tea", "boba")], "4155551234")

    async with shop_line(tmp_path, script, BOBA_RECORD_DIR=str(record_dir)) as line:
        sid = make_call_sid(42)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.wait_media()  # the greeting
                await stream.send_dtmf("7")  # DTMF and its timer are recorded too
                await stream.closed.wait()
        await line.after(sid, "+14155550199")
        with trio.fail_after(5):
            while line.server.services.calls.active_count:
                await trio.sleep(0.01)  # the call is completely over, its file closed

        files = sorted(record_dir.glob("*.jsonl"))
        assert [f.name.split("-", 1)[1] for f in files] == [f"{sid}.jsonl"]
        lines = files[0].read_text().splitlines()
        header = json.loads(lines[0])
        assert header["format"] == "boba-session/1"
        assert header["profile"] == "linear16"
        kinds = [json.loads(line) for line in lines[1:]]
        inputs = [k["in"]["type"] for k in kinds if "in" in k]
        outputs = [k["out"]["type"] for k in kinds if "out" in k]
        # Twilio frames, agent frames, agent audio, timers and the store's answer are inputs.
        for expected in (
            "twilio",
            "agent",
            "agent_audio",
            "agent_connected",
            "timer_fired",
            "order_committed",
        ):
            assert expected in inputs, expected
        assert "end_call" in outputs and "request_effect" in outputs
        assert [t for t in (k.get("t") for k in kinds) if t is not None] == sorted(
            k["t"] for k in kinds
        )

    capsys.readouterr()
    assert replay_main([str(files[0])]) == 0
    assert "ok" in capsys.readouterr().out

    # A tampered recording is caught: change one recorded output.
    tampered = tmp_path / "tampered.jsonl"
    changed = []
    done = False
    for line_text in lines:
        record = json.loads(line_text)
        if not done and record.get("out", {}).get("type") == "send_to_agent":
            record["out"]["text"] = record["out"]["text"].replace("ok", "ko", 1)
            done = True
        changed.append(json.dumps(record))
    tampered.write_text("\n".join(changed) + "\n")
    assert replay_main([str(tampered)]) == 1


async def test_refused_stream_leaves_no_recording(tmp_path: Path) -> None:
    from tests.fakes.twilio_client import open_twilio_stream

    record_dir = tmp_path / "recordings"
    async with shop_line(
        tmp_path, lambda a: a.closed.wait(), BOBA_RECORD_DIR=str(record_dir)
    ) as line:
        sid = make_call_sid(43)
        twiml = await line.answer(sid, "+14155550199")
        assert twiml.stream_url is not None
        with trio.fail_after(10):
            async with open_twilio_stream(
                server_url=line.server.base_url,
                stream_url=twiml.stream_url,
                auth_token=line.auth_token,
                call_sid=sid,
                parameters=dict(twiml.parameters, token="forged"),
            ) as stream:
                await stream.send_connected()
                await stream.send_start()
                await stream.closed.wait()
        await trio.sleep(0.1)
    assert list(record_dir.glob("*.jsonl")) == []
