"""`boba check` (CONTRACT §1, issue 16.3): every ok / warn / fail line, against the fake
Twilio REST API, a fake of Deepgram's think-model list, a real server and real stores."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from boba_runtime.cli import check
from boba_runtime.cli.check import CheckLine, Status
from boba_runtime.config.settings import Settings, load_settings
from boba_runtime.store.order_store import OrderStore, sqlite_path_from_url
from tests.fakes.deepgram_models import FakeThinkModels
from tests.fakes.twilio_rest import Drop, Fail, FakeTwilioRest
from tests.helpers.server import running_server
from tests.runtime.test_store_pg import db_url, pg_server  # noqa: F401 - fixtures

PUBLIC = "https://boba.example.com"
NUMBER = "+14155550100"


def settings_of(**env: str) -> Settings:
    """Settings as `boba check` would load them; a public URL without a Twilio token is
    allowed here (validation off) so each check can be looked at on its own."""
    env.setdefault("BOBA_VALIDATE_TWILIO", "false")
    return load_settings({}, env, None)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def expect(line: CheckLine, status: Status, *words: str) -> None:
    assert line.status is status, line.render()
    for word in words:
        assert word in line.sentence, (word, line.render())


@pytest.fixture
def models() -> Iterator[FakeThinkModels]:
    with FakeThinkModels() as fake:
        yield fake


@pytest.fixture
def rest() -> Iterator[FakeTwilioRest]:
    with FakeTwilioRest() as fake:
        yield fake


# --- Deepgram --------------------------------------------------------------------------------


def test_deepgram_ok_when_the_key_works_and_the_model_is_offered(models) -> None:
    settings = settings_of(DEEPGRAM_API_KEY=models.api_key, BOBA_AGENT_URL=models.agent_url)
    expect(check.check_deepgram(settings), Status.OK, "DEEPGRAM_API_KEY works",
           "google gemini-3.5-flash")
    assert models.seen_keys == [f"Token {models.api_key}"]


def test_deepgram_fails_on_a_refused_key_without_showing_it(models) -> None:
    settings = settings_of(DEEPGRAM_API_KEY="wrong-secret-key", BOBA_AGENT_URL=models.agent_url)
    line = check.check_deepgram(settings)
    expect(line, Status.FAIL, "refused DEEPGRAM_API_KEY", "HTTP 401")
    assert "wrong-secret-key" not in line.render()


def test_deepgram_fails_when_the_model_is_not_offered(models) -> None:
    settings = settings_of(DEEPGRAM_API_KEY=models.api_key, BOBA_AGENT_URL=models.agent_url,
                           BOBA_THINK_MODEL="gemini-2.5-flash")
    expect(check.check_deepgram(settings), Status.FAIL, "BOBA_THINK_MODEL",
           "gemini-2.5-flash", "gemini-3.5-pro")


def test_deepgram_fails_when_the_list_errs_or_cannot_be_reached(models) -> None:
    models.status = 500
    settings = settings_of(DEEPGRAM_API_KEY=models.api_key, BOBA_AGENT_URL=models.agent_url)
    expect(check.check_deepgram(settings), Status.FAIL, "HTTP 500", "Deepgram's side")
    gone = settings_of(DEEPGRAM_API_KEY="k",
                       BOBA_AGENT_URL=f"ws://127.0.0.1:{closed_port()}/v1/agent/converse")
    expect(check.check_deepgram(gone), Status.FAIL, "could not fetch", "connection refused")


def test_deepgram_warns_for_the_local_agent_or_an_unkeyed_agent() -> None:
    expect(check.check_deepgram(settings_of()), Status.WARN, "no DEEPGRAM_API_KEY",
           "local agent")
    keyed_local = settings_of(DEEPGRAM_API_KEY="k", BOBA_AGENT_URL="local")
    expect(check.check_deepgram(keyed_local), Status.WARN, "BOBA_AGENT_URL=local")
    other = settings_of(BOBA_AGENT_URL="ws://127.0.0.1:9/agent")
    expect(check.check_deepgram(other), Status.WARN, "not checked")
    unkeyed = settings_of(BOBA_AGENT_URL="wss://agent.deepgram.com/v1/agent/converse")
    expect(check.check_deepgram(unkeyed), Status.FAIL, "DEEPGRAM_API_KEY is not set")


# --- Twilio ----------------------------------------------------------------------------------


def twilio_settings(rest: FakeTwilioRest, **env: str) -> Settings:
    base = {
        "BOBA_PUBLIC_URL": PUBLIC,
        "TWILIO_ACCOUNT_SID": rest.account_sid,
        "TWILIO_AUTH_TOKEN": rest.auth_token,
        "TWILIO_FROM_NUMBER": NUMBER,
        "TWILIO_API_BASE_URL": rest.base_url,
    }
    base.update(env)
    return settings_of(**{k: v for k, v in base.items() if v})


def test_twilio_ok_and_the_number_points_at_the_public_url(rest) -> None:
    rest.add_number("+14155550199", voice_url="https://elsewhere.example.com/voice")
    rest.add_number(NUMBER, voice_url=f"{PUBLIC}/voice")
    account, number = check.check_twilio(twilio_settings(rest))
    expect(account, Status.OK, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN work", "active")
    expect(number, Status.OK, NUMBER, f"{PUBLIC}/voice")
    reads = [r for r in rest.requests() if r.method == "GET"]
    assert [r.kind for r in reads] == ["account", "numbers"]
    assert reads[1].query.get("PhoneNumber") == NUMBER  # filtered by Twilio, not by us
    assert all(r.authorised for r in reads)


def test_twilio_fails_on_wrong_credentials_without_showing_the_token(rest) -> None:
    lines = check.check_twilio(twilio_settings(rest, TWILIO_AUTH_TOKEN="not-the-token"))
    assert len(lines) == 1
    expect(lines[0], Status.FAIL, "refused", "HTTP 401", "20003")
    assert "not-the-token" not in lines[0].render()
    assert rest.auth_token not in lines[0].render()


def test_twilio_fails_for_an_unknown_account_a_suspended_one_or_an_error(rest) -> None:
    other = "AC" + "1" * 32
    expect(check.check_twilio(twilio_settings(rest, TWILIO_ACCOUNT_SID=other))[0],
           Status.FAIL)  # the fake refuses credentials of another account: 401
    rest.account_status = "suspended"
    expect(check.check_twilio(twilio_settings(rest))[0], Status.FAIL, "suspended")
    rest.account_status = "active"
    rest.script_reads("account", Fail(500, 20500))
    expect(check.check_twilio(twilio_settings(rest))[0], Status.FAIL, "HTTP 500",
           "Twilio's side")
    rest.script_reads("account", Fail(404, 20404))
    expect(check.check_twilio(twilio_settings(rest))[0], Status.FAIL, "knows no account",
           "TWILIO_ACCOUNT_SID")


def test_a_trial_account_is_ok_and_says_so(rest) -> None:
    rest.account_type = "Trial"
    expect(check.check_twilio(twilio_settings(rest))[0], Status.OK, "trial account",
           "verified numbers only")


def test_twilio_fails_when_unreachable() -> None:
    settings = settings_of(TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="t",
                           TWILIO_API_BASE_URL=f"http://127.0.0.1:{closed_port()}")
    expect(check.check_twilio(settings)[0], Status.FAIL, "could not reach Twilio",
           "connection refused", "TWILIO_API_BASE_URL")


def test_twilio_warns_without_credentials_and_fails_with_half_of_them() -> None:
    expect(check.check_twilio(settings_of())[0], Status.WARN, "not set")
    half = check.check_twilio(settings_of(TWILIO_ACCOUNT_SID="AC" + "0" * 32))
    expect(half[0], Status.FAIL, "TWILIO_AUTH_TOKEN is not set")


def test_the_number_check_fails_for_every_wrong_console_setting(rest) -> None:
    number = rest.add_number(NUMBER, voice_url="https://old.example.com/voice")
    line = check.check_twilio(twilio_settings(rest))[1]
    expect(line, Status.FAIL, "https://old.example.com/voice", f"expected {PUBLIC}/voice",
           "A call comes in")
    number.voice_url = ""
    expect(check.check_twilio(twilio_settings(rest))[1], Status.FAIL, "voice URL is empty")
    number.voice_url, number.voice_method = f"{PUBLIC}/voice", "GET"
    expect(check.check_twilio(twilio_settings(rest))[1], Status.FAIL, "GET", "HTTP POST")
    number.voice_method, number.voice_application_sid = "POST", "AP" + "2" * 32
    expect(check.check_twilio(twilio_settings(rest))[1], Status.FAIL, "TwiML app")
    number.voice_application_sid = ""
    expect(check.check_twilio(twilio_settings(rest))[1], Status.OK)


def test_the_number_check_fails_for_a_number_not_on_the_account_or_a_list_error(rest) -> None:
    rest.add_number("+14155550199", voice_url=f"{PUBLIC}/voice")
    expect(check.check_twilio(twilio_settings(rest))[1], Status.FAIL, "has no number",
           NUMBER)
    rest.script_reads("numbers", Drop())
    expect(check.check_twilio(twilio_settings(rest))[1], Status.FAIL, "could not reach")


def test_the_number_check_warns_without_a_from_number(rest) -> None:
    lines = check.check_twilio(twilio_settings(rest, TWILIO_FROM_NUMBER=""))
    expect(lines[0], Status.OK)
    expect(lines[1], Status.WARN, "TWILIO_FROM_NUMBER is not set", f"{PUBLIC}/voice")


# --- the public URL --------------------------------------------------------------------------


async def test_public_url_through_a_real_server(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        here = server.settings  # a loopback public URL: answers, but Twilio cannot reach it
        line = await trio.to_thread.run_sync(check.check_public_url, here)
        expect(line, Status.WARN, "answers", "loopback")

        def through_dns(url: str, timeout: float) -> tuple[int, dict]:
            """What the public name resolves to, from outside: this server."""
            return check.fetch_health(url.replace(PUBLIC, server.base_url), timeout)

        public = settings_of(BOBA_PUBLIC_URL=PUBLIC)
        line = await trio.to_thread.run_sync(check.check_public_url, public, through_dns)
        expect(line, Status.OK, f"{PUBLIC}/healthz answers")
        plain = settings_of(BOBA_PUBLIC_URL="http://boba.example.com")

        def plain_dns(url: str, timeout: float) -> tuple[int, dict]:
            return check.fetch_health(url.replace("http://boba.example.com",
                                                  server.base_url), timeout)

        line = await trio.to_thread.run_sync(check.check_public_url, plain, plain_dns)
        expect(line, Status.WARN, "plain http", "https")

        def wrong_path(url: str, timeout: float) -> tuple[int, dict]:
            return check.fetch_health(f"{server.base_url}/no-such-page", timeout)

        line = await trio.to_thread.run_sync(check.check_public_url, public, wrong_path)
        expect(line, Status.FAIL, "HTTP 404", "BOBA_PUBLIC_URL")


def test_public_url_unreachable_is_a_warning() -> None:
    port = closed_port()
    local = settings_of(BOBA_PUBLIC_URL=f"http://127.0.0.1:{port}")
    expect(check.check_public_url(local), Status.WARN, "does not answer", "boba serve")

    def refused(url: str, timeout: float) -> tuple[int, dict]:
        raise ConnectionRefusedError(111, "Connection refused")

    public = settings_of(BOBA_PUBLIC_URL=PUBLIC)
    expect(check.check_public_url(public, refused), Status.WARN, "cannot be reached from here",
           "from outside")


def test_public_url_answering_unavailable_fails() -> None:
    def unavailable(url: str, timeout: float) -> tuple[int, dict]:
        return 503, {"status": "unavailable", "reason": "the order store does not answer"}

    expect(check.check_public_url(settings_of(BOBA_PUBLIC_URL=PUBLIC), unavailable),
           Status.FAIL, "503", "the order store does not answer")


# --- the database ----------------------------------------------------------------------------


async def test_database_ok_missing_and_too_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    settings = settings_of(BOBA_DATABASE=url)
    line = await trio.to_thread.run_sync(check.check_database, settings)
    expect(line, Status.WARN, "does not exist yet")
    assert not (tmp_path / "shop.sqlite3").exists()  # the check created nothing
    store = await OrderStore.open(url)
    await store.aclose()
    os.chmod(tmp_path / "shop.sqlite3", 0o600)  # as CONTRACT §2 has the store create it
    line = await trio.to_thread.run_sync(check.check_database, settings)
    expect(line, Status.OK, "opens and answers", "0 orders")
    os.chmod(tmp_path / "shop.sqlite3", 0o644)
    line = await trio.to_thread.run_sync(check.check_database, settings)
    expect(line, Status.FAIL, "readable by other users", "chmod 600")


async def test_database_ok_on_postgres(db_url: str) -> None:  # noqa: F811 - the fixture
    store = await OrderStore.open(db_url)  # a migrated store, as boba serve leaves it
    await store.aclose()
    line = await trio.to_thread.run_sync(check.check_database, settings_of(BOBA_DATABASE=db_url))
    expect(line, Status.OK, "PostgreSQL database", "opens and answers", "0 orders")


def test_database_unreachable_postgres_fails_without_the_password() -> None:
    url = f"postgresql://boba:s3cret-pw@127.0.0.1:{closed_port()}/shop"
    line = check.check_database(settings_of(BOBA_DATABASE=url))
    expect(line, Status.FAIL, "does not answer")
    assert "s3cret-pw" not in line.render()


def test_database_not_a_database_fails(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    path.write_bytes(b"this is not an SQLite file" * 100)
    path.chmod(0o600)
    expect(check.check_database(settings_of(BOBA_DATABASE=f"sqlite:///{path}")), Status.FAIL,
           "does not answer")


# --- SMS -------------------------------------------------------------------------------------


def test_sms_lines(rest) -> None:
    expect(check.check_sms(settings_of(), []), Status.WARN, "BOBA_SMS=log")
    settings = twilio_settings(rest)
    assert settings.sms == "twilio"
    number = rest.add_number(NUMBER, voice_url="https://elsewhere.example.com/voice")
    voice_url_wrong = [check.ok("twilio", "fine"), check.fail("twilio number", "wrong URL")]
    expect(check.check_sms(settings, voice_url_wrong), Status.OK, NUMBER)  # texts still go
    expect(check.check_sms(settings, [check.fail("twilio", "no")]), Status.FAIL,
           "credentials check above failed")
    number.sms = False
    expect(check.check_sms(settings, voice_url_wrong), Status.FAIL, "cannot send SMS",
           "BOBA_SMS=log")


# --- the command -----------------------------------------------------------------------------


def run_boba_check(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("BOBA_", "TWILIO_", "DEEPGRAM_"))}
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "boba_runtime", "check"], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
async def test_boba_check_exit_codes_end_to_end(tmp_path: Path, models, rest) -> None:
    """All good → 0 (warnings allowed); one failure → 1; a bad setting → 2, one line."""
    rest.add_number(NUMBER, voice_url=f"{PUBLIC}/voice")
    async with running_server(tmp_path / "shop") as server:
        os.chmod(sqlite_path_from_url(server.settings.database), 0o600)  # CONTRACT §2
        env = {
            "BOBA_PUBLIC_URL": server.settings.public_url,
            "BOBA_DATABASE": server.settings.database,
            "DEEPGRAM_API_KEY": models.api_key,
            "BOBA_AGENT_URL": models.agent_url,
            "TWILIO_ACCOUNT_SID": rest.account_sid,
            "TWILIO_AUTH_TOKEN": rest.auth_token,
            "TWILIO_FROM_NUMBER": NUMBER,
            "TWILIO_API_BASE_URL": rest.base_url,
        }
        good = await trio.to_thread.run_sync(lambda: run_boba_check(tmp_path, **env))
        # The number's voice URL is the public one, not this loopback server's: one fail.
        assert good.returncode == 1, good.stdout + good.stderr
        lines = good.stdout.splitlines()
        assert [line.split()[0] for line in lines] == [
            "ok", "ok", "ok", "fail", "warn", "ok", "ok"
        ], good.stdout  # the number's URL is wrong for this server; texts still go out
        assert "twilio number:" in lines[3]
        for secret in (models.api_key, rest.auth_token):
            assert secret not in good.stdout + good.stderr
        rest.numbers[0].voice_url = f"{server.settings.public_url}/voice"
        fixed = await trio.to_thread.run_sync(lambda: run_boba_check(tmp_path, **env))
        assert fixed.returncode == 0, fixed.stdout
        assert [line.split()[0] for line in fixed.stdout.splitlines()].count("fail") == 0
    bad = await trio.to_thread.run_sync(
        lambda: run_boba_check(tmp_path, BOBA_PUBLIC_URL="ftp://nope")
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    [line] = bad.stderr.strip().splitlines()
    assert line.startswith("boba check: BOBA_PUBLIC_URL:") and "ftp://nope" in line
