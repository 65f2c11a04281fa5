"""`boba check`: before the first real call, is everything the settings point at right?

    boba check
    ok    settings: every setting parses; the menu has 2 flavors.
    ok    deepgram: DEEPGRAM_API_KEY works and Deepgram offers google gemini-3.5-flash.
    fail  twilio number: +14155550100's voice URL is https://old.example.com/voice, …
    warn  public URL: https://boba.example.com/healthz cannot be reached from here (…).
    ...

One line per check, `ok`/`warn`/`fail` and a sentence that says what to do (and whose
fault it is: a setting here, or the remote service). Exit 0 when nothing failed, 1 when
something failed, 2 on bad settings (one line naming the variable, like `boba serve`).
Secrets are never printed: keys and tokens only ever appear as the variable's name.

It reads (never changes) the store, Deepgram's think-model list (the check `boba serve`
does at start, `agent_link.think_model_problem`) and Twilio's Account and
IncomingPhoneNumbers resources through the `twilio` package (`TWILIO_API_BASE_URL`).
"""

from __future__ import annotations

import enum
import json
import os
import socket
import stat
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio

from boba_runtime.call.agent_link import (
    fetch_think_models,
    is_deepgram_url,
    think_model_problem,
    think_models_url,
)
from boba_runtime.config.settings import Settings, SettingsError, is_loopback_host, load_settings
from boba_runtime.services import load_menu
from boba_runtime.store.order_store import (
    POSTGRES_SCHEMES,
    OrderStore,
    StoreError,
    redact_url,
    sqlite_path_from_url,
)
from boba_runtime.store.sms import _exception_chain

TIMEOUT_S = 5.0
CONSOLE_NUMBER_PAGE = (
    "Twilio console → Phone Numbers → Manage → Active numbers → your number → "
    "Voice Configuration"
)


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class CheckLine(msgspec.Struct, frozen=True):
    status: Status
    subject: str
    sentence: str

    def render(self) -> str:
        return f"{self.status.value:<5} {self.subject}: {self.sentence}"


def ok(subject: str, sentence: str) -> CheckLine:
    return CheckLine(Status.OK, subject, sentence)


def warn(subject: str, sentence: str) -> CheckLine:
    return CheckLine(Status.WARN, subject, sentence)


def fail(subject: str, sentence: str) -> CheckLine:
    return CheckLine(Status.FAIL, subject, sentence)


