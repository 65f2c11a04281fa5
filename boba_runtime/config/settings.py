"""Every setting of CONTRACT §2 in one frozen Struct, read once at start.

Precedence (CONTRACT §1): command-line flag > environment > `.env` in the working
directory > default. Every value is checked here, at start, so a bad one stops
`boba serve` with one line naming the variable (exit 2) and never surfaces mid-call.
Derived values (the public URL's default, the agent URL's default, the SMS mode's
default, the Twilio stream URL) are computed in exactly one place: `_derive`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import msgspec

from boba_runtime.config.proxies import Network, parse_trusted_proxies

DEEPGRAM_AGENT_URL = "wss://agent.deepgram.com/v1/agent/converse"
DEFAULT_GREETING = "Hey! I am your Deepgram BobaRista. What would you like to order?"
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is unusable; the message is one line that starts with the variable name."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The whole configuration of one `boba serve`. Built by `load_settings`, never mutated."""

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"  # no trailing slash
    tls_cert: str | None = None
    tls_key: str | None = None
    database: str = "sqlite:///./boba.sqlite3"
    data_dir: str = "./boba-data"
    deepgram_api_key: str | None = None
    agent_url: str = "local"
    listen_model: str = "nova-3"
    think_provider: str = "google"
    think_model: str = "gemini-3.5-flash"
    speak_model: str = "aura-2-odysseus-en"
    greeting: str = DEFAULT_GREETING
    audio: Literal["linear16", "mulaw"] = "linear16"
    # The local agent hears and speaks when the speech extra is installed (§9); not a
    # CONTRACT §2 variable: "off" is for embedding and for tests that want text only.
    local_speech: Literal["auto", "off"] = "auto"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    validate_twilio: bool = True
    sms: Literal["twilio", "log"] = "log"
    staff_password: str | None = None  # None: generated once into data_dir
    secret_key: str | None = None  # None: generated once into data_dir
    record_dir: str | None = None
    menu: str | None = None  # None: the built-in menu
    log_format: Literal["text", "json"] = "text"
    log_level: str = "info"
    max_calls: int = 100
    max_call_seconds: float = 600.0
    max_message_bytes: int = 65536
    ready_expiry_minutes: float = 30.0
    retention_days: int = 30
    workers: int = 1
    trusted_proxies: str = ""  # BOBA_TRUSTED_PROXIES as given (checked); see `proxy_networks`
    sms_countries: tuple[str, ...] = ("US",)
    max_sse_clients: int = 500
    transfer_number: str | None = None  # E.164: enables transfer_to_staff (CONTRACT §12)
    public_url_is_default: bool = True  # False when BOBA_PUBLIC_URL was given

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks: never show a secret in them.
        shown = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in SECRET_FIELDS and value is not None:
                value = "***"
            shown.append(f"{name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def stream_url(self) -> str:
        """The Twilio Media Streams URL as it appears in the TwiML: ws(s)://PUBLIC/twilio."""
        parts = urlsplit(self.public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/twilio"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    @property
    def bound_to_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def twilio_signatures_checked(self) -> bool:
        """False when validation is off, or allowed to be skipped (no token, loopback)."""
        return self.validate_twilio and self.twilio_auth_token is not None

    @property
    def public_url_is_loopback(self) -> bool:
        return is_loopback_host(urlsplit(self.public_url).hostname or "")

    @property
    def unsigned_twilio_allowed(self) -> bool:
        """Validation on but no auth token: only for local development, bound to loopback
        *and* reached through a loopback public URL (CONTRACT §2)."""
        return self.bound_to_loopback and self.public_url_is_loopback

    @property
    def proxy_networks(self) -> tuple[Network, ...]:
        return parse_trusted_proxies(self.trusted_proxies)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def with_port(self, port: int) -> Settings:
        """The same settings after binding port 0: the default public URL follows the port."""
        public_url = self.public_url
        if self.public_url_is_default:
            public_url = default_public_url(self.host, port, tls=self.tls_enabled)
        return msgspec.structs.replace(self, port=port, public_url=public_url)


SECRET_FIELDS = frozenset(
    {"deepgram_api_key", "twilio_auth_token", "staff_password", "secret_key"}
)

# variable name -> field name, in CONTRACT §2 order (plus BOBA_WORKERS for --workers).
VARIABLES: dict[str, str] = {
    "BOBA_HOST": "host",
    "BOBA_PORT": "port",
    "BOBA_PUBLIC_URL": "public_url",
    "BOBA_TLS_CERT": "tls_cert",
    "BOBA_TLS_KEY": "tls_key",
    "BOBA_DATABASE": "database",
    "BOBA_DATA_DIR": "data_dir",
    "DEEPGRAM_API_KEY": "deepgram_api_key",
    "BOBA_AGENT_URL": "agent_url",
    "BOBA_LISTEN_MODEL": "listen_model",
    "BOBA_THINK_PROVIDER": "think_provider",
    "BOBA_THINK_MODEL": "think_model",
    "BOBA_SPEAK_MODEL": "speak_model",
    "BOBA_GREETING": "greeting",
    "BOBA_AUDIO": "audio",
    "TWILIO_ACCOUNT_SID": "twilio_account_sid",
    "TWILIO_AUTH_TOKEN": "twilio_auth_token",
    "TWILIO_FROM_NUMBER": "twilio_from_number",
    "TWILIO_API_BASE_URL": "twilio_api_base_url",
    "BOBA_VALIDATE_TWILIO": "validate_twilio",
    "BOBA_TRUSTED_PROXIES": "trusted_proxies",
    "BOBA_SMS_COUNTRIES": "sms_countries",
    "BOBA_MAX_SSE_CLIENTS": "max_sse_clients",
    "BOBA_SMS": "sms",
    "BOBA_STAFF_PASSWORD": "staff_password",
    "BOBA_SECRET_KEY": "secret_key",
    "BOBA_RECORD_DIR": "record_dir",
    "BOBA_MENU": "menu",
    "BOBA_MAX_CALLS": "max_calls",
    "BOBA_MAX_CALL_SECONDS": "max_call_seconds",
    "BOBA_MAX_MESSAGE_BYTES": "max_message_bytes",
    "BOBA_READY_EXPIRY_MINUTES": "ready_expiry_minutes",
    "BOBA_RETENTION_DAYS": "retention_days",
    "BOBA_WORKERS": "workers",
    "BOBA_LOG_FORMAT": "log_format",
    "BOBA_LOG_LEVEL": "log_level",
    "BOBA_TRANSFER_NUMBER": "transfer_number",
}

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_public_url(host: str, port: int, *, tls: bool) -> str:
    """`http://{host}:{port}`, with 127.0.0.1 for a wildcard host (CONTRACT §2)."""
    shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"  # an IPv6 literal
    scheme = "https" if tls else "http"
    return f"{scheme}://{shown}:{port}"


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """`KEY=value` lines; `#` comments, blank lines, `export ` and matching quotes allowed.

    A missing file is no `.env` at all; a malformed line is a SettingsError naming it.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(".env", f"cannot read {os.fspath(path)!r}: {error}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise SettingsError(".env", f"line {number} is not KEY=value: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def load_settings(
    argv_flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    dotenv_path: str | os.PathLike[str] | None = ".env",
) -> Settings:
    """Merge flags (keyed by variable name, e.g. `BOBA_PORT`), environment and `.env`.

    Empty values count as unset. Raises SettingsError naming the first bad variable.
    """
    dotenv = read_dotenv(dotenv_path) if dotenv_path is not None else {}
    raw: dict[str, str] = {}
    for variable in VARIABLES:
        for source in (argv_flags, environ, dotenv):
            value = source.get(variable)
            if value is not None and value.strip() != "":
                raw[variable] = value.strip() if variable != "BOBA_GREETING" else value
                break
    return _derive(raw)


# --- parsing of single values ------------------------------------------------------------


def _integer(variable: str, text: str, *, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise SettingsError(variable, f"expected a whole number {span}, got {text!r}")
    return value


def _positive_number(variable: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise SettingsError(variable, f"expected a positive number, got {text!r}")
    return value


def _boolean(variable: str, text: str) -> bool:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(variable, f"expected true/false/1/0/yes/no, got {text!r}")


def _choice(variable: str, text: str, choices: tuple[str, ...]) -> str:
    if text.lower() not in choices:
        raise SettingsError(variable, f"expected {' or '.join(choices)}, got {text!r}")
    return text.lower()


def _url(variable: str, text: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise SettingsError(variable, f"not a usable URL ({error}): {text!r}") from None
    if parts.scheme not in schemes or not parts.hostname:
        wanted = "/".join(f"{s}://" for s in schemes)
        raise SettingsError(variable, f"expected a {wanted} URL with a host, got {text!r}")
    # The scheme in lower case ("HTTPS://…" too), so `startswith("https://")` checks hold.
    return (parts.scheme + text[len(parts.scheme):]).rstrip("/")


def _readable_file(variable: str, text: str) -> str:
    path = Path(text)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise SettingsError(variable, f"no readable file at {text!r}")
    return text


def _database(text: str) -> str:
    if text.startswith("sqlite:///"):
        if len(text) == len("sqlite:///"):
            raise SettingsError("BOBA_DATABASE", f"the sqlite URL has no path: {text!r}")
        return text
    if text.startswith(("postgresql://", "postgres://")):
        return _url("BOBA_DATABASE", text, ("postgresql", "postgres"))
    raise SettingsError(
        "BOBA_DATABASE",
        f"expected sqlite:///relative/path, sqlite:////absolute/path or postgresql://…, "
        f"got {text!r}",
    )


def _log_level(text: str) -> str:
    from boba_runtime.config.logs import parse_level

    if parse_level(text) is None:
        raise SettingsError(
            "BOBA_LOG_LEVEL", f"expected debug, info, warning, error or critical, got {text!r}"
        )
    return text.strip().lower()


def _take(raw: Mapping[str, str], variable: str, parse: Callable[[str], T], default: T) -> T:
    text = raw.get(variable)
    return default if text is None else parse(text)


def _derive(raw: Mapping[str, str]) -> Settings:
    """The one place where defaults that depend on other settings are worked out."""
    base = Settings()
    for variable in ("BOBA_HOST", "BOBA_LISTEN_MODEL", "BOBA_THINK_PROVIDER",
                     "BOBA_THINK_MODEL", "BOBA_SPEAK_MODEL"):
        value = raw.get(variable)
        if value is not None and any(c.isspace() for c in value):
            raise SettingsError(variable, f"must not contain spaces, got {value!r}")

    host = raw.get("BOBA_HOST", base.host)
    port = _take(raw, "BOBA_PORT", lambda t: _integer("BOBA_PORT", t, low=0, high=65535), 8000)

    tls_cert = _take(raw, "BOBA_TLS_CERT", lambda t: _readable_file("BOBA_TLS_CERT", t), None)
    tls_key = _take(raw, "BOBA_TLS_KEY", lambda t: _readable_file("BOBA_TLS_KEY", t), None)
    if (tls_cert is None) != (tls_key is None):
        missing = "BOBA_TLS_KEY" if tls_key is None else "BOBA_TLS_CERT"
        raise SettingsError(missing, "BOBA_TLS_CERT and BOBA_TLS_KEY must be set together")

    explicit_public = raw.get("BOBA_PUBLIC_URL")
    if explicit_public is not None:
        public_url = _url("BOBA_PUBLIC_URL", explicit_public, ("http", "https"))
    else:
        public_url = default_public_url(host, port, tls=tls_cert is not None)

    deepgram_key = raw.get("DEEPGRAM_API_KEY")
    agent_default = DEEPGRAM_AGENT_URL if deepgram_key else "local"
    agent_url = raw.get("BOBA_AGENT_URL", agent_default)
    if agent_url != "local":
        agent_url = _url("BOBA_AGENT_URL", agent_url, ("ws", "wss"))

    sid = raw.get("TWILIO_ACCOUNT_SID")
    token = raw.get("TWILIO_AUTH_TOKEN")
    from_number = raw.get("TWILIO_FROM_NUMBER")
    twilio_complete = sid is not None and token is not None and from_number is not None
    sms = raw.get("BOBA_SMS")
    sms_mode = "twilio" if twilio_complete else "log"
    if sms is not None:
        sms_mode = _choice("BOBA_SMS", sms, ("twilio", "log"))
    if sms_mode == "twilio" and not twilio_complete:
        raise SettingsError(
            "BOBA_SMS",
            "twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER",
        )

    validate_raw = raw.get("BOBA_VALIDATE_TWILIO")
    validate = True if validate_raw is None else _boolean("BOBA_VALIDATE_TWILIO", validate_raw)
    public_host = urlsplit(public_url).hostname or ""
    if validate and token is None and not is_loopback_host(host):
        raise SettingsError(
            "BOBA_VALIDATE_TWILIO",
            f"no TWILIO_AUTH_TOKEN to check Twilio signatures with, and BOBA_HOST {host!r} "
            "is not a loopback address; set TWILIO_AUTH_TOKEN, or BOBA_VALIDATE_TWILIO=false "
            "to accept unsigned requests",
        )
    if validate and token is None and not is_loopback_host(public_host):
        raise SettingsError(
            "BOBA_VALIDATE_TWILIO",
            f"no TWILIO_AUTH_TOKEN to check Twilio signatures with, and BOBA_PUBLIC_URL "
            f"names {public_host!r}, which is not a loopback host (a proxy would pass "
            "unsigned webhooks from anyone); set TWILIO_AUTH_TOKEN, or "
            "BOBA_VALIDATE_TWILIO=false to accept unsigned requests",
        )

    trusted_proxies = raw.get("BOBA_TRUSTED_PROXIES", "")
    try:
        parse_trusted_proxies(trusted_proxies)
    except ValueError as error:
        raise SettingsError("BOBA_TRUSTED_PROXIES", str(error)) from None

    sms_countries = _take(
        raw, "BOBA_SMS_COUNTRIES", _sms_countries, default_sms_countries(from_number)
    )

    audio: str = _take(
        raw, "BOBA_AUDIO", lambda t: _choice("BOBA_AUDIO", t, ("linear16", "mulaw")), "linear16"
    )

    menu = raw.get("BOBA_MENU")
    if menu is not None:
        _readable_file("BOBA_MENU", menu)
    log_format: str = _take(
        raw, "BOBA_LOG_FORMAT", lambda t: _choice("BOBA_LOG_FORMAT", t, ("text", "json")), "text"
    )

    return Settings(
        host=host,
        port=port,
        public_url=public_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        database=_take(raw, "BOBA_DATABASE", _database, base.database),
        data_dir=raw.get("BOBA_DATA_DIR", base.data_dir),
        deepgram_api_key=deepgram_key,
        agent_url=agent_url,
        listen_model=raw.get("BOBA_LISTEN_MODEL", base.listen_model),
        think_provider=raw.get("BOBA_THINK_PROVIDER", base.think_provider),
        think_model=raw.get("BOBA_THINK_MODEL", base.think_model),
        speak_model=raw.get("BOBA_SPEAK_MODEL", base.speak_model),
        greeting=raw.get("BOBA_GREETING", base.greeting),
        audio="mulaw" if audio == "mulaw" else "linear16",
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=from_number,
        twilio_api_base_url=_take(
            raw, "TWILIO_API_BASE_URL",
            lambda t: _url("TWILIO_API_BASE_URL", t, ("http", "https")),
            base.twilio_api_base_url,
        ),
        validate_twilio=validate,
        sms="twilio" if sms_mode == "twilio" else "log",
        staff_password=raw.get("BOBA_STAFF_PASSWORD"),
        secret_key=raw.get("BOBA_SECRET_KEY"),
        record_dir=raw.get("BOBA_RECORD_DIR"),
        menu=menu,
        log_format="json" if log_format == "json" else "text",
        log_level=_take(raw, "BOBA_LOG_LEVEL", _log_level, base.log_level),
        max_calls=_take(
            raw, "BOBA_MAX_CALLS", lambda t: _integer("BOBA_MAX_CALLS", t, low=1),
            base.max_calls,
        ),
        max_call_seconds=_take(
            raw, "BOBA_MAX_CALL_SECONDS",
            lambda t: _positive_number("BOBA_MAX_CALL_SECONDS", t), base.max_call_seconds,
        ),
        max_message_bytes=_take(
            raw, "BOBA_MAX_MESSAGE_BYTES",
            lambda t: _integer("BOBA_MAX_MESSAGE_BYTES", t, low=1024),
            base.max_message_bytes,
        ),
        ready_expiry_minutes=_take(
            raw, "BOBA_READY_EXPIRY_MINUTES",
            lambda t: _positive_number("BOBA_READY_EXPIRY_MINUTES", t),
            base.ready_expiry_minutes,
        ),
        retention_days=_take(
            raw, "BOBA_RETENTION_DAYS",
            lambda t: _integer("BOBA_RETENTION_DAYS", t, low=1, high=36500),
            base.retention_days,
        ),
        workers=_take(
            raw, "BOBA_WORKERS", lambda t: _integer("BOBA_WORKERS", t, low=1), base.workers
        ),
        trusted_proxies=trusted_proxies,
        sms_countries=sms_countries,
        max_sse_clients=_take(
            raw, "BOBA_MAX_SSE_CLIENTS", lambda t: _integer("BOBA_MAX_SSE_CLIENTS", t, low=1),
            base.max_sse_clients,
        ),
        transfer_number=_take(raw, "BOBA_TRANSFER_NUMBER", _transfer_number, None),
        public_url_is_default=explicit_public is None,
    )


def default_sms_countries(from_number: str | None) -> tuple[str, ...]:
    """The country of `TWILIO_FROM_NUMBER`, else the US (CONTRACT §2 `BOBA_SMS_COUNTRIES`)."""
    import phonenumbers

    if from_number:
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(from_number, None))
        except phonenumbers.NumberParseException:
            region = None
        if region and region != "ZZ":
            return (region,)
    return ("US",)


def _sms_countries(text: str) -> tuple[str, ...]:
    import phonenumbers

    codes = tuple(dict.fromkeys(c.strip().upper() for c in text.split(",") if c.strip()))
    if not codes:
        raise SettingsError("BOBA_SMS_COUNTRIES", "expected at least one ISO region code")
    unknown = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise SettingsError(
            "BOBA_SMS_COUNTRIES", f"not ISO region codes phone numbers use: {', '.join(unknown)}"
        )
    return codes


def _transfer_number(text: str) -> str:
    """BOBA_TRANSFER_NUMBER must be E.164 (+ and 8 to 15 digits): Twilio dials it as is."""
    import phonenumbers

    number = text.strip()
    valid = False
    if re.fullmatch(r"\+[1-9]\d{7,14}", number):
        try:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(number, None))
        except phonenumbers.NumberParseException:
            valid = False
    if not valid:
        raise SettingsError(
            "BOBA_TRANSFER_NUMBER",
            f"{text!r} is not a phone number in E.164 form, like +14155550123",
        )
    return number
