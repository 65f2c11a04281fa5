"""deploy/boba.service: a unit systemd accepts, hardened, restarting on failure (issue 16.2).

`systemd-analyze verify` only warns (exit 0) about unknown keys, so any output at all
fails the test; `scripts/setup-deploy.sh` installs systemd-analyze for `nox -s deploy`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.harness import DEPLOY

pytestmark = pytest.mark.deploy

UNIT = DEPLOY / "boba.service"
SHIPPED_BOBA = "/opt/boba/venv/bin/boba"


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: run scripts/setup-deploy.sh (nox -s deploy does)"
    return found


def unit_for_this_host(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointing at this environment's `boba`."""
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(f"ExecStart={SHIPPED_BOBA} serve") == 1
    boba = Path(sys.executable).parent / "boba"
    assert boba.exists(), boba
    unit = tmp_path / "boba.service"
    unit.write_text(text.replace(SHIPPED_BOBA, str(boba)))
    return unit


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_systemd_accepts_the_unit_without_a_word(tmp_path: Path) -> None:
    unit = unit_for_this_host(tmp_path)
    result = subprocess.run([analyze(), "verify", str(unit)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_the_daily_backup_units_are_accepted_too(tmp_path: Path) -> None:
    service = (DEPLOY / "boba-backup.service").read_text(encoding="utf-8")
    assert f"exec {SHIPPED_BOBA} backup" in service
    boba = Path(sys.executable).parent / "boba"
    (tmp_path / "boba-backup.service").write_text(service.replace(SHIPPED_BOBA, str(boba)))
    shutil.copy(DEPLOY / "boba-backup.timer", tmp_path / "boba-backup.timer")
    result = subprocess.run(
        [analyze(), "verify", str(tmp_path / "boba-backup.service"),
         str(tmp_path / "boba-backup.timer")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr
    found = directives(service)
    assert found["ProtectSystem"] == ["strict"] and found["ReadWritePaths"] == ["/var/lib/boba"]
    assert found["User"] == ["boba"] and found["NoNewPrivileges"] == ["yes"]


def test_a_misspelt_directive_is_caught(tmp_path: Path) -> None:
    """The check above can fail: systemd-analyze reports an unknown key."""
    unit = unit_for_this_host(tmp_path)
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = subprocess.run([analyze(), "verify", str(unit)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert "Unknown key 'NoNewPrivilege'" in result.stdout + result.stderr


def test_the_unit_is_hardened_and_restarts_on_failure(tmp_path: Path) -> None:
    found = directives(UNIT.read_text(encoding="utf-8"))
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/boba",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "User": "boba",
        "UMask": "0077",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
        "EnvironmentFile": "/etc/boba/boba.env",
        "WorkingDirectory": "/var/lib/boba",
    }.items():
        assert found.get(key) == [value], (key, found.get(key))
    # The exposure score systemd gives it (lower is better; 10 is unprotected).
    unit = unit_for_this_host(tmp_path)
    result = subprocess.run([analyze(), "security", "--offline=yes", str(unit)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    overall = [line for line in result.stdout.splitlines() if "Overall exposure" in line]
    assert overall, result.stdout[-2000:] + result.stderr
    score = float(overall[0].split(":")[1].split()[0])
    print(f"systemd-analyze security: exposure {score} (0 best, 10 worst)")
    assert score <= 2.5