def _reason(exc: BaseException) -> str:
    """A short, secret-free description of a network error (also one wrapped by requests)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    chain = list(_exception_chain(exc))
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return "connection refused"
    if any(isinstance(item, TimeoutError | socket.timeout) for item in chain):
        return f"no answer within {TIMEOUT_S:g} s"
    if isinstance(exc, urllib.error.URLError):
        return _reason(exc.reason) if isinstance(exc.reason, BaseException) else str(exc.reason)
    resolving = [item for item in chain if isinstance(item, socket.gaierror)]
    if resolving:
        return f"the name does not resolve ({resolving[0].strerror})"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


# --- Deepgram ------------------------------------------------------------------------------

ModelsFetch = Callable[[str, str, float], list[dict[str, object]]]


def check_deepgram(settings: Settings, fetch: ModelsFetch = fetch_think_models) -> CheckLine:
    subject = "deepgram"
    if settings.agent_url == "local":
        why = "no DEEPGRAM_API_KEY" if not settings.deepgram_api_key else "BOBA_AGENT_URL=local"
        return warn(subject, f"{why}: calls go to the built-in local agent (for trying the "
                    "shop, not for customers); set DEEPGRAM_API_KEY (and leave BOBA_AGENT_URL "
                    "unset) to take real calls.")
    key = settings.deepgram_api_key
    if not key:
        if is_deepgram_url(settings.agent_url):
            return fail(subject, "BOBA_AGENT_URL is Deepgram's but DEEPGRAM_API_KEY is not set.")
        return warn(subject, f"BOBA_AGENT_URL is {settings.agent_url} and no DEEPGRAM_API_KEY "
                    "is set: the agent and its think model were not checked.")
    url = think_models_url(settings.agent_url)
    try:
        models = fetch(url, key, TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return fail(subject, f"Deepgram refused DEEPGRAM_API_KEY (HTTP {exc.code}): "
                        "the key is wrong, expired or lacks the agent scope.")
        return fail(subject, f"Deepgram's think-model list at {url} answered HTTP {exc.code} "
                    "(a problem on Deepgram's side, or BOBA_AGENT_URL points elsewhere).")
    except (OSError, ValueError) as exc:
        return fail(subject, f"could not fetch Deepgram's think-model list at {url} "
                    f"({_reason(exc)}): check this host's network and BOBA_AGENT_URL.")
    problem = think_model_problem(
        models, provider=settings.think_provider, model=settings.think_model
    )
    if problem is not None:
        return fail(subject, problem + ".")
    return ok(subject, f"DEEPGRAM_API_KEY works and Deepgram offers "
              f"{settings.think_provider} {settings.think_model}.")


# --- Twilio --------------------------------------------------------------------------------


def twilio_client(settings: Settings) -> Any:
    from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
    from twilio.rest import Client  # type: ignore[import-untyped]

    from boba_runtime.store.sms import _quiet_logger

    http = TwilioHttpClient(timeout=TIMEOUT_S, logger=_quiet_logger())
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http)
    client.api.base_url = settings.twilio_api_base_url.rstrip("/")
    return client


def _twilio_error(exc: BaseException, what: str, settings: Settings) -> CheckLine:
    from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]

    if isinstance(exc, TwilioRestException):
        if exc.status == 401:
            return fail("twilio", "Twilio refused TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN "
                        f"(HTTP 401, code {exc.code}): copy both again from the console's "
                        "Account Info.")
        if exc.status == 404:
            return fail("twilio", f"Twilio knows no account {settings.twilio_account_sid} "
                        "for these credentials: check TWILIO_ACCOUNT_SID.")
        return fail("twilio", f"Twilio answered HTTP {exc.status} (code {exc.code}) to "
                    f"{what}: a problem on Twilio's side; try again later.")
    return fail("twilio", f"could not reach Twilio at {settings.twilio_api_base_url} to {what} "
                f"({_reason(exc)}): check this host's network and TWILIO_API_BASE_URL.")


def check_twilio(settings: Settings, client_factory: Callable[[Settings], Any] = twilio_client,
                 ) -> list[CheckLine]:
    """The credentials (fetch the account), then the number's voice URL and SMS."""
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if sid is None and token is None:
        return [warn("twilio", "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set: fine "
                     "for trying it locally, but Twilio cannot reach a shop without them.")]
    if sid is None or token is None:
        missing = "TWILIO_ACCOUNT_SID" if sid is None else "TWILIO_AUTH_TOKEN"
        return [fail("twilio", f"{missing} is not set (the other Twilio credential is).")]
    client = client_factory(settings)
    try:
        account = client.api.v2010.accounts(sid).fetch()
    except Exception as exc:
        return [_twilio_error(exc, "fetch the account", settings)]
    if account.status != "active":
        return [fail("twilio", f"the Twilio account is {account.status}: calls and texts "
                     "are refused until it is active again (Twilio console → Account).")]
    kind = " (a trial account: it calls and texts verified numbers only)" \
        if account.type == "Trial" else ""
    lines = [ok("twilio", f"TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN work; the account is "
                f"active{kind}.")]
    lines.append(_check_number(settings, client))
    return lines


def sms_capable(settings: Settings, client: Any) -> bool | None:
    """Whether TWILIO_FROM_NUMBER can send texts (None: unknown)."""
    try:
        found = client.incoming_phone_numbers.list(
            phone_number=settings.twilio_from_number, limit=20
        )
    except Exception:
        return None
    for entry in found:
        if entry.phone_number == settings.twilio_from_number:
            return bool((entry.capabilities or {}).get("sms", False))
    return None


def _check_number(settings: Settings, client: Any) -> CheckLine:
    subject = "twilio number"
    number = settings.twilio_from_number
    expected = f"{settings.public_url}/voice"
    if number is None:
        return warn(subject, "TWILIO_FROM_NUMBER is not set: the number's voice URL was not "
                    f"checked; it must be {expected} (HTTP POST).")
    try:
        found = client.incoming_phone_numbers.list(phone_number=number, limit=20)
    except Exception as exc:
        line = _twilio_error(exc, "list the account's phone numbers", settings)
        return fail(subject, line.sentence)
    matching = [n for n in found if n.phone_number == number]
    if not matching:
        return fail(subject, f"the account has no number {number}: set TWILIO_FROM_NUMBER "
                    "to one of its numbers, in E.164 form (+14155550100).")
    entry = matching[0]
    where = f"({CONSOLE_NUMBER_PAGE} → A call comes in: Webhook, URL {expected}, HTTP POST)"
    if entry.voice_application_sid:
        return fail(subject, f"{number}'s calls go to the TwiML app "
                    f"{entry.voice_application_sid}, not to {expected} {where}.")
    if (entry.voice_url or "").rstrip("/") != expected:
        shown = entry.voice_url or "empty"
        return fail(subject, f"{number}'s voice URL is {shown}, expected {expected} {where}.")
    if (entry.voice_method or "POST").upper() != "POST":
        return fail(subject, f"{number}'s voice URL is requested with {entry.voice_method}; "
                    f"it must be HTTP POST {where}.")
    return ok(subject, f"{number} sends its calls to {expected} (HTTP POST).")


# --- the public URL ------------------------------------------------------------------------


