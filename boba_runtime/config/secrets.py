"""The staff password and the secret key: given in settings, or generated once and kept.

Generated values live in `BOBA_DATA_DIR` with mode 600 so every worker process and every
restart uses the same ones. Creation is `O_CREAT | O_EXCL`: when several workers start at
once, exactly one writes the file and the others read what it wrote.
"""

from __future__ import annotations

import os
import secrets as _random
import time
from pathlib import Path

import msgspec

from boba_runtime.config.settings import Settings, SettingsError

MIN_STAFF_PASSWORD_CHARS = 12
"""A staff password the shop sets must be at least this long (CONTRACT §2); guessing is
rate-limited, but a short one would still fall to a patient attacker."""
STAFF_PASSWORD_FILE = "staff-password"
SECRET_KEY_FILE = "secret-key"


class Secrets(msgspec.Struct, frozen=True, kw_only=True):
    staff_password: str
    secret_key: bytes
    password_file: Path | None  # where the generated password is kept (None: from settings)
    password_created: bool  # True only on the very first start: the one time it is printed

    def __repr__(self) -> str:
        return f"Secrets(password_file={self.password_file!r}, ***)"


def _read_or_create(path: Path, make: str) -> tuple[str, bool]:
    """The file's stripped text, writing `make` into it first (mode 600) if it is missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another worker may be writing it right now: wait briefly for the content.
        for _ in range(50):
            text = path.read_text(encoding="utf-8").strip()
            if text:
                return text, False
            time.sleep(0.02)
        raise SettingsError("BOBA_DATA_DIR", f"{path} is empty; delete it to regenerate") from None
    try:
        os.write(fd, (make + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return make, True


def load_secrets(settings: Settings) -> Secrets:
    """Blocking file I/O: call before `trio.run` or through `trio.to_thread.run_sync`."""
    data_dir = settings.data_path
    given = settings.staff_password
    if given is not None and len(given) < MIN_STAFF_PASSWORD_CHARS:
        raise SettingsError(
            "BOBA_STAFF_PASSWORD",
            f"must have at least {MIN_STAFF_PASSWORD_CHARS} characters (it has {len(given)}); "
            "or leave it unset and one is generated",
        )
    needs_files = settings.staff_password is None or settings.secret_key is None
    if needs_files:
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise SettingsError("BOBA_DATA_DIR", f"cannot create {data_dir}: {error}") from None
    try:
        password_file: Path | None = None
        created = False
        if settings.staff_password is not None:
            password = settings.staff_password
        else:
            password_file = data_dir / STAFF_PASSWORD_FILE
            password, created = _read_or_create(password_file, _random.token_urlsafe(12))
        if settings.secret_key is not None:
            key_text = settings.secret_key
        else:
            key_text, _ = _read_or_create(data_dir / SECRET_KEY_FILE, _random.token_hex(32))
    except OSError as error:
        problem = f"cannot keep secrets in {data_dir}: {error}"
        raise SettingsError("BOBA_DATA_DIR", problem) from None
    return Secrets(
        staff_password=password,
        secret_key=key_text.encode("utf-8"),
        password_file=password_file,
        password_created=created,
    )
