"""The holes a reviewer found (issue #13), each closed: real server on loopback where the
route matters, the runtime pieces directly where a timeout or a file is the point."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from boba_proto import twilio as tw
from boba_runtime.config.auth import SESSION_COOKIE
from boba_runtime.config.settings import SettingsError, load_settings
from boba_web.app import agent_connector
from boba_web.twilio_routes import signature_ok
from tests.fakes.twilio_client import form, make_call_sid, open_twilio_stream, post_webhook
from tests.helpers.server import running_server, settings_for_test
from tests.web.test_call_loopback import shop_line


async def start_stream(line: Any, stream_url: str, call_sid: str,
                       parameters: dict[str, str]) -> int | None:
    """Open a `/twilio` stream, send `connected` and `start`, wait for the server to close."""
    with trio.fail_after(10):
        async with open_twilio_stream(
            server_url=line.server.base_url,
            stream_url=stream_url,
            auth_token=line.auth_token,
            call_sid=call_sid,
            parameters=parameters,
        ) as stream:
            await stream.send_connected()
            await stream.send_start()
            await stream.closed.wait()
    code: int | None = stream.close_code
    return code


# --- 1: the stream token ---------------------------------------------------------------------


async def test_stream_token_binds_the_caller_and_is_accepted_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with shop_line(tmp_path, lambda agent: agent.closed.wait()) as line:
        sid = make_call_sid(21)
        twiml = await line.answer(sid, "+14155550199")
        assert twiml.stream_url is not None
        # The token of this call, presented with another caller number: refused, logged,
        # and no agent used (the link /voice pre-opened, DESIGN §5, gets no Settings).
        other_caller = dict(twiml.parameters, caller="+14155550000")
        assert await start_stream(line, twiml.stream_url, sid, other_caller) == 1008
        assert len(line.agent.sessions) <= 1
        assert all(session.settings is None for session in line.agent.sessions)
        assert "not issued for this callSid and caller" in caplog.text

        # The issued token opens the call once ...
        with trio.fail_after(10):
            async with open_twilio_stream(
                server_url=line.server.base_url,
                stream_url=twiml.stream_url,
                auth_token=line.auth_token,
                call_sid=sid,
                parameters=twiml.parameters,
            ) as first:
                await first.send_connected()
                await first.send_start()
                while not any(session.settings for session in line.agent.sessions):
                    await trio.sleep(0.02)
                await first.send_stop()
                await first.closed.wait()
        assert first.close_code == 1000
        # ... and never again, also after that call ended.
        assert await start_stream(line, twiml.stream_url, sid, twiml.parameters) == 1008
        assert len(line.agent.sessions) == 1
        assert "already used" in caplog.text


# --- 3 and 7: one limiter for every staff password check --------------------------------------


def basic(password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"x:{password}".encode()).decode()}


async def test_wrong_staff_passwords_by_any_means_are_limited_together(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server, httpx.AsyncClient(
        base_url=server.base_url
    ) as client:
        wrong = [{"Authorization": "Bearer nope"}, basic("nope")]
        paths = ["/api/orders/1234", "/metrics", "/barista/orders"]
        statuses = []
        for n in range(10):
            response = await client.get(paths[n % 3], headers=wrong[n % 2])
            statuses.append(response.status_code)
        assert statuses == [401] * 10
        eleventh = await client.get("/metrics", headers={"Authorization": "Bearer guess"})
        assert eleventh.status_code == 429
        assert 1 <= int(eleventh.headers["Retry-After"]) <= 60
        assert eleventh.json() == {"error": "Too many wrong staff passwords; try again later."}
        # The login form and the softphone handshake count in the same limiter.
        login = await client.post("/login", data={"password": "nope"})
        assert login.status_code == 429
        # The right password still works from that address.
        assert (await client.get("/metrics", headers=server.staff_headers)).status_code == 200
        assert (await client.get("/api/orders/1234", headers=basic(server.services.staff_password))
                ).status_code == 404


def test_the_limiter_counts_per_address_and_in_all() -> None:
    from boba_runtime.config.auth import CredentialLimiter

    now = [0.0]
    limiter = CredentialLimiter(per_address=10, total=50, clock=lambda: now[0])
    for n in range(50):
        address = f"198.51.100.{n // 5}"  # 10 addresses, 5 wrong guesses each
        assert limiter.retry_after(address) is None
        limiter.failed(address)
    assert limiter.retry_after("203.0.113.9") is not None  # 50 in all: a new address waits too
    now[0] += 60
    assert limiter.retry_after("203.0.113.9") is None
    for _ in range(10):
        limiter.failed("203.0.113.9")
    assert limiter.retry_after("203.0.113.9") == pytest.approx(60)
    assert limiter.retry_after("203.0.113.10") is None
    assert limiter.retry_after("203.0.113.9", per_address=11) is None


async def test_phone_socket_wrong_password_counts_too(tmp_path: Path) -> None:
    import trio_websocket

    async with running_server(tmp_path) as server:
        url = server.base_url.replace("http", "ws") + "/phone/ws"
        statuses = []
        for _ in range(11):
            try:
                async with trio_websocket.open_websocket_url(
                    url, extra_headers=[("Authorization", "Bearer nope")]
                ):
                    pass
            except trio_websocket.HandshakeError as error:
                statuses.append(getattr(error, "status_code", None))
        assert statuses == [401] * 10 + [429]


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    from boba_runtime.config.proxies import client_address, parse_trusted_proxies

    proxies = parse_trusted_proxies("10.0.0.0/8, 192.0.2.1")
    assert client_address("203.0.113.5", "1.2.3.4", proxies) == "203.0.113.5"  # not a proxy
    assert client_address("10.1.1.1", "198.51.100.7", proxies) == "198.51.100.7"
    assert client_address("10.1.1.1", "6.6.6.6, 198.51.100.7, 192.0.2.1", proxies) == (
        "198.51.100.7"  # the nearest hop our proxies did not add; a client's own is ignored
    )
    assert client_address("10.1.1.1", None, proxies) == "10.1.1.1"
    assert client_address("10.1.1.1", "1.2.3.4", ()) == "10.1.1.1"  # no setting: never
    with pytest.raises(ValueError, match="not-an-ip"):
        parse_trusted_proxies("10.0.0.1, not-an-ip")
    settings = load_settings({}, {"BOBA_TRUSTED_PROXIES": "127.0.0.1"}, None)
    assert settings.proxy_networks == parse_trusted_proxies("127.0.0.1/32")


async def test_one_barista_locked_behind_a_proxy_does_not_lock_out_the_others(
    tmp_path: Path,
) -> None:
    env = {"BOBA_TRUSTED_PROXIES": "127.0.0.1"}
    async with running_server(tmp_path, env) as server, httpx.AsyncClient(
        base_url=server.base_url
    ) as client:
        guesser = {"X-Forwarded-For": "203.0.113.66"}
        for _ in range(5):
            response = await client.post("/login", data={"password": "nope"}, headers=guesser)
            assert response.status_code == 401
        locked = await client.post("/login", data={"password": "nope"}, headers=guesser)
        assert locked.status_code == 429
        barista = {"X-Forwarded-For": "198.51.100.20"}
        other = await client.post("/login", data={"password": "nope"}, headers=barista)
        assert other.status_code == 401  # a wrong guess from elsewhere is its own count
        right = await client.post(
            "/login", data={"password": server.services.staff_password}, headers=guesser
        )
        assert right.status_code == 303  # and the right password works even from there


# --- 8 and 9: sessions end on logout; cookie changes come from our own pages ---------------


async def test_logout_ends_the_session_on_every_worker(tmp_path: Path) -> None:
    async with running_server(tmp_path / "a") as first:
        env = {"BOBA_DATABASE": first.settings.database,
               "BOBA_SECRET_KEY": "shared", "BOBA_STAFF_PASSWORD": first.services.staff_password}
        second_settings = settings_for_test(tmp_path / "b", env)
        async with running_server(tmp_path / "b", settings=second_settings) as second:
            key = first.services.secret_key
            assert key == b"shared" or first.settings.secret_key is None
            async with httpx.AsyncClient(base_url=first.base_url) as a:
                login = await a.post("/login", data={"password": first.services.staff_password})
                assert login.status_code == 303
                cookie = login.cookies[SESSION_COOKIE]
                assert (await a.get("/barista/orders")).status_code == 200
                origin = {"Origin": first.base_url}
                assert (await a.post("/logout", headers=origin)).status_code == 303
            for server in (first, second):
                async with httpx.AsyncClient(base_url=server.base_url) as c:
                    c.cookies.set(SESSION_COOKIE, cookie)
                    assert (await c.get("/barista/orders")).status_code == 401


async def test_a_new_staff_password_ends_every_session(tmp_path: Path) -> None:
    from boba_runtime.config.auth import make_session_cookie

    async with running_server(tmp_path) as server:
        services = server.services
        old = make_session_cookie(services.secret_key, services.clock(), password="an old password")
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            client.cookies.set(SESSION_COOKIE, old)
            assert (await client.get("/barista/orders")).status_code == 401


async def test_cookie_authenticated_changes_need_the_public_origin(tmp_path: Path) -> None:
    from boba_runtime.config.auth import make_session_cookie
    from tests.browser.shop import make_draft

    env = {"BOBA_PUBLIC_URL": "http://boba.localhost:8000", "BOBA_VALIDATE_TWILIO": "false"}
    async with running_server(tmp_path, env) as server, httpx.AsyncClient(
        base_url=server.base_url
    ) as client:
        orders = [await server.services.store.commit_order(make_draft()) for _ in range(2)]
        cookie = make_session_cookie(server.services.secret_key, server.services.clock(),
                                     password=server.services.staff_password)
        client.cookies.set(SESSION_COOKIE, cookie)
        path = f"/api/orders/{orders[0].order_number}/done"
        for headers in ({}, {"Origin": "https://evil.example"},
                        {"Referer": "https://evil.example/page"},
                        {"Origin": server.base_url}):  # not BOBA_PUBLIC_URL
            refused = await client.post(path, headers=headers)
            assert refused.status_code == 403, headers
            assert refused.json() == {"error": "Make changes from this shop's own pages."}
        assert (await client.get(f"/api/orders/{orders[0].order_number}")).status_code == 200
        ok = await client.post(path, headers={"Origin": "http://boba.localhost:8000"})
        assert ok.status_code == 200
        by_referer = await client.post(
            f"/api/orders/{orders[1].order_number}/cancel",
            headers={"Referer": "http://boba.localhost:8000/barista"},
        )
        assert by_referer.status_code == 200
        # The password (not a cookie a browser adds by itself) needs no Origin.
        client.cookies.clear()
        picked = await client.post(f"/api/orders/{orders[0].order_number}/picked-up",
                                   headers=server.staff_headers)
        assert picked.status_code == 200


# --- 4: no Twilio auth token behind a public URL --------------------------------------------


def test_unsigned_webhooks_only_for_a_loopback_bind_and_a_loopback_public_url(
    tmp_path: Path,
) -> None:
    local = settings_for_test(tmp_path)
    assert signature_ok(local, "http://127.0.0.1/voice", {}, {})
    behind_proxy = local.__class__(**{
        **{f: getattr(local, f) for f in local.__struct_fields__},
        "public_url": "https://boba.example.com",
    })
    assert not signature_ok(behind_proxy, "https://boba.example.com/voice", {}, {})
    with pytest.raises(SettingsError, match=r"BOBA_PUBLIC_URL names 'boba\.example\.com'"):
        settings_for_test(tmp_path, {"BOBA_PUBLIC_URL": "https://boba.example.com"})
    allowed = settings_for_test(
        tmp_path, {"BOBA_PUBLIC_URL": "https://boba.example.com", "BOBA_VALIDATE_TWILIO": "false"}
    )
    assert signature_ok(allowed, "https://boba.example.com/voice", {}, {})


# --- 5: event-stream caps ---------------------------------------------------------------------


async def test_event_stream_clients_are_capped_per_address_and_per_process(
    tmp_path: Path,
) -> None:
    env = {"BOBA_MAX_SSE_CLIENTS": "25", "BOBA_TRUSTED_PROXIES": "127.0.0.1"}
    async with running_server(tmp_path, env) as server, httpx.AsyncClient(
        base_url=server.base_url, timeout=10, limits=httpx.Limits(max_connections=100)
    ) as client:
        async with trio.open_nursery() as nursery:
            opened: list[int] = []
            release = trio.Event()

            async def listen(address: str, ready: trio.Event) -> None:
                headers = {"X-Forwarded-For": address}
                async with client.stream("GET", "/orders/events", headers=headers) as response:
                    opened.append(response.status_code)
                    ready.set()
                    if response.status_code == 200:
                        await release.wait()

            for _ in range(20):
                ready = trio.Event()
                nursery.start_soon(listen, "198.51.100.1", ready)
                await ready.wait()
            assert opened == [200] * 20
            with trio.fail_after(5):  # an uncapped server streams on and on
                one_more = await client.get("/orders/events",
                                            headers={"X-Forwarded-For": "198.51.100.1"})
            assert one_more.status_code == 429 and "error" in one_more.json()
            for n in range(5):
                ready = trio.Event()
                nursery.start_soon(listen, f"198.51.100.{n + 2}", ready)
                await ready.wait()
            with trio.fail_after(5):
                full = await client.get("/orders/events",
                                        headers={"X-Forwarded-For": "192.0.2.9"})
            assert full.status_code == 503 and "error" in full.json()
            # However many listen, the routes that take calls keep answering.
            assert (await client.get("/healthz")).status_code == 200
            release.set()
        with trio.fail_after(5):  # the slots come back when the streams end
            while True:
                again = await client.get("/healthz")
                assert again.status_code == 200
                async with client.stream("GET", "/orders/events") as response:
                    if response.status_code == 200:
                        break
                await trio.sleep(0.05)


# --- 6: wildcard bind ----------------------------------------------------------------------------


def test_local_agent_is_dialed_on_loopback_for_a_wildcard_bind(tmp_path: Path) -> None:
    settings = settings_for_test(tmp_path, {"BOBA_HOST": "0.0.0.0",
                                            "BOBA_VALIDATE_TWILIO": "false"})
    seen: dict[str, Any] = {}

    import boba_web.app as routes

    def fake_connector(url: str, **kw: Any) -> str:
        seen["url"] = url
        return url

    original = routes.websocket_connector
    routes.websocket_connector = fake_connector  # type: ignore[assignment]
    try:
        agent_connector(settings, {"server": ("172.17.0.2", 8000)})
        assert seen["url"] == "ws://127.0.0.1:8000/agent/local"
        agent_connector(settings, {"server": ("2001:db8::5", 8000)})
        assert seen["url"] == "ws://[::1]:8000/agent/local"
    finally:
        routes.websocket_connector = original  # type: ignore[assignment]


# --- 12: caller-controlled strings ------------------------------------------------------------


def test_call_sid_must_have_twilios_shape() -> None:
    from boba_web.twilio_routes import call_sid_ok

    assert call_sid_ok("CA" + "0123456789abcdef" * 2)
    for bad in ("", "CA123", "CA" + "g" * 32, "PH" + "0" * 32, "CA" + "0" * 32 + "\n",
                "CA" + "0" * 33):
        assert not call_sid_ok(bad)


async def test_voice_refuses_a_forged_call_sid_and_logs_it_escaped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    forged = "CA1\n2026-12-02 INFO boba: order 1234 refunded"
    async with running_server(tmp_path) as server, httpx.AsyncClient() as client:
        response = await post_webhook(
            client, server_url=server.base_url, public_url=server.settings.public_url,
            path="/voice", params=form(forged, "+14155551234"), auth_token=None,
        )
        assert response.status_code == 400
        assert response.json() == {"error": "The CallSid is not CA followed by 32 hex digits."}
    messages = [record.getMessage() for record in caplog.records]
    assert any("CA1\\n2026-12-02" in message for message in messages)
    assert not any("\n2026-12-02 INFO boba" in message for message in messages)


def test_shown_escapes_control_characters() -> None:
    from boba_runtime.config.logsafe import shown

    assert shown("CA0123") == "CA0123"
    assert shown("a\nb\r\x1b[31m") == "a\\nb\\r\\x1b[31m"
    assert shown("x" * 500).endswith("…") and len(shown("x" * 500)) == 201


# --- 15: no-store on staff JSON; no raw store errors to anonymous clients ---------------------


async def test_staff_json_is_not_cached_and_store_errors_stay_inside(tmp_path: Path) -> None:
    from boba_runtime.store.order_store import StoreUnavailable
    from tests.browser.shop import make_draft

    async with running_server(tmp_path) as server, httpx.AsyncClient(
        base_url=server.base_url
    ) as client:
        order = await server.services.store.commit_order(make_draft())
        details = await client.get(f"/api/orders/{order.order_number}",
                                   headers=server.staff_headers)
        assert details.status_code == 200
        assert details.headers["Cache-Control"] == "no-store"
        done = await client.post(f"/api/orders/{order.order_number}/done",
                                 headers=server.staff_headers)
        assert done.headers["Cache-Control"] == "no-store"

        secret_text = "could not connect to db.internal:5432 as boba_admin"

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable(secret_text)

        store = server.services.store
        store.ping = broken  # type: ignore[method-assign]
        store.list_orders = broken  # type: ignore[method-assign]
        health = await client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert "db.internal" not in health.text
        listing = await client.get("/api/orders")
        assert listing.status_code == 503 and "db.internal" not in listing.text


# --- 10: private files ---------------------------------------------------------------------------


async def test_database_and_its_wal_are_private(tmp_path: Path) -> None:
    from boba_runtime.store.order_store import OrderStore
    from tests.browser.shop import make_draft

    folder = tmp_path / "new-folder"
    async with await OrderStore.open(f"sqlite:///{folder / 'boba.sqlite3'}") as store:
        await store.commit_order(make_draft())
        files = [folder / "boba.sqlite3", folder / "boba.sqlite3-wal", folder / "boba.sqlite3-shm"]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


async def test_recordings_are_private_and_hold_no_stream_token(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from boba_proto.recording import REDACTED, replay_lines
    from boba_runtime.call.recorder import recorder_factory
    from boba_runtime.call.runner import call_config_from_settings
    from boba_runtime.services import load_menu

    settings = settings_for_test(tmp_path)
    config = call_config_from_settings(settings, load_menu(settings))
    folder = tmp_path / "recordings"
    recorder = recorder_factory(folder, now=lambda: datetime(2026, 12, 2, tzinfo=UTC))(config)
    token = "1800000000.0123456789abcdef0123456789abcdef"
    start = tw.decode(tw.encode_event(tw.Start(
        stream_sid="MZ" + "1" * 32, sequence_number="1",
        start=tw.StartInfo(
            stream_sid="MZ" + "1" * 32, call_sid=make_call_sid(3), account_sid="AC" + "0" * 32,
            tracks=["inbound"], custom_parameters={"token": token, "caller": "+14155550100"},
            media_format=tw.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
        ),
    )))
    from boba_proto.call import CallSession

    session = CallSession(config)
    recorder.record_input(0.0, start)
    recorder.record_outputs(0.0, session.handle(start))
    recorder.begin(make_call_sid(3))
    await recorder.aclose()
    [path] = list(folder.iterdir())
    text = path.read_text()
    assert token not in text and REDACTED in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    report = replay_lines(text.splitlines())
    assert report.difference is None, report.difference



# --- 13: a socket that never starts --------------------------------------------------------


async def test_a_phone_socket_without_start_is_closed_after_10_s(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    from boba_runtime.call.runner import START_TIMEOUT_S, run_call
    from tests.runtime.test_call_runner import MemoryAgent, MemoryPhone, Store, make_deps

    assert START_TIMEOUT_S == 10.0
    phone, agent = MemoryPhone(), MemoryAgent()
    deps = make_deps(tmp_path, Store())
    began = trio.current_time()
    with trio.fail_after(60):  # virtual seconds
        report = await run_call(phone, deps, agent.connect)
    assert trio.current_time() - began >= 10.0  # virtual time: no real wait
    assert report.refused == "no start within 10 s"
    assert phone.close_code == 1008
    assert agent.connects == 0
    assert deps.registry.active_count == 0


# --- 14: the countries the shop texts ------------------------------------------------------------


def test_sms_countries_default_to_the_senders_country(tmp_path: Path) -> None:
    from boba_runtime.call.runner import call_config_from_settings
    from boba_runtime.services import load_menu

    assert settings_for_test(tmp_path).sms_countries == ("US",)
    british = settings_for_test(tmp_path, {"TWILIO_FROM_NUMBER": "+442079460958"})
    assert british.sms_countries == ("GB",)
    both = settings_for_test(tmp_path, {"BOBA_SMS_COUNTRIES": "us, ca"})
    assert both.sms_countries == ("US", "CA")
    assert call_config_from_settings(both, load_menu(both)).sms_countries == ("US", "CA")
    with pytest.raises(SettingsError, match="BOBA_SMS_COUNTRIES"):
        settings_for_test(tmp_path, {"BOBA_SMS_COUNTRIES": "US, Narnia"})
