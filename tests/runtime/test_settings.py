"""Settings (CONTRACT §1/§2): precedence, booleans, derived values, every bad value."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from boba_runtime.config.secrets import load_secrets
from boba_runtime.config.settings import (
    DEEPGRAM_AGENT_URL,
    Settings,
    SettingsError,
    load_settings,
    read_dotenv,
)
from boba_runtime.services import load_menu


def load(env: dict[str, str], flags: dict[str, str | None] | None = None,
         dotenv: Path | None = None) -> Settings:
    return load_settings(flags or {}, env, dotenv)


def test_defaults_match_the_contract() -> None:
    s = load({})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.stream_url == "ws://127.0.0.1:8000/twilio"
    assert s.database == "sqlite:///./boba.sqlite3"
    assert s.data_dir == "./boba-data"
    assert s.agent_url == "local"
    assert (s.listen_model, s.think_provider, s.think_model, s.speak_model) == (
        "nova-3", "google", "gemini-3.5-flash", "aura-2-odysseus-en")
    assert s.greeting == "Hey! I am your Deepgram BobaRista. What would you like to order?"
    assert s.audio == "linear16"
    assert s.twilio_api_base_url == "https://api.twilio.com"
    assert s.validate_twilio is True and s.sms == "log"
    assert s.twilio_signatures_checked is False  # no token; allowed on loopback
    assert (s.max_calls, s.max_call_seconds, s.max_message_bytes) == (100, 600, 65536)
    assert s.ready_expiry_minutes == 30 and s.workers == 1
    assert s.staff_password is None and s.secret_key is None and s.menu is None


def test_precedence_flag_over_environment_over_dotenv_over_default(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment\n"
        "BOBA_PORT=7001\n"
        "export BOBA_AUDIO=mulaw\n"
        "BOBA_GREETING='Hello there'\n"
        'BOBA_MAX_CALLS="7"  \n'
        "\n"
        "BOBA_HOST=10.0.0.1  # inline comment\n"
        "BOBA_VALIDATE_TWILIO=no\n"
    )
    env = {"BOBA_PORT": "7002", "BOBA_HOST": "127.0.0.2"}
    s = load(env, {"BOBA_PORT": "7003", "BOBA_HOST": None}, dotenv)
    assert s.port == 7003  # flag
    assert s.host == "127.0.0.2"  # environment over .env; an absent flag does not count
    assert s.audio == "mulaw" and s.greeting == "Hello there" and s.max_calls == 7  # .env
    assert s.speak_model == "aura-2-odysseus-en"  # default
    assert load(env, {}, dotenv).port == 7002
    assert load({}, {}, dotenv).host == "10.0.0.1"
    assert load({}, {}, tmp_path / "missing.env").port == 8000  # no .env is fine


def test_empty_values_count_as_unset() -> None:
    s = load({"DEEPGRAM_API_KEY": "", "BOBA_PORT": " ", "BOBA_SMS": ""})
    assert s.deepgram_api_key is None and s.port == 8000 and s.sms == "log"


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True),
    ("false", False), ("0", False), ("no", False), ("NO", False),
])
def test_booleans(text: str, value: bool) -> None:
    assert load({"BOBA_VALIDATE_TWILIO": text}).validate_twilio is value


def test_derived_public_url_agent_url_and_sms() -> None:
    wildcard = load({"BOBA_HOST": "0.0.0.0", "BOBA_PORT": "9000",
                     "BOBA_VALIDATE_TWILIO": "false"})
    assert wildcard.public_url == "http://127.0.0.1:9000"
    ipv6 = load({"BOBA_HOST": "::1"})
    assert ipv6.public_url == "http://[::1]:8000"
    public = load({"BOBA_PUBLIC_URL": "https://boba.example.com/", "TWILIO_AUTH_TOKEN": "t"})
    assert public.public_url == "https://boba.example.com"
    assert public.stream_url == "wss://boba.example.com/twilio"
    assert public.with_port(1234).public_url == "https://boba.example.com"
    assert load({"BOBA_PORT": "0"}).with_port(4321).public_url == "http://127.0.0.1:4321"

    keyed = load({"DEEPGRAM_API_KEY": "dg-key"})
    assert keyed.agent_url == DEEPGRAM_AGENT_URL
    assert load({"DEEPGRAM_API_KEY": "k", "BOBA_AGENT_URL": "ws://127.0.0.1:9/agent"}
                ).agent_url == "ws://127.0.0.1:9/agent"

    twilio = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "tok",
              "TWILIO_FROM_NUMBER": "+15550000000"}
    assert load(twilio).sms == "twilio"
    assert load(twilio).twilio_signatures_checked is True
    assert load({**twilio, "BOBA_SMS": "log"}).sms == "log"
    assert load({"TWILIO_ACCOUNT_SID": "AC1"}).sms == "log"


def test_secrets_never_appear_in_repr() -> None:
    s = load({"BOBA_STAFF_PASSWORD": "hunter2", "DEEPGRAM_API_KEY": "dg-secret",
              "TWILIO_AUTH_TOKEN": "tw-secret", "BOBA_SECRET_KEY": "sk-secret"})
    text = repr(s)
    for secret in ("hunter2", "dg-secret", "tw-secret", "sk-secret"):
        assert secret not in text
    assert "staff_password='***'" in text


BAD_VALUES = [
    ("BOBA_PORT", "http"), ("BOBA_PORT", "70000"), ("BOBA_PORT", "-1"),
    ("BOBA_PUBLIC_URL", "boba.example.com"), ("BOBA_PUBLIC_URL", "ftp://boba.example.com"),
    ("BOBA_PUBLIC_URL", "https://"), ("BOBA_PUBLIC_URL", "http://host:99999"),
    ("BOBA_TLS_CERT", "/nonexistent/cert.pem"), ("BOBA_TLS_KEY", "/nonexistent/key.pem"),
    ("BOBA_DATABASE", "mysql://db"), ("BOBA_DATABASE", "sqlite:///"),
    ("BOBA_AGENT_URL", "http://agent.example.com"), ("BOBA_AGENT_URL", "remote"),
    ("BOBA_AUDIO", "x"), ("BOBA_AUDIO", "pcm"),
    ("TWILIO_API_BASE_URL", "api.twilio.com"),
    ("BOBA_VALIDATE_TWILIO", "maybe"),
    ("BOBA_SMS", "carrier-pigeon"), ("BOBA_SMS", "twilio"),
    ("BOBA_MENU", "/nonexistent/menu.toml"),
    ("BOBA_MAX_CALLS", "0"), ("BOBA_MAX_CALLS", "lots"),
    ("BOBA_MAX_CALL_SECONDS", "-5"), ("BOBA_MAX_CALL_SECONDS", "nan"),
    ("BOBA_MAX_MESSAGE_BYTES", "10"), ("BOBA_READY_EXPIRY_MINUTES", "0"),
    ("BOBA_READY_EXPIRY_MINUTES", "inf"), ("BOBA_WORKERS", "0"),
    ("BOBA_HOST", "my host"), ("BOBA_THINK_MODEL", "two words"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert caught.value.variable == variable


def test_bad_audio_message_is_readable() -> None:
    with pytest.raises(SettingsError, match=r"^BOBA_AUDIO: expected linear16 or mulaw, got 'x'$"):
        load({"BOBA_AUDIO": "x"})


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match=r"^BOBA_TLS_KEY: "):
        load({"BOBA_TLS_CERT": str(cert)})
    both = load({"BOBA_TLS_CERT": str(cert), "BOBA_TLS_KEY": str(cert)})
    assert both.tls_enabled and both.public_url == "https://127.0.0.1:8000"


def test_unsigned_twilio_is_refused_off_loopback() -> None:
    for host in ("0.0.0.0", "10.1.2.3", "boba.example.com"):
        with pytest.raises(SettingsError, match=r"^BOBA_VALIDATE_TWILIO: .*TWILIO_AUTH_TOKEN"):
            load({"BOBA_HOST": host})
        assert load({"BOBA_HOST": host, "BOBA_VALIDATE_TWILIO": "false"}).host == host
        assert load({"BOBA_HOST": host, "TWILIO_AUTH_TOKEN": "t"}).twilio_signatures_checked
    for host in ("127.0.0.1", "localhost", "::1", "127.5.5.5"):
        assert load({"BOBA_HOST": host}).bound_to_loopback


def test_malformed_dotenv_line_is_named(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("BOBA_PORT=1\nthis is not a setting\n")
    with pytest.raises(SettingsError, match=r"^\.env: line 2 "):
        read_dotenv(dotenv)


def test_menu_errors_name_boba_menu(tmp_path: Path) -> None:
    broken = tmp_path / "menu.toml"
    broken.write_text("this is [not toml")
    with pytest.raises(SettingsError, match=r"^BOBA_MENU: ") as caught:
        load_menu(load({"BOBA_MENU": str(broken)}))
    assert "\n" not in str(caught.value)
    assert load_menu(load({})) is not None  # the built-in one


def test_generated_secrets_are_kept_with_mode_600_and_reused(tmp_path: Path) -> None:
    settings = load({"BOBA_DATA_DIR": str(tmp_path / "data")})
    first = load_secrets(settings)
    assert first.password_created and first.password_file is not None
    assert len(first.staff_password) >= 12 and len(first.secret_key) >= 32
    for name in ("staff-password", "secret-key"):
        mode = stat.S_IMODE(os.stat(tmp_path / "data" / name).st_mode)
        assert mode == 0o600
    again = load_secrets(settings)
    assert not again.password_created
    assert (again.staff_password, again.secret_key) == (first.staff_password, first.secret_key)
    assert first.staff_password not in repr(first)

    given = load_secrets(load({"BOBA_DATA_DIR": str(tmp_path / "other"),
                               "BOBA_STAFF_PASSWORD": "pw-twelve-chars",
                               "BOBA_SECRET_KEY": "key"}))
    assert (given.staff_password, given.secret_key, given.password_file) == (
        "pw-twelve-chars", b"key", None)
    assert not (tmp_path / "other").exists()  # nothing to generate, nothing written
    with pytest.raises(SettingsError, match="BOBA_STAFF_PASSWORD: must have at least 12"):
        load_secrets(load({"BOBA_DATA_DIR": str(tmp_path / "short"),
                           "BOBA_STAFF_PASSWORD": "eleven-char"}))
