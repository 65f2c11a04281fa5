"""`GET /phone` and `WS /phone/ws` (CONTRACT §9): staff only, Twilio's message set plus
the `text`, `transcript` and `function` events."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
import trio_websocket

from boba_proto import twilio as tw
from boba_proto.call import CallerText
from boba_proto.errors import RemoteProtocolError
from boba_proto.phone import decode_from_phone as decode_phone_frame
from tests.helpers.server import RunningServer


def ws_url(server: RunningServer) -> str:
    return server.base_url.replace("http://", "ws://") + "/phone/ws"


async def test_the_page_is_the_login_form_without_a_staff_session(
    boba_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
        anonymous = await client.get("/phone")
        assert anonymous.status_code == 200
        assert 'name="password"' in anonymous.text and "phone.js" not in anonymous.text
        staff = await client.get("/phone", headers=boba_server.staff_headers)
        assert staff.status_code == 200 and "phone.js" in staff.text
        assert "default-src 'self'" in staff.headers["Content-Security-Policy"]
        script = await client.get("/assets/phone.js")
        assert script.status_code == 200 and "phone/ws" in script.text


@pytest.mark.parametrize("headers", [
    [], [(b"Authorization", b"Bearer wrong")], [(b"Cookie", b"boba_session=1.forged")],
])
async def test_the_socket_needs_the_staff_password_or_session(
    boba_server: RunningServer, headers: list[tuple[bytes, bytes]]
) -> None:
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(ws_url(boba_server), extra_headers=headers):
            pass
    assert refused.value.status_code == 401
    assert json.loads(refused.value.body or b"{}") == {"error": "Staff login required."}


async def test_a_cross_site_page_cannot_open_it(boba_server: RunningServer) -> None:
    headers = [(b"Authorization", f"Bearer {boba_server.services.staff_password}".encode()),
               (b"Origin", b"https://evil.example")]
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(ws_url(boba_server), extra_headers=headers):
            pass
    assert refused.value.status_code == 403


async def test_a_logged_in_browser_talks_to_the_agent_by_text(
    boba_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
        login = await client.post("/login", data={"password": boba_server.services.staff_password})
        assert login.status_code == 303
        cookie = login.cookies["boba_session"]
    host = boba_server.base_url.removeprefix("http://")
    headers = [(b"Cookie", f"boba_session={cookie}".encode()),
               (b"Origin", f"http://{host}".encode())]
    async with trio_websocket.open_websocket_url(ws_url(boba_server),
                                                 extra_headers=headers) as ws:
        start = tw.Start(stream_sid="MZ1", sequence_number="1", start=tw.StartInfo(
            stream_sid="MZ1", call_sid="CAborrowed",
            media_format=tw.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
        ))
        await ws.send_message(tw.encode_event(start))
        await ws.send_message(json.dumps({"event": "text", "text": "what's on the menu?"}))
        seen: list[dict[str, object]] = []
        with trio.fail_after(10):
            while not any(e.get("event") == "function" for e in seen) or not any(
                e.get("role") == "assistant" and "We have" in str(e.get("content"))
                for e in seen
            ):
                seen.append(json.loads(await ws.get_message()))
        kinds = {str(e["event"]) for e in seen}
        assert {"transcript", "function", "media", "mark"} <= kinds
        function = next(e for e in seen if e["event"] == "function")
        assert function["name"] == "menu_summary" and function["arguments"] == "{}"
        assert json.loads(str(function["result"]))["ok"] is True
        user = [e for e in seen if e.get("role") == "user"]
        assert user == [{"event": "transcript", "role": "user",
                         "content": "what's on the menu?"}]
        await ws.send_message(tw.encode_event(tw.Stop(stream_sid="MZ1", sequence_number="3")))
        with trio.fail_after(5), pytest.raises(trio_websocket.ConnectionClosed):
            while True:
                await ws.get_message()
    # The server named the call itself; the borrowed Twilio sid was not used.
    assert boba_server.services.calls.outcome("CAborrowed") is None


def test_frames_decode_as_twilio_events_plus_text() -> None:
    assert decode_phone_frame('{"event": "text", "text": "hi"}', call_sid="PH1") == \
        CallerText(text="hi")
    start = tw.Start(stream_sid="MZ1", sequence_number="1", start=tw.StartInfo(
        stream_sid="MZ1", call_sid="CAx",
        media_format=tw.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
    ))
    event = decode_phone_frame(tw.encode_event(start), call_sid="PH1")
    assert isinstance(event, tw.Start) and event.start.call_sid == "PH1"
    with pytest.raises(RemoteProtocolError):
        decode_phone_frame('{"event": "text", "text": 5}', call_sid="PH1")
    with pytest.raises(RemoteProtocolError):
        decode_phone_frame(json.dumps({"event": "text", "text": "x" * 1001}), call_sid="PH1")
    assert isinstance(decode_phone_frame('{"event": "wave"}', call_sid="PH1"),
                      tw.UnknownTwilioEvent)


async def test_a_phone_that_drops_mid_call_frees_its_slot(boba_server: RunningServer) -> None:
    headers = [(b"Authorization", f"Bearer {boba_server.services.staff_password}".encode())]
    registry = boba_server.services.calls
    async with trio_websocket.open_websocket_url(ws_url(boba_server),
                                                 extra_headers=headers) as ws:
        start = tw.Start(stream_sid="MZ2", sequence_number="1", start=tw.StartInfo(
            stream_sid="MZ2", call_sid="",
            media_format=tw.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
        ))
        await ws.send_message(tw.encode_event(start))
        await ws.send_message(json.dumps({"event": "text", "text": "a taro milk tea"}))
        with trio.fail_after(5):
            while json.loads(await ws.get_message()).get("event") != "function":
                pass
        assert registry.active_count == 1
    with trio.fail_after(5):
        while registry.active_count:
            await trio.sleep(0.05)
    async with httpx.AsyncClient(base_url=boba_server.base_url) as client:
        assert (await client.get("/api/orders")).json() == []  # nothing half-built committed
