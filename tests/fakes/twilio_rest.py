"""A fake Twilio REST API on 127.0.0.1, scriptable to fail, drop, stall or refuse.

A real HTTP server (`http.server.ThreadingHTTPServer` in a daemon thread), so it serves
the real `twilio` client from pytest-trio tests, plain tests and `boba serve` child
processes alike (point `TWILIO_API_BASE_URL` at `fake.base_url`).

    with FakeTwilioRest() as fake:
        fake.script_messages(Fail(500, 20500), Stall(2.0))   # next two Messages requests
        ... send ...
        assert [m.form["Body"] for m in fake.messages()] == [...]

Routes: `POST /2010-04-01/Accounts/{sid}/Messages.json` (form To, From, Body; Basic auth
account sid / auth token) answers 201 with `sid`, `status`, `to`, `from`, `body`;
`POST /2010-04-01/Accounts/{sid}/Calls/{CA}.json` answers 200 with the call;
`GET /2010-04-01/Accounts/{sid}.json` answers the account (`account_status` sets its
status) and `GET /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json[?PhoneNumber=…]`
pages through `add_number(...)`'s numbers, both in Twilio's JSON shapes (`boba check`).
Every request is recorded, including failed, dropped and unauthorised ones. Unscripted
requests succeed.
`stop_listening()` / `start_listening()` close and reopen the port (connection refused).

It validates what Twilio validates, with Twilio's own error JSON (`code`, `message`,
`more_info`, `status`): Basic auth (401, 20003), `To` (21604 missing, 21211 not E.164),
`From` (21603 missing, 21212 not E.164), `Body` (21602 missing, 21617 over 1600
characters). It speaks HTTP/1.1 with keep-alive like api.twilio.com, so a client reuses
its connections (`connection_count()`), and `close_idle_connections()` closes the ones
waiting for a next request, as a server's idle timeout does (a stale pooled connection).

Run standalone for manual tests: `python -m tests.fakes.twilio_rest [--port N]`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import msgspec

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
CALL_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<call>[^/]+)\.json$")
ACCOUNT_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)\.json$")
NUMBERS_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>[^/]+)/IncomingPhoneNumbers\.json$"
)


# --- scripted behaviours -----------------------------------------------------------------


class Succeed(msgspec.Struct, frozen=True):
    """Answer normally (201 for a message, 200 for a call)."""


class Fail(msgspec.Struct, frozen=True):
    """Answer `status` with Twilio's legacy error JSON carrying `code` (None: no code)."""

    status: int
    code: int | None = None
    message: str = "Scripted failure"


class Drop(msgspec.Struct, frozen=True):
    """Read the whole request, then close the connection without answering."""


class Stall(msgspec.Struct, frozen=True):
    """Read the request, create the message, wait `seconds` (past the client's timeout),
    then answer 201: Twilio took it, the client never hears so."""

    seconds: float


class CloseOnAccept(msgspec.Struct, frozen=True):
    """Close the socket as the next request arrives, before reading it (a reset; the
    client has sent). Queued with `script_messages`, it applies to the next request whatever
    its route (unknown before reading), on a new or a kept-alive connection."""


Behaviour = Succeed | Fail | Drop | Stall | CloseOnAccept


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    kind: str  # "message" | "call" | "other"
    form: dict[str, str]
    auth_user: str | None
    authorised: bool
    behaviour: str  # what the fake did: succeed, fail:<status>, drop, stall, unauthorised, ...
    created_sid: str | None  # the SM/CA sid when the fake created or updated the resource
    received_at: float = field(default_factory=time.monotonic)
    query: dict[str, str] = field(default_factory=dict)
    connection: int = 0  # which TCP connection carried it (1, 2, ... in accept order)


