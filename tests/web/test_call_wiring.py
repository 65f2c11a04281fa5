"""The fail-closed Twilio signature rule and the choice of the agent connector, without a
server (moved out of the registry tests, which belong to the runtime)."""

from __future__ import annotations

import msgspec
import trio

from boba_web.twilio_routes import signature_ok
from tests.fakes.twilio_client import sign
from tests.helpers.server import settings_for_test

URL = "https://boba.example.com/voice"
PARAMS = {"CallSid": "CA1", "From": "+14155551234"}


def settings(tmp_path, **env: str):
    return settings_for_test(tmp_path, env)


def test_signature_rule_with_token(tmp_path) -> None:
    s = settings(tmp_path, TWILIO_AUTH_TOKEN="tok", BOBA_PUBLIC_URL="https://boba.example.com")
    good = {"X-Twilio-Signature": sign("tok", URL, PARAMS)}
    assert signature_ok(s, URL, PARAMS, good)
    assert not signature_ok(s, URL, PARAMS, {})
    assert not signature_ok(s, URL, {**PARAMS, "From": "+1"}, good)
    assert not signature_ok(s, URL, PARAMS, {"X-Twilio-Signature": sign("other", URL, PARAMS)})


def test_signature_rule_fails_closed_without_token_off_loopback(tmp_path) -> None:
    loopback = settings(tmp_path)
    assert loopback.twilio_auth_token is None
    assert signature_ok(loopback, URL, PARAMS, {})  # local development
    # The same settings bound to a public address (serve refuses to start like this; the
    # routes refuse too, in case they are ever mounted another way).
    public = msgspec.structs.replace(loopback, host="0.0.0.0")
    assert not public.bound_to_loopback
    assert not signature_ok(public, URL, PARAMS, {})
    off = msgspec.structs.replace(public, validate_twilio=False)
    assert signature_ok(off, URL, PARAMS, {})


async def test_local_agent_is_this_server_and_never_gets_the_deepgram_key(tmp_path) -> None:
    import json as jsonlib

    from boba_web.app import agent_connector
    from tests.fakes.fake_agent import fake_agent_server

    async with fake_agent_server(path="/agent/local") as fake:
        s = msgspec.structs.replace(
            settings(tmp_path), agent_url="local", deepgram_api_key="dg-secret"
        )
        connect = agent_connector(s, {"server": ("127.0.0.1", fake.port)})
        async with connect() as link:
            assert jsonlib.loads(await link.receive())["type"] == "Welcome"
        remote = msgspec.structs.replace(s, agent_url=fake.url.replace("/agent/local", "/x"))
        async with agent_connector(remote, {"server": ("127.0.0.1", 1)})() as link:
            await link.receive()
        with trio.fail_after(3):
            while len(fake.sessions) < 2:
                await trio.sleep(0.01)
        local_session, remote_session = fake.sessions
        assert "authorization" not in local_session.headers
        assert remote_session.headers["authorization"] == "Token dg-secret"


async def test_a_store_that_does_not_answer_does_not_break_the_call_end(
    tmp_path, caplog
) -> None:
    """The outcome is shared before the phone socket closes; a store failure there is
    logged and the call ends as usual (only another instance's apology is lost)."""
    from types import SimpleNamespace

    from boba_runtime.call.registry import CallOutcome
    from boba_runtime.store.order_store import OrderStore
    from boba_web.app import outcome_sharer
    from boba_web.twilio_routes import shared_outcome

    store = await OrderStore.open(f"sqlite:///{tmp_path}/boba.sqlite3")
    share = outcome_sharer(SimpleNamespace(store=store))  # type: ignore[arg-type]
    await share("CA" + "1" * 32, CallOutcome.FAILED)
    assert await shared_outcome(store, "CA" + "1" * 32) is CallOutcome.FAILED
    await store.aclose()
    await share("CA" + "2" * 32, CallOutcome.FAILED)  # no exception
    assert "could not store how it ended" in caplog.text
    assert await shared_outcome(store, "CA" + "1" * 32) is None  # and /voice/after goes on
    assert "cannot ask the store how the call ended" in caplog.text
