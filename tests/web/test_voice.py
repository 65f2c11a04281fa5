"""POST /voice and POST /voice/after against a real Hypercorn (CONTRACT §3)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from boba_runtime.call.registry import CallOutcome
from boba_runtime.call.stream_tokens import issue_token, stream_key, token_problem
from boba_web.twilio_routes import APOLOGY, BUSY, CONNECTING
from tests.fakes.twilio_client import form, make_call_sid, parse_twiml, post_webhook, sign
from tests.helpers.server import running_server

AUTH_TOKEN = "test-twilio-auth-token"
PUBLIC = "https://boba.example.com"


def signed_env(**extra: str) -> dict[str, str]:
    env = {
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "BOBA_PUBLIC_URL": PUBLIC,
        "BOBA_SMS": "log",
    }
    env.update(extra)
    return env


async def test_voice_answers_with_connect_stream_and_parameters(tmp_path: Path) -> None:
    async with running_server(tmp_path, signed_env()) as server, httpx.AsyncClient() as client:
        sid = make_call_sid(1)
        response = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=PUBLIC,
            path="/voice",
            params=form(sid, "+14155551234"),
            auth_token=AUTH_TOKEN,
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/xml")
        twiml = parse_twiml(response.text)
        assert twiml.says == [CONNECTING]
        assert twiml.connect_action == f"{PUBLIC}/voice/after"
        assert twiml.stream_url == "wss://boba.example.com/twilio"
        token = twiml.parameters.pop("token")
        assert twiml.parameters == {"caller": "+14155551234", "callSid": sid}
        key = stream_key(server.services.secret_key)
        assert token_problem(key, sid, "+14155551234", token, now=time.time()) is None
        # The order of verbs: Say first, then Connect.
        assert response.text.index("<Say>") < response.text.index("<Connect")


async def test_tokens_differ_per_call_caller_and_secret(tmp_path: Path) -> None:
    a, b = make_call_sid(1), make_call_sid(2)
    k1, k2 = stream_key(b"k1"), stream_key(b"k2")
    caller = "+14155551234"
    assert issue_token(k1, a, caller, now=0) != issue_token(k1, b, caller, now=0)
    assert issue_token(k1, a, caller, now=0) != issue_token(k2, a, caller, now=0)
    assert issue_token(k1, a, caller, now=0) != issue_token(k1, a, "+14155550000", now=0)


@pytest.mark.parametrize(
    "signature",
    [None, "", "bm90IHRoZSBzaWduYXR1cmU="],
    ids=["missing", "empty", "wrong"],
)
async def test_voice_refuses_bad_signatures(tmp_path: Path, signature: str | None) -> None:
    async with running_server(tmp_path, signed_env()) as server, httpx.AsyncClient() as client:
        response = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=PUBLIC,
            path="/voice",
            params=form(make_call_sid(1), "+14155551234"),
            auth_token=None,
            signature=signature,
        )
        assert response.status_code == 403
        assert "<Response" not in response.text


async def test_signature_is_checked_against_public_url_not_host(tmp_path: Path) -> None:
    async with running_server(tmp_path, signed_env()) as server, httpx.AsyncClient() as client:
        params = form(make_call_sid(1), "+14155551234")
        # Signed for the address the request really went to: not what Twilio would sign.
        response = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=server.base_url,
            path="/voice",
            params=params,
            auth_token=AUTH_TOKEN,
        )
        assert response.status_code == 403
        # A tampered parameter breaks the signature too.
        good = sign(AUTH_TOKEN, f"{PUBLIC}/voice", params)
        tampered = dict(params, From="+19995550000")
        response = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=PUBLIC,
            path="/voice",
            params=tampered,
            auth_token=None,
            signature=good,
        )
        assert response.status_code == 403


async def test_busy_over_max_calls(tmp_path: Path) -> None:
    env = signed_env(BOBA_MAX_CALLS="2")
    async with running_server(tmp_path, env) as server, httpx.AsyncClient() as client:
        answers = []
        for n in range(3):
            response = await post_webhook(
                client,
                server_url=server.base_url,
                public_url=PUBLIC,
                path="/voice",
                params=form(make_call_sid(n), "+14155551234"),
                auth_token=AUTH_TOKEN,
            )
            assert response.status_code == 200
            answers.append(parse_twiml(response.text))
        assert [a.stream_url is not None for a in answers] == [True, True, False]
        assert answers[2].says == [BUSY]
        assert answers[2].hangup
        # Twilio retrying the webhook of a call that already holds a slot is not "busy".
        again = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=PUBLIC,
            path="/voice",
            params=form(make_call_sid(0), "+14155551234"),
            auth_token=AUTH_TOKEN,
        )
        assert parse_twiml(again.text).stream_url is not None
        # When a stream ends, /voice/after frees its slot for the next caller.
        await post_webhook(
            client,
            server_url=server.base_url,
            public_url=PUBLIC,
            path="/voice/after",
            params=form(make_call_sid(0), "+14155551234"),
            auth_token=AUTH_TOKEN,
        )
        later = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=PUBLIC,
            path="/voice",
            params=form(make_call_sid(9), "+14155551234"),
            auth_token=AUTH_TOKEN,
        )
        assert parse_twiml(later.text).stream_url is not None


async def test_voice_after_hangs_up_or_apologises(tmp_path: Path) -> None:
    async with running_server(tmp_path, signed_env()) as server, httpx.AsyncClient() as client:
        registry = server.services.calls
        ok_sid, failed_sid, unknown_sid = make_call_sid(1), make_call_sid(2), make_call_sid(3)
        registry.record_end(ok_sid, CallOutcome.NORMAL)
        registry.record_end(failed_sid, CallOutcome.FAILED)
        results = {}
        for sid in (ok_sid, failed_sid, unknown_sid):
            response = await post_webhook(
                client,
                server_url=server.base_url,
                public_url=PUBLIC,
                path="/voice/after",
                params=form(sid, "+14155551234"),
                auth_token=AUTH_TOKEN,
            )
            assert response.status_code == 200
            results[sid] = parse_twiml(response.text)
        assert results[ok_sid].says == [] and results[ok_sid].hangup
        assert results[failed_sid].says == [APOLOGY] and results[failed_sid].hangup
        assert results[unknown_sid].says == [] and results[unknown_sid].hangup

        unsigned = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=PUBLIC,
            path="/voice/after",
            params=form(failed_sid, "+14155551234"),
            auth_token=None,
        )
        assert unsigned.status_code == 403


async def test_validation_off_accepts_unsigned_webhooks(tmp_path: Path) -> None:
    env = signed_env(BOBA_VALIDATE_TWILIO="false")
    async with running_server(tmp_path, env) as server, httpx.AsyncClient() as client:
        response = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=PUBLIC,
            path="/voice",
            params=form(make_call_sid(1), "+14155551234"),
            auth_token=None,
        )
        assert response.status_code == 200
        assert parse_twiml(response.text).stream_url == "wss://boba.example.com/twilio"


async def test_no_auth_token_on_loopback_is_development_mode(tmp_path: Path) -> None:
    # CONTRACT §2: without TWILIO_AUTH_TOKEN validation cannot run; on loopback that is
    # local development, so webhooks are answered.
    async with running_server(tmp_path) as server, httpx.AsyncClient() as client:
        response = await post_webhook(
            client,
            server_url=server.base_url,
            public_url=server.settings.public_url,
            path="/voice",
            params=form(make_call_sid(1), "+14155551234"),
            auth_token=None,
        )
        assert response.status_code == 200
        assert parse_twiml(response.text).stream_url == f"ws://{server.base_url[7:]}/twilio"


async def test_signature_covers_the_query_string(tmp_path: Path) -> None:
    """CONTRACT §3: the signature is over BOBA_PUBLIC_URL + path + query, with the POST
    params (Twilio keeps a webhook URL's query when it signs)."""
    async with running_server(tmp_path, signed_env()) as server, httpx.AsyncClient() as client:
        sid = make_call_sid(7)
        params = form(sid, "+14155551234")
        query = "shop=main&lang=en"
        url = f"{server.base_url}/voice?{query}"
        over_query = sign(AUTH_TOKEN, f"{PUBLIC}/voice?{query}", params)
        response = await client.post(url, data=params, headers={"X-Twilio-Signature": over_query})
        assert response.status_code == 200, response.text
        assert parse_twiml(response.text).parameters["callSid"] == sid
        # The same request signed without its query, or with another query: refused.
        for signed_url in (f"{PUBLIC}/voice", f"{PUBLIC}/voice?shop=other&lang=en"):
            signature = sign(AUTH_TOKEN, signed_url, params)
            refused = await client.post(url, data=params,
                                        headers={"X-Twilio-Signature": signature})
            assert refused.status_code == 403, (signed_url, refused.text)