@dataclass
class IncomingNumber:
    """One of the account's phone numbers, as the console configures it."""

    phone_number: str
    voice_url: str = ""
    voice_method: str = "POST"
    voice_application_sid: str = ""
    sms: bool = True
    voice: bool = True
    sid: str = field(default_factory=lambda: "PN" + secrets.token_hex(16))

    def to_json(self, account_sid: str) -> dict[str, object]:
        """The fields of Twilio's IncomingPhoneNumber resource (2010-04-01)."""
        return {
            "account_sid": account_sid,
            "address_requirements": "none",
            "api_version": "2010-04-01",
            "beta": False,
            "capabilities": {"voice": self.voice, "sms": self.sms, "mms": False, "fax": False},
            "date_created": "Thu, 30 Jul 2015 23:19:04 +0000",
            "date_updated": "Thu, 30 Jul 2015 23:19:04 +0000",
            "friendly_name": self.phone_number,
            "identity_sid": None,
            "phone_number": self.phone_number,
            "origin": "twilio",
            "sid": self.sid,
            "sms_application_sid": "",
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": "",
            "status_callback": "",
            "status_callback_method": "POST",
            "trunk_sid": None,
            "uri": f"/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{self.sid}.json",
            "voice_application_sid": self.voice_application_sid,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": self.voice_method,
            "voice_url": self.voice_url,
            "emergency_status": "Inactive",
            "emergency_address_sid": None,
            "bundle_sid": None,
            "status": "in-use",
        }


