"""`boba call` against a real `boba serve` with the built-in local agent (issue 9): the
example scripts place real orders through `/phone/ws`, the same `run_call` as Twilio's,
and the local agent behind `/agent/local`; no account anywhere."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
import trio

from boba_runtime.cli import phone as phone_cli
from boba_runtime.cli import replay
from boba_runtime.cli.phone import CallFailed, run_phone_call
from tests.helpers.processes import boba_command, checkout_env
from tests.helpers.server import RunningServer, running_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "calls"
CALLER = "+14155550142"


async def call(server: RunningServer, script: str, *, caller: str | None = None,
               password: str | None = None,
               replace: dict[str, str] | None = None) -> tuple[int, list[str]]:
    lines = phone_cli.read_script(str(EXAMPLES / script))
    for old, new in (replace or {}).items():
        lines = [line.replace(old, new) for line in lines]
    out = io.StringIO()

    async def next_line() -> str | None:
        return lines.pop(0) if lines else None

    code = await run_phone_call(
        server.base_url, password or server.services.staff_password, next_line, out=out,
        caller=caller, turn_timeout=10,
    )
    return code, out.getvalue().splitlines()


async def order_json(server: RunningServer, number: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.get(f"/api/orders/{number}", headers=server.staff_headers)
        assert response.status_code == 200
        data: dict[str, object] = response.json()
        return data


async def sms_sent(server: RunningServer, number: str) -> dict[str, object]:
    with trio.fail_after(8):
        while True:
            order = await order_json(server, number)
            sms = order["sms"]
            assert isinstance(sms, dict)
            if sms["received"] == "sent":
                return order
            await trio.sleep(0.1)


async def test_a_plain_order_by_script_reaches_the_board_and_the_sms_outbox(
    boba_server: RunningServer,
) -> None:
    assert boba_server.settings.agent_url == "local"  # no key: the built-in agent
    code, lines = await call(boba_server, "plain_order.txt")
    assert code == 0, "\n".join(lines)
    assert lines[0].startswith("agent: Hey! I am your Deepgram BobaRista")  # the greeting
    assert lines[1] == "caller: hi there, can I get a taro milk tea with tapioca pearls please"
    assert lines[2].startswith('fn: add_to_cart({"flavor": "taro milk tea", "toppings": '
                               '["boba"]}) -> {"ok":true,"staged":true')
    assert lines[3].startswith("agent: Okay, a taro milk tea with boba, 50% sweet")
    number = lines[-1].removeprefix("order: ")
    assert lines[-1] == f"order: {number}" and len(number) == 4 and number.isdigit()
    placed = [line for line in lines if line.startswith("agent: Your order is placed")]
    assert placed == [placed[0]] and ", ".join(number) in placed[0]  # read digit by digit (§12)
    assert any(line.startswith("fn: end_call(") for line in lines)
    assert lines[-2] == "agent: Thanks for calling Deepgram BobaRista! Goodbye."
    async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
        board = (await client.get("/api/orders")).json()
    assert [o["order_number"] for o in board] == [number]
    assert board[0]["items"] == [{"flavor": "taro milk tea", "toppings": ["boba"],
                                  "addons": [], "sweetness": "50%", "ice": "regular ice",
                                  "price": 6.25}]
    order = await sms_sent(boba_server, number)
    assert order["phone"] == CALLER


async def test_two_drinks_with_changes(boba_server: RunningServer) -> None:
    code, lines = await call(boba_server, "two_drinks_with_changes.txt")
    assert code == 0, "\n".join(lines)
    number = lines[-1].removeprefix("order: ")
    order = await order_json(boba_server, number)
    assert order["items"] == [
        {"flavor": "taro milk tea", "toppings": ["crystal agar boba"], "addons": [],
         "sweetness": "75%", "ice": "regular ice", "price": 6.25},
        {"flavor": "taro milk tea", "toppings": [], "addons": [], "sweetness": "0%",
         "ice": "regular ice", "price": 5.5},
    ]
    assert order["total"] == 11.75
    assert any(line.startswith("fn: remove_from_cart(") for line in lines)


async def test_a_refused_item_then_a_fix(boba_server: RunningServer) -> None:
    code, lines = await call(boba_server, "refused_then_fixed.txt")
    assert code == 0, "\n".join(lines)
    refusals = [line for line in lines if line.startswith("agent: Sorry")]
    assert 'we don\'t have "mango smoothie"' in refusals[0]
    assert '"cheese foam" isn\'t one of our toppings' in refusals[1]
    order = await order_json(boba_server, lines[-1].removeprefix("order: "))
    assert order["items"] == [
        {"flavor": "black milk tea", "toppings": ["egg pudding", "vanilla cream"],
         "addons": ["matcha stencil on top"], "sweetness": "50%", "ice": "no ice",
         "price": 7.5},
    ]


async def test_a_status_question_after_an_order_and_no_order_exits_1(
    boba_server: RunningServer,
) -> None:
    code, lines = await call(boba_server, "plain_order.txt")
    number = lines[-1].removeprefix("order: ")
    assert code == 0
    # A number the caller only says counts together with an order number (CONTRACT §5).
    code, lines = await call(boba_server, "status_question.txt",
                             replace={"4 7 8 2": " ".join(number)})
    assert code == 1, "\n".join(lines)
    assert not any(line.startswith("order:") for line in lines)
    assert any(line.startswith("fn: order_status(") for line in lines)
    assert any(line.startswith(f"agent: Order {' '.join(number)} is being prepared.")
               for line in lines)
    # The same question from the number the order came from needs no number.
    async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
        done = await client.post(f"/api/orders/{number}/done",
                                 headers=boba_server.staff_headers)
        assert done.status_code == 200
    out = io.StringIO()
    said = ["is my order ready?", "bye"]

    async def next_line() -> str | None:
        return said.pop(0) if said else None

    code = await run_phone_call(boba_server.base_url, boba_server.services.staff_password,
                                next_line, out=out, caller=CALLER, turn_timeout=10)
    assert code == 1
    assert f"Order {' '.join(number)} is ready for pickup" in out.getvalue()


async def test_a_wrong_password_is_a_connection_error(boba_server: RunningServer) -> None:
    with pytest.raises(CallFailed, match="refused the staff password"):
        await call(boba_server, "plain_order.txt", password="wrong")


async def test_nobody_listening_is_a_connection_error() -> None:
    async def nothing() -> str | None:
        return None

    with pytest.raises(CallFailed, match="cannot connect"):
        await run_phone_call("http://127.0.0.1:9", "pw", nothing, out=io.StringIO())


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    err = io.StringIO()
    env = {"BOBA_STAFF_PASSWORD": "pw"}
    assert phone_cli.main(["--bogus"], environ=env, stderr=err) == 2
    assert phone_cli.main(["--script", str(tmp_path / "missing.txt")], environ=env,
                          stderr=err) == 2
    assert "cannot read the script" in err.getvalue()
    assert phone_cli.main(["--url", "ftp://x"], environ=env, stderr=err) == 2
    empty = {"BOBA_DATA_DIR": str(tmp_path)}
    assert phone_cli.main([], environ=empty, stderr=err) == 2
    assert "no staff password" in err.getvalue()


def test_script_lines_skip_blanks_and_comments(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("# a comment\n\n  hello there  \n#another\nbye\n", encoding="utf-8")
    assert phone_cli.read_script(str(script)) == ["hello there", "bye"]


def test_urls_and_password_defaults(tmp_path: Path) -> None:
    assert phone_cli.phone_socket_url("https://boba.example.com/") == \
        "wss://boba.example.com/phone/ws"
    assert phone_cli.phone_socket_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/phone/ws"
    assert phone_cli.resolve_url(None, {"BOBA_HOST": "0.0.0.0", "BOBA_PORT": "9000"}, {}) == \
        "http://127.0.0.1:9000"
    assert phone_cli.resolve_url(None, {"BOBA_PUBLIC_URL": "https://b.example"}, {}) == \
        "https://b.example"
    assert phone_cli.resolve_url("http://h:1", {"BOBA_PUBLIC_URL": "https://b"}, {}) == \
        "http://h:1"
    (tmp_path / "staff-password").write_text("generated\n", encoding="utf-8")
    assert phone_cli.resolve_password(None, {"BOBA_DATA_DIR": str(tmp_path)}, {}) == \
        "generated"
    assert phone_cli.resolve_password("flag", {"BOBA_STAFF_PASSWORD": "env"}, {}) == "flag"


@pytest.mark.slow
async def test_the_boba_call_command_in_a_subprocess(
    boba_server: RunningServer, tmp_path: Path
) -> None:
    """The console script itself: output lines and exit code as CONTRACT §1 says.
    The checkout's code, in an empty directory (no .env), with only the password set."""
    env = checkout_env({"BOBA_STAFF_PASSWORD": boba_server.services.staff_password})
    result = await trio.run_process(
        boba_command("call", "--url", boba_server.base_url,
                     "--script", str(EXAMPLES / "plain_order.txt")),
        capture_stdout=True, capture_stderr=True, check=False, env=env, cwd=tmp_path,
    )
    out = result.stdout.decode().splitlines()
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert out[-1].startswith("order: ")
    assert [line.split(":")[0] for line in out[:3]] == ["agent", "caller", "fn"]


async def test_the_mulaw_profile_works_the_same(tmp_path: Path) -> None:
    """BOBA_AUDIO=mulaw: the local agent answers in μ-law 8 kHz, as Settings declare."""
    async with running_server(tmp_path / "shop", {"BOBA_AUDIO": "mulaw"}) as server:
        code, lines = await call(server, "plain_order.txt")
    assert code == 0, "\n".join(lines)
    assert lines[-1].startswith("order: ")


async def test_a_recorded_softphone_call_replays_identically(tmp_path: Path) -> None:
    """With BOBA_RECORD_DIR the typed words (`CallerText`) are recorded like any input,
    and `boba replay` reproduces the call from the file alone."""
    record_dir = tmp_path / "calls"
    async with running_server(tmp_path / "shop", {"BOBA_RECORD_DIR": str(record_dir)}) as server:
        code, _ = await call(server, "plain_order.txt")
    assert code == 0
    files = sorted(record_dir.glob("*.jsonl"))
    assert len(files) == 1 and "-PH" in files[0].name
    assert '"caller_text"' in files[0].read_text(encoding="utf-8")
    result = await trio.to_thread.run_sync(replay.main, [str(files[0])])
    assert result == 0