def fetch_health(url: str, timeout: float) -> tuple[int, dict[str, Any]]:
    """GET /healthz; (status, JSON body). A self-signed certificate is checked like any
    other: Twilio would refuse it too."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = {}
    return status, body if isinstance(body, dict) else {}


def check_public_url(
    settings: Settings, fetch: Callable[[str, float], tuple[int, dict[str, Any]]] = fetch_health
) -> CheckLine:
    subject = "public URL"
    public = settings.public_url
    url = f"{public}/healthz"
    local = is_loopback_host(urlsplit(public).hostname or "")
    try:
        status, body = fetch(url, TIMEOUT_S)
    except (OSError, ValueError) as exc:
        if local:
            return warn(subject, f"{url} does not answer ({_reason(exc)}): is `boba serve` "
                        "running? (BOBA_PUBLIC_URL is a loopback address: fine for local "
                        "trials, Twilio cannot reach it.)")
        return warn(subject, f"{url} cannot be reached from here ({_reason(exc)}); this host "
                    "may not see its own public address: check it from outside.")
    if status == 503:
        reason = body.get("reason", "no reason given")
        return fail(subject, f"{url} answers 503: the server runs but cannot take calls "
                    f"({reason}).")
    if status != 200 or body.get("status") != "ok":
        return fail(subject, f"{url} answers HTTP {status}, not BobaRista's health check: "
                    "is BOBA_PUBLIC_URL the right address, and the proxy in front of it?")
    if local:
        return warn(subject, f"{url} answers, but BOBA_PUBLIC_URL is a loopback address: "
                    "Twilio cannot reach it (fine for local trials).")
    if not public.startswith("https://"):
        return warn(subject, f"{url} answers, but over plain http: Twilio needs https "
                    "(put the TLS proxy of docs/deploy.md in front).")
    return ok(subject, f"{url} answers: the server is up and takes calls.")


# --- the database --------------------------------------------------------------------------


async def _query_store(database: str) -> int:
    async with await OrderStore.open(database) as store:
        return len(await store.list_orders(status="all", limit=500))


def check_database(settings: Settings) -> CheckLine:
    subject = "database"
    database = settings.database
    if database.startswith(POSTGRES_SCHEMES):
        where = f"the PostgreSQL database {redact_url(database)}"
    else:
        path = Path(sqlite_path_from_url(database))
        where = f"the SQLite file {path}"
        if not path.exists():
            return warn(subject, f"{where} does not exist yet: `boba serve` creates it at "
                        "its first start (run the check again after that).")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            return fail(subject, f"{where} is readable by other users (mode {mode:o}): it "
                        f"holds phone numbers; chmod 600 it.")
    try:
        count = trio.run(_query_store, database)
    except StoreError as exc:
        return fail(subject, f"{where} does not answer: {exc}")
    shown = "500 or more" if count >= 500 else str(count)
    return ok(subject, f"{where} opens and answers ({shown} orders kept).")


# --- SMS -----------------------------------------------------------------------------------


def check_sms(
    settings: Settings,
    twilio_lines: list[CheckLine],
    client_factory: Callable[[Settings], Any] = twilio_client,
) -> CheckLine:
    subject = "sms"
    if settings.sms == "log":
        return warn(subject, "BOBA_SMS=log: texts are written to the log only, customers get "
                    "none; set the three TWILIO_ variables to send them.")
    if any(line.subject == "twilio" and line.status is Status.FAIL for line in twilio_lines):
        return fail(subject, "texts go through Twilio, and the Twilio credentials check "
                    "above failed.")
    number = settings.twilio_from_number
    if sms_capable(settings, client_factory(settings)) is False:
        return fail(subject, f"{number} cannot send SMS: pick an SMS-capable number as "
                    "TWILIO_FROM_NUMBER, or set BOBA_SMS=log.")
    return ok(subject, f"texts go out through Twilio from {number}.")


# --- the command ---------------------------------------------------------------------------


def run_checks(settings: Settings) -> list[CheckLine]:
    menu = load_menu(settings)  # a SettingsError (exit 2) like at `boba serve`'s start
    lines = [ok("settings", f"every setting parses; the menu has {len(menu.flavors)} flavors.")]
    lines.append(check_deepgram(settings))
    twilio_lines = check_twilio(settings)
    lines += twilio_lines
    lines.append(check_public_url(settings))
    lines.append(check_database(settings))
    lines.append(check_sms(settings, twilio_lines))
    return lines


def main(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    if argv and argv[0] in {"-h", "--help"}:
        print("usage: boba check\n\nChecks the settings (flags of boba serve do not apply; "
              "the environment and .env do) and everything they point at.")
        return 0
    if argv:
        print(f"boba check: unexpected arguments {' '.join(argv)!r}", file=sys.stderr)
        return 2
    try:
        settings = load_settings({}, os.environ if environ is None else environ, ".env")
        lines = run_checks(settings)
    except SettingsError as error:
        print(f"boba check: {error}", file=sys.stderr)
        return 2
    for line in lines:
        print(line.render(), flush=True)
    return 1 if any(line.status is Status.FAIL for line in lines) else 0
