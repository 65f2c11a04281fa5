"""Whole calls on loopback: a real Hypercorn, the fake Deepgram agent, the fake Twilio REST
API and a client that behaves like Twilio (CONTRACT §3, §5; issue 7 point 5)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from boba_proto.model import OrderStatus, order_to_json
from boba_web.twilio_routes import APOLOGY
from tests.fakes.fake_agent import FakeAgentServer, FakeAgentSession, fake_agent_server
from tests.fakes.twilio_client import (
    TwilioStream,
    answer_call,
    dial,
    hang_up_after,
    make_call_sid,
)
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.helpers.server import RunningServer, running_server
from tests.helpers.stores import any_db_url  # noqa: F401
from tests.runtime.test_store_pg import pg_server  # noqa: F401

PUBLIC = "https://boba.example.com"
FROM_NUMBER = "+14155550100"


@dataclass
class Line:
    """A shop wired to the fakes, and the pieces a test needs to place calls."""

    server: RunningServer
    agent: FakeAgentServer
    rest: FakeTwilioRest
    client: httpx.AsyncClient
    tls: bool = False

    @property
    def auth_token(self) -> str:
        return self.rest.auth_token

    def dial(self, call_sid: str, caller: str, **kw: Any) -> Any:
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            kw.setdefault("ssl_context", context)
        return dial(
            self.client,
            server_url=self.server.base_url,
            public_url=PUBLIC,
            auth_token=self.auth_token,
            call_sid=call_sid,
            caller=caller,
            **kw,
        )

    async def answer(self, call_sid: str, caller: str, *, signed: bool = True) -> Any:
        """The `/voice` webhook alone (signed unless `signed=False`): the TwiML."""
        return await answer_call(
            self.client,
            server_url=self.server.base_url,
            public_url=PUBLIC,
            auth_token=self.auth_token if signed else None,
            call_sid=call_sid,
            caller=caller,
        )

    async def after(self, call_sid: str, caller: str) -> Any:
        return await hang_up_after(
            self.client,
            server_url=self.server.base_url,
            public_url=PUBLIC,
            auth_token=self.auth_token,
            call_sid=call_sid,
            caller=caller,
        )


@asynccontextmanager
async def shop_line(
    tmp_path: Path,
    script: Callable[[FakeAgentSession], Any],
    *,
    tls: bool = False,
    agent_options: dict[str, Any] | None = None,
    **env: str,
) -> AsyncIterator[Line]:
    """The shop (optionally serving HTTPS/WSS itself with a certificate for the public
    host, as in production), wired to the fake agent and the fake Twilio REST API."""
    client_options: dict[str, Any] = {}
    if tls:
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "1",
                "-subj",
                "/CN=boba.example.com",
            ],
            check=True,
            capture_output=True,
        )
        env = {"BOBA_TLS_CERT": str(cert), "BOBA_TLS_KEY": str(key), **env}
        client_options["verify"] = False  # Twilio would see the real certificate
    with FakeTwilioRest() as rest:
        async with fake_agent_server(script, **(agent_options or {})) as agent:
            settings_env = {
                "BOBA_PUBLIC_URL": PUBLIC,
                "BOBA_AGENT_URL": agent.url,
                "TWILIO_ACCOUNT_SID": rest.account_sid,
                "TWILIO_AUTH_TOKEN": rest.auth_token,
                "TWILIO_FROM_NUMBER": FROM_NUMBER,
                "TWILIO_API_BASE_URL": rest.base_url,
                "BOBA_SMS": "twilio",
            }
            settings_env.update(env)
            async with (
                running_server(tmp_path, settings_env) as server,
                httpx.AsyncClient(**client_options) as client,
            ):
                yield Line(server=server, agent=agent, rest=rest, client=client, tls=tls)


def drink(flavor: str, *toppings: str, sweetness: str = "50%", ice: str = "regular ice") -> dict:
    return {"flavor": flavor, "toppings": list(toppings), "sweetness": sweetness, "ice": ice}


async def order_script(agent: FakeAgentSession, drinks: list[dict], phone: str) -> dict:
    """How the real agent takes an order: stage, confirm, phone, checkout, goodbye."""
    await agent.wait_audio(0.1)
    for item in drinks:
        await agent.user_says(f"a {item['flavor']} please")
        staged = await agent.call_function("add_to_cart", item)
        assert staged["ok"], staged
        confirmed = await agent.call_function("confirm_pending_to_cart")
        assert confirmed["ok"], confirmed
    saved = await agent.call_function("save_phone_number", {"phone": phone})
    assert saved["ok"], saved
    checkout = await agent.call_function("checkout_order")
    assert checkout["ok"], checkout
    await agent.say(f"Your order number is {checkout['order_number']}.", seconds=0.2)
    ending = await agent.call_function("end_call")
    assert ending == {"ok": True, "ending": True}, ending
    await agent.say("Thanks for calling, goodbye!", seconds=0.3)
    return checkout


async def test_full_order_reaches_store_and_sms(tmp_path: Path) -> None:
    checkouts: list[dict] = []

    async def script(agent: FakeAgentSession) -> None:
        checkouts.append(
            await order_script(
                agent,
                [drink("Taro Milk Tea", "tapioca", sweetness="75%"), drink("black milk tea")],
                "(415) 555-1234",
            )
        )

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(1)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.closed.wait()  # the server hangs up after the goodbye
            after = await line.after(sid, "+14155550199")
        assert after.says == [] and after.hangup

        session = line.agent.sessions[0]
        assert session.protocol_errors == []
        assert session.headers.get("authorization") is None  # no key: no auth header
        assert session.settings is not None
        assert session.settings["audio"]["input"] == {"encoding": "linear16", "sample_rate": 48000}
        assert session.input_seconds() > 0
        assert session.audio_message_sizes == {3840}  # 40 ms of linear16 at 48 kHz
        await session.wait_closed()

        # The goodbye was played before the hang-up: its mark came back.
        assert stream.played.marks_sent and stream.played.marks_sent == stream.played.marks_echoed
        assert stream.played.errors == []
        assert all(size % 160 == 0 and size <= 800 for size in stream.played.payload_sizes)

        orders = await line.server.services.store.list_orders(status="all")
        assert len(orders) == 1
        order = orders[0]
        assert checkouts[0]["order_number"] == order.order_number
        as_json = order_to_json(order, with_private=True)
        assert as_json["phone"] == "+14155551234"
        assert as_json["items"] == [
            {
                "flavor": "taro milk tea",
                "toppings": ["boba"],
                "addons": [],
                "sweetness": "75%",
                "ice": "regular ice",
                "price": 6.25,
            },
            {
                "flavor": "black milk tea",
                "toppings": [],
                "addons": [],
                "sweetness": "50%",
                "ice": "regular ice",
                "price": 5.5,
            },
        ]
        assert as_json["total"] == 11.75
        assert order.status is OrderStatus.RECEIVED

        metrics = line.server.services.metrics.render(None).decode()
        assert "boba_calls_total 1.0" in metrics
        assert "boba_calls_active 0.0" in metrics
        assert "boba_call_duration_seconds_count 1.0" in metrics
        assert 'boba_function_call_seconds_count{name="checkout_order"} 1.0' in metrics
        assert 'boba_function_call_seconds_count{name="add_to_cart"} 2.0' in metrics
        assert "boba_agent_latency_seconds_count 3.0" in metrics  # one per AgentStartedSpeaking

        await trio.to_thread.run_sync(line.rest.wait_for_requests, 1)
        await trio.sleep(0.3)  # nothing else may follow
        messages = line.rest.messages()
        assert len(messages) == 1
        assert messages[0].form["To"] == "+14155551234"
        assert messages[0].form["From"] == FROM_NUMBER
        assert order.order_number in messages[0].form["Body"]
        assert messages[0].form["Body"].startswith("Thanks for your order!")


async def test_barge_in_clears_within_100ms(tmp_path: Path) -> None:
    sent_at: list[float] = []

    async def script(agent: FakeAgentSession) -> None:
        # A long answer (5 s of speech sent at once), then the caller talks over it.
        await agent.send_json(
            {
                "type": "ConversationText",
                "role": "assistant",
                "content": "We have taro milk tea, black milk tea, ...",
            }
        )
        await agent.send_audio(5.0, chunk_seconds=0.25)
        await trio.sleep(0.5)
        sent_at.append(trio.current_time())
        await agent.send_json({"type": "UserStartedSpeaking"})
        await trio.sleep(0.3)
        await agent.say("Sure, what would you like?", seconds=0.2)
        await agent.closed.wait()

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(2)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.on_clear.wait()
                await stream.wait_media(since_clear=1600)  # the new reply, after the clear
                await stream.send_stop()
                await stream.closed.wait()
        assert len(stream.played.clears) == 1
        delay = stream.played.clears[0] - sent_at[0]
        print(f"barge-in: clear {delay * 1000:.1f} ms after UserStartedSpeaking (bound 100 ms)")
        assert 0 <= delay < 0.1, f"clear came {delay * 1000:.0f} ms after UserStartedSpeaking"
        # The new reply (0.2 s = 1600 bytes) was still forwarded after the clear.
        assert stream.played.media_bytes_since_clear == 1600
        assert stream.played.errors == []


async def test_agent_dropping_mid_call_ends_call_and_apologises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_audio(0.2)
        await agent.drop()

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(3)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.closed.wait()  # ended by the server, not by us
            after = await line.after(sid, "+14155550199")
        assert after.says == [APOLOGY] and after.hangup
        assert await line.server.services.store.list_orders(status="all") == []
        assert "crashed" not in caplog.text  # a peer's failure, handled, not our bug
        assert "boba_agent_errors_total 1.0" in line.server.services.metrics.render(None).decode()


async def test_agent_unreachable_apologises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(agent: FakeAgentSession) -> None:
        raise AssertionError("never connected")

    async with shop_line(tmp_path, script) as line:
        line.agent.reject_with = 503
        sid = make_call_sid(4)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.closed.wait()
            after = await line.after(sid, "+14155550199")
        assert after.says == [APOLOGY]
        # Tried twice: the pre-open while /voice was answered, then the call's own attempt.
        assert line.agent.rejected == 2
        assert "agent unreachable: agent refused the connection: HTTP 503" in caplog.text
        assert "crashed" not in caplog.text
        assert "boba_agent_errors_total 1.0" in line.server.services.metrics.render(None).decode()


async def test_agent_error_apologises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_audio(0.1)
        await agent.error("INTERNAL_SERVER_ERROR", "something broke")

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(5)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                await stream.closed.wait()
            after = await line.after(sid, "+14155550199")
        assert after.says == [APOLOGY]
        assert "agent error INTERNAL_SERVER_ERROR: something broke" in caplog.text
        assert "boba_agent_errors_total 1.0" in line.server.services.metrics.render(None).decode()
        assert "crashed" not in caplog.text


async def test_voice_after_on_another_instance_still_apologises(
    tmp_path: Path, any_db_url: str  # noqa: F811
) -> None:
    """The stream failed on instance A; Twilio's `/voice/after` reaches instance B (one
    database): B finds how the call ended in the store, and the caller hears the apology."""

    async def script(agent: FakeAgentSession) -> None:
        await agent.wait_audio(0.1)
        await agent.error("INTERNAL_SERVER_ERROR", "something broke")

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with shop_line(tmp_path / "a", script, BOBA_DATABASE=any_db_url) as line:
        b_env = {
            "BOBA_DATABASE": any_db_url,
            "BOBA_PUBLIC_URL": PUBLIC,
            "TWILIO_ACCOUNT_SID": line.rest.account_sid,
            "TWILIO_AUTH_TOKEN": line.rest.auth_token,
        }
        async with running_server(tmp_path / "b", b_env) as other:
            sid = make_call_sid(6)
            with trio.fail_after(20):
                async with line.dial(sid, "+14155550199") as stream:
                    await stream.closed.wait()
                after = await hang_up_after(
                    line.client,
                    server_url=other.base_url,
                    public_url=PUBLIC,
                    auth_token=line.auth_token,
                    call_sid=sid,
                    caller="+14155550199",
                )
            assert other.services.calls.outcome(sid) is None  # B did not run the stream
            assert after.says == [APOLOGY] and after.hangup


async def test_stop_closes_agent_within_two_seconds_and_commits_nothing(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        staged = await agent.call_function("add_to_cart", drink("taro milk tea", "boba"))
        assert staged["ok"]
        await agent.call_function("confirm_pending_to_cart")
        await agent.call_function("save_phone_number", {"phone": "4155551234"})
        await agent.closed.wait()

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(6)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199") as stream:
                session_ready = line.agent
                while not (
                    session_ready.sessions
                    and len(session_ready.sessions[0].function_responses) >= 3
                ):
                    await trio.sleep(0.05)
                stopped_at = trio.current_time()
                await stream.send_stop()
                await stream.closed.wait()
            session = line.agent.sessions[0]
            await session.wait_closed(timeout=3)
        assert session.close_time is not None and session.close_time - stopped_at < 2.0
        after = await line.after(sid, "+14155550199")
        assert after.says == [] and after.hangup
        assert await line.server.services.store.list_orders(status="all") == []


async def test_stream_refused_with_wrong_token_before_agent(tmp_path: Path) -> None:
    from tests.fakes.twilio_client import open_twilio_stream

    async with shop_line(tmp_path, lambda agent: agent.closed.wait()) as line:
        sid = make_call_sid(7)
        twiml = await line.answer(sid, "+14155550199")
        assert twiml.stream_url is not None
        wrong = dict(twiml.parameters, token="0" * 32)
        with trio.fail_after(10):
            async with open_twilio_stream(
                server_url=line.server.base_url,
                stream_url=twiml.stream_url,
                auth_token=line.auth_token,
                call_sid=sid,
                parameters=wrong,
            ) as stream:
                await stream.send_connected()
                await stream.send_start()
                await stream.closed.wait()
        assert stream.close_code == 1008
        # No agent connection for this stream: /voice pre-opened one (DESIGN §5), and the
        # refused stream never took it (no Settings; it is closed unused after 5 s).
        assert len(line.agent.sessions) <= 1
        assert all(session.settings is None for session in line.agent.sessions)

        # Another call's valid token does not open this call's stream either.
        other = make_call_sid(8)
        other_token = (await line.answer(other, "+14155550199")).parameters["token"]
        with trio.fail_after(10):
            async with open_twilio_stream(
                server_url=line.server.base_url,
                stream_url=twiml.stream_url,
                auth_token=line.auth_token,
                call_sid=sid,
                parameters=dict(twiml.parameters, token=other_token),
            ) as stream:
                await stream.send_connected()
                await stream.send_start()
                await stream.closed.wait()
        assert stream.close_code == 1008
        assert len(line.agent.sessions) <= 2  # the two calls' pre-opened links, unused
        assert all(session.settings is None for session in line.agent.sessions)


async def test_stream_handshake_with_bad_signature_is_refused(tmp_path: Path) -> None:
    import trio_websocket

    from tests.fakes.twilio_client import open_twilio_stream

    async with shop_line(tmp_path, lambda agent: agent.closed.wait()) as line:
        for signature in ("", "d3Jvbmc="):
            try:
                async with open_twilio_stream(
                    server_url=line.server.base_url,
                    stream_url=f"{PUBLIC.replace('https', 'wss')}/twilio",
                    auth_token=None,
                    call_sid=make_call_sid(1),
                    parameters={},
                    signature=signature or None,
                ):
                    raise AssertionError("the handshake should have been refused")
            except trio_websocket.ConnectionRejected as exc:
                assert exc.status_code == 403
        # Signed for the wrong URL (https instead of the wss stream URL): refused too.
        from tests.fakes.twilio_client import sign

        try:
            async with open_twilio_stream(
                server_url=line.server.base_url,
                stream_url=f"{PUBLIC}/twilio",
                auth_token=None,
                call_sid=make_call_sid(1),
                parameters={},
                signature=sign(line.auth_token, f"{PUBLIC}/twilio", {}),
            ):
                raise AssertionError("the handshake should have been refused")
        except trio_websocket.ConnectionRejected as exc:
            assert exc.status_code == 403
        assert line.agent.sessions == []


def _unused(stream: TwilioStream) -> None:
    del stream


async def test_caller_hanging_up_without_stop_ends_the_call(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        staged = await agent.call_function("add_to_cart", drink("black milk tea"))
        assert staged["ok"]
        await agent.closed.wait()

    async with shop_line(tmp_path, script) as line:
        sid = make_call_sid(11)
        with trio.fail_after(20):
            async with line.dial(sid, "+14155550199"):
                while not (line.agent.sessions and line.agent.sessions[0].function_responses):
                    await trio.sleep(0.05)
                assert line.server.services.calls.active_count == 1
                hung_up_at = trio.current_time()
            # The socket is gone without a `stop` (the caller's line dropped).
            session = line.agent.sessions[0]
            await session.wait_closed(timeout=3)
        assert session.close_time is not None and session.close_time - hung_up_at < 2.0
        while line.server.services.calls.active_count:
            await trio.sleep(0.01)
        assert "boba_calls_active 0.0" in line.server.services.metrics.render(None).decode()
        after = await line.after(sid, "+14155550199")
        assert after.says == [] and after.hangup
        assert await line.server.services.store.list_orders(status="all") == []


async def test_call_length_limit_ends_politely(tmp_path: Path) -> None:
    async def script(agent: FakeAgentSession) -> None:
        with trio.fail_after(5):
            while not any(m["type"] == "InjectAgentMessage" for m in agent.received_json):
                await trio.sleep(0.05)
        # Deepgram speaks the injected goodbye; the bridge hangs up once it has played.
        await agent.say("Sorry, we've reached the time limit. Goodbye!", seconds=0.2)
        await agent.closed.wait()

    async with shop_line(tmp_path, script, BOBA_MAX_CALL_SECONDS="1") as line:
        sid = make_call_sid(12)
        with trio.fail_after(20):
            started = trio.current_time()
            async with line.dial(sid, "+14155550199") as stream:
                await stream.closed.wait()
            elapsed = trio.current_time() - started
            after = await line.after(sid, "+14155550199")
        assert 1.0 <= elapsed < 4.0
        assert stream.played.marks_echoed[-1] == stream.played.marks_sent[-1]
        assert after.says == [] and after.hangup  # a time limit is no failure


async def test_validation_off_skips_signatures_but_still_checks_the_token(tmp_path: Path) -> None:
    from tests.fakes.twilio_client import open_twilio_stream

    async with shop_line(
        tmp_path, lambda agent: agent.closed.wait(), BOBA_VALIDATE_TWILIO="false"
    ) as line:
        sid = make_call_sid(13)
        twiml = await line.answer(sid, "+14155550199", signed=False)
        assert twiml.stream_url is not None
        results = {}
        for label, params in (
            ("forged", dict(twiml.parameters, token="f" * 32)),
            ("issued", twiml.parameters),
        ):
            with trio.fail_after(10):
                async with open_twilio_stream(
                    server_url=line.server.base_url,
                    stream_url=twiml.stream_url,
                    auth_token=None,
                    call_sid=sid,
                    parameters=params,
                ) as stream:  # unsigned handshake: accepted with validation off
                    await stream.send_connected()
                    await stream.send_start()
                    if label == "issued":
                        while not line.agent.sessions:
                            await trio.sleep(0.02)
                        await stream.send_stop()
                    await stream.closed.wait()
            results[label] = stream.close_code
        assert results == {"forged": 1008, "issued": 1000}
        assert len(line.agent.sessions) == 1  # only the call with the issued token


async def test_replayed_stream_of_a_running_call_is_refused(tmp_path: Path) -> None:
    from tests.fakes.twilio_client import open_twilio_stream

    async with shop_line(tmp_path, lambda agent: agent.closed.wait()) as line:
        sid = make_call_sid(14)
        with trio.fail_after(15):
            async with line.dial(sid, "+14155550199") as first:
                while not line.agent.sessions:
                    await trio.sleep(0.02)
                # Someone who captured the TwiML (token included) opens a second stream.
                async with open_twilio_stream(
                    server_url=line.server.base_url,
                    stream_url=f"{PUBLIC.replace('https', 'wss')}/twilio",
                    auth_token=line.auth_token,
                    call_sid=sid,
                    parameters=first.parameters,
                ) as second:
                    await second.send_connected()
                    await second.send_start()
                    await second.closed.wait()
                assert second.close_code == 1008  # the token is accepted once (CONTRACT §3)
                assert not first.closed.is_set()  # the real call goes on
                await first.send_stop()
                await first.closed.wait()
        assert len(line.agent.sessions) == 1


async def test_twilio_call_with_the_local_agent(tmp_path: Path) -> None:
    """BOBA_AGENT_URL=local: the very same bridge reaches this server's /agent/local."""
    async with shop_line(
        tmp_path, lambda agent: agent.closed.wait(), BOBA_AGENT_URL="local"
    ) as line:
        sid = make_call_sid(15)
        with trio.fail_after(15):
            async with line.dial(sid, "+14155550199") as stream:
                while stream.played.media_bytes == 0 or not stream.played.marks_echoed:
                    await trio.sleep(0.05)  # the local agent's greeting cue has played
                await stream.send_stop()
                await stream.closed.wait()
            after = await line.after(sid, "+14155550199")
        assert after.says == [] and after.hangup
        assert line.agent.sessions == []  # the fake agent was not used
        assert stream.played.errors == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a test cert")
async def test_tls_shop_reaches_its_local_agent(tmp_path: Path) -> None:
    """BOBA_TLS_CERT with a certificate for the public host: Twilio's wss:// stream works,
    and the bridge still reaches the local agent on 127.0.0.1 (wss, no name check)."""
    async with shop_line(
        tmp_path, lambda agent: agent.closed.wait(), tls=True, BOBA_AGENT_URL="local"
    ) as line:
        assert line.server.base_url.startswith("https://")
        sid = make_call_sid(16)
        with trio.fail_after(15):
            async with line.dial(sid, "+14155550199") as stream:
                while not stream.played.marks_echoed:
                    await trio.sleep(0.05)  # the local agent's greeting cue has played
                await stream.send_stop()
                await stream.closed.wait()
            after = await line.after(sid, "+14155550199")
        assert after.says == [] and after.hangup