class FakeTwilioRest:
    """The fake server; thread-safe; use as a (sync) context manager."""

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._lock = threading.Condition()
        self._scripts: dict[str, deque[Behaviour]] = {
            "message": deque(), "call": deque(), "account": deque(), "numbers": deque(),
        }
        self.account_status = "active"  # Twilio's account status: active, suspended, closed
        self.account_type = "Full"  # or "Trial"
        self.numbers: list[IncomingNumber] = []
        self._requests: list[RecordedRequest] = []
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections = 0
        self._idle: dict[int, socket.socket] = {}  # connection number -> socket between requests
        self._open: dict[int, socket.socket] = {}  # every connection not yet closed
        self.port = port
        self.start_listening()

    # -- lifecycle --

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_listening(self) -> None:
        """Bind (again, on the same port after `stop_listening`) and serve."""
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-twilio-{self.port}",
        )
        self._thread.start()

    def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused until `start_listening`."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:  # a stopped server keeps no kept-alive connection either
            open_connections = list(self._open.values())
        for sock in open_connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    def close(self) -> None:
        self._closing.set()  # wakes stalled handlers
        self.stop_listening()

    def __enter__(self) -> FakeTwilioRest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- scripting and inspection --

    def script_messages(self, *behaviours: Behaviour) -> None:
        """Queue what the next Messages requests get, one behaviour per request."""
        with self._lock:
            self._scripts["message"].extend(behaviours)

    def script_calls(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._scripts["call"].extend(behaviours)

    def script_reads(self, kind: str, *behaviours: Behaviour) -> None:
        """Queue what the next `account` or `numbers` GETs get (Fail, Drop, Stall)."""
        with self._lock:
            self._scripts[kind].extend(behaviours)

    def add_number(self, phone_number: str, **fields: Any) -> IncomingNumber:
        number = IncomingNumber(phone_number, **fields)
        with self._lock:
            self.numbers.append(number)
        return number

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def messages(self) -> list[RecordedRequest]:
        """Every Messages request received (whatever the fake answered)."""
        return [r for r in self.requests() if r.kind == "message"]

    def created_messages(self) -> list[RecordedRequest]:
        """Messages Twilio would have created (answered 201, or stalled after creating)."""
        return [r for r in self.messages() if r.created_sid is not None]

    def calls(self) -> list[RecordedRequest]:
        return [r for r in self.requests() if r.kind == "call"]

    def connection_count(self) -> int:
        """TCP connections accepted so far."""
        with self._lock:
            return self._connections

    def close_idle_connections(self, at_least: int = 0, timeout: float = 5.0) -> int:
        """Close every kept-alive connection that waits for a next request (an idle
        timeout on Twilio's side); how many were closed.

        `at_least`: first wait until that many are idle. The client has its answer a moment
        before the server's thread is back waiting on the connection; without the wait a
        close right after a send could find nothing idle yet."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._idle) < at_least:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fewer than {at_least} idle connections at the fake")
                self._lock.wait(left)
            idle = list(self._idle.values())
            self._idle.clear()
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(idle)

    def wait_for_requests(self, count: int, *, kind: str = "message", timeout: float = 5.0) -> None:
        """Block (a thread, not the event loop) until `count` requests of `kind` arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(r.kind == kind for r in self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake Twilio got fewer than {count} {kind} requests")
                self._lock.wait(left)

    async def await_requests(
        self, count: int, *, kind: str = "message", timeout: float = 5.0
    ) -> None:
        """The trio-friendly `wait_for_requests` (polls; never blocks the event loop)."""
        import trio

        with trio.fail_after(timeout):
            while sum(r.kind == kind for r in self.requests()) < count:
                await trio.sleep(0.01)

    # -- used by the handler thread --

    def _next_behaviour(self, kind: str) -> Behaviour:
        with self._lock:
            script = self._scripts.get(kind)
            return script.popleft() if script else Succeed()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _check_auth(self, header: str | None) -> tuple[str | None, bool]:
        if not header or not header.startswith("Basic "):
            return None, False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None, False
        ok = secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        )
        return user, ok


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeTwilioRest

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and leave are normal here


E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_BODY_CHARS = 1600


def twilio_error(status: int, code: int, message: str) -> dict[str, object]:
    """Twilio's error JSON, as api.twilio.com sends it."""
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def message_form_error(form: dict[str, str]) -> dict[str, object] | None:
    """What Twilio answers a Messages create with this form, if it refuses it."""
    to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
    if not to:
        return twilio_error(400, 21604, "A 'To' phone number is required.")
    if not from_ and not form.get("MessagingServiceSid"):
        return twilio_error(400, 21603, "A 'From' phone number is required.")
    if not body and not form.get("MediaUrl"):
        return twilio_error(400, 21602, "Message body is required.")
    if not E164.match(to):
        return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if from_ and not E164.match(from_):
        return twilio_error(400, 21212, f"Invalid From Number (caller ID): {from_}")
    if len(body) > MAX_BODY_CHARS:
        return twilio_error(
            400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like api.twilio.com
    connection_number = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        fake = self.server.fake
        with fake._lock:
            fake._connections += 1
            self.connection_number = fake._connections
            fake._open[self.connection_number] = self.connection

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._open.pop(self.connection_number, None)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        fake = self.server.fake
        with fake._lock:
            fake._idle[self.connection_number] = self.connection
            fake._lock.notify_all()
        try:
            arrived = self.connection.recv(1, socket.MSG_PEEK)  # wait for the next request
        except OSError:
            arrived = b""
        finally:
            with fake._lock:
                fake._idle.pop(self.connection_number, None)
        if not arrived:
            self.close_connection = True
            return
        # CloseOnAccept: reset the connection the request came on, unread.
        with fake._lock:
            pending = fake._scripts["message"]
            close_now = bool(pending) and isinstance(pending[0], CloseOnAccept)
            if close_now:
                pending.popleft()
        if close_now:
            fake._record(RecordedRequest("?", "?", "message", {}, None, False,
                                         "close_on_accept", None,
                                         connection=self.connection_number))
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        super().handle_one_request()

    def do_GET(self) -> None:
        fake = self.server.fake
        path, _, raw_query = self.path.partition("?")
        query = {key: values[-1] for key, values in parse_qs(raw_query).items()}
        user, authorised = fake._check_auth(self.headers.get("Authorization"))
        account_match = ACCOUNT_PATH.match(path)
        numbers_match = NUMBERS_PATH.match(path)
        kind = "account" if account_match else "numbers" if numbers_match else "other"

        def record(behaviour: str) -> None:
            fake._record(RecordedRequest(
                "GET", path, kind, {}, user, authorised, behaviour, None, query=query,
                connection=self.connection_number,
            ))

        match = account_match or numbers_match
        if match is None:
            record("not_found")
            self._answer(404, {"code": 20404, "message": "not found in the fake", "status": 404})
            return
        if not authorised:
            record("unauthorised")
            self._answer(401, {
                "code": 20003, "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401,
            })
            return
        if match["account"] != fake.account_sid:
            record("not_found")
            self._answer(404, {
                "code": 20404, "message": f"The requested resource {path} was not found",
                "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404,
            })
            return
        behaviour = fake._next_behaviour(kind)
        match behaviour:
            case Fail(status=status, code=code, message=text):
                record(f"fail:{status}")
                self._answer(status, {"code": code, "message": text, "status": status})
                return
            case Drop():
                record("drop")
                self.close_connection = True
                return
            case Stall(seconds=seconds):
                record("stall")
                fake._closing.wait(seconds)
            case _:
                record("succeed")
        if kind == "account":
            self._answer(200, _account_json(fake.account_sid, fake.account_status,
                                            fake.account_type))
        else:
            self._answer(200, _numbers_page(fake, path, query))

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        form = {key: values[-1] for key, values in parse_qs(raw, keep_blank_values=True).items()}
        user, authorised = fake._check_auth(self.headers.get("Authorization"))
        path = self.path.split("?", 1)[0]
        message_match = MESSAGES_PATH.match(path)
        call_match = CALL_PATH.match(path)
        kind = "message" if message_match else "call" if call_match else "other"

        def record(behaviour: str, sid: str | None = None) -> None:
            fake._record(RecordedRequest("POST", path, kind, form, user, authorised, behaviour,
                                         sid, connection=self.connection_number))

        if kind == "other":
            record("not_found")
            self._answer(404, twilio_error(404, 20404, "The requested resource was not found"))
            return
        match = message_match or call_match
        assert match is not None
        if not authorised or match["account"] != fake.account_sid:
            record("unauthorised")
            self._answer(401, twilio_error(401, 20003, "Authenticate"))
            return
        if kind == "message" and (invalid := message_form_error(form)) is not None:
            record(f"invalid:{invalid['code']}")
            self._answer(400, invalid)
            return
        behaviour = fake._next_behaviour(kind)
        match behaviour:
            case Fail(status=status, code=code, message=text):
                record(f"fail:{status}")
                self._answer(status, {"code": code, "message": text, "more_info": None,
                                      "status": status})
            case Drop():
                record("drop")
                self.close_connection = True
            case Stall(seconds=seconds):
                sid = _new_sid(kind)
                record("stall", sid)
                fake._closing.wait(seconds)
                self._answer_created(kind, sid, form, match)
            case _:
                sid = _new_sid(kind) if kind == "message" else match["call"]
                record("succeed", sid)
                self._answer_created(kind, sid, form, match)

    def _answer_created(
        self, kind: str, sid: str, form: dict[str, str], match: re.Match[str]
    ) -> None:
        if kind == "message":
            self._answer(
                201,
                {
                    "sid": sid,
                    "account_sid": match["account"],
                    "status": "queued",
                    "to": form.get("To"),
                    "from": form.get("From"),
                    "body": form.get("Body"),
                    "num_segments": "1",
                    "error_code": None,
                    "error_message": None,
                },
            )
        else:
            self._answer(
                200,
                {
                    "sid": sid,
                    "account_sid": match["account"],
                    "status": form.get("Status", "in-progress"),
                },
            )

    def _answer(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (timed out) before the answer


def _account_json(sid: str, status: str, kind: str = "Full") -> dict[str, object]:
    """Twilio's Account resource (2010-04-01), as `GET /Accounts/{sid}.json` returns it."""
    base = f"/2010-04-01/Accounts/{sid}"
    return {
        "auth_token": "redacted-by-the-fake",
        "date_created": "Thu, 30 Jul 2015 23:19:04 +0000",
        "date_updated": "Thu, 30 Jul 2015 23:19:04 +0000",
        "friendly_name": "BobaRista shop",
        "owner_account_sid": sid,
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "incoming_phone_numbers": f"{base}/IncomingPhoneNumbers.json",
            "messages": f"{base}/Messages.json",
            "calls": f"{base}/Calls.json",
        },
        "type": kind,
        "uri": f"{base}.json",
    }


def _numbers_page(fake: FakeTwilioRest, path: str, query: dict[str, str]) -> dict[str, object]:
    """One page of IncomingPhoneNumbers, filtered by `PhoneNumber` like Twilio's list."""
    with fake._lock:
        numbers = list(fake.numbers)
    wanted = query.get("PhoneNumber")
    if wanted is not None:
        numbers = [n for n in numbers if n.phone_number == wanted]
    page_size = int(query.get("PageSize", "50"))
    listed = [n.to_json(fake.account_sid) for n in numbers[:page_size]]
    uri = f"{path}?PageSize={page_size}&Page=0"
    return {
        "end": max(0, len(listed) - 1),
        "first_page_uri": uri,
        "incoming_phone_numbers": listed,
        "next_page_uri": None,
        "page": 0,
        "page_size": page_size,
        "previous_page_uri": None,
        "start": 0,
        "uri": uri,
    }


def _new_sid(kind: str) -> str:
    return ("SM" if kind == "message" else "CA") + secrets.token_hex(16)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Serve a fake Twilio REST API on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    args = parser.parse_args(argv)
    with FakeTwilioRest(
        account_sid=args.account_sid, auth_token=args.auth_token, port=args.port
    ) as fake:
        print(f"fake Twilio REST API at {fake.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
