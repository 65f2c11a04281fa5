"""DESIGN §1: boba_proto does no I/O and imports nothing above it; boba_runtime never
reaches up into boba_web, neither by an import nor by a module name in a string."""

from __future__ import annotations

import ast
from pathlib import Path

import boba_proto

FORBIDDEN = {
    "trio", "trio_websocket", "quart", "quart_trio", "hypercorn", "twilio", "asyncio",
    "socket", "ssl", "http", "urllib", "requests", "httpx", "sqlite3", "psycopg",
    "threading", "subprocess", "boba_runtime", "boba_web",
    # no clock, no environment, no files, no randomness, no logging: all arrive as inputs
    # (date arithmetic for the shop's hours lives in boba_runtime.config.hours)
    "os", "time", "datetime", "random", "uuid", "pathlib", "logging",
}
CLOCK_READS = {"now", "utcnow", "today"}
ROOT = Path(boba_proto.__file__).parent
RUNTIME = ROOT.parent / "boba_runtime"
ABOVE_RUNTIME = ("boba_web",)


def forbidden_imports(root: Path) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            bad += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    return bad


def upward_references(root: Path, above: tuple[str, ...] = ABOVE_RUNTIME) -> list[str]:
    """Imports of, and module names in strings (`importlib.import_module("boba_web.app")`,
    `"boba_web.app:create_app"`), the layers above. Docstrings may name them: a string
    that is a statement of its own is documentation, never loaded."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        docs = {
            id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if id(node) in docs:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [
                    word.split(":")[0]
                    for word in node.value.replace("`", " ").replace("'", " ").split()
                ]
            else:
                continue
            bad += [
                f"{path.relative_to(root)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in above
            ]
    return bad


def clock_reads(root: Path) -> list[str]:
    """Calls like `datetime.now()`, `datetime.utcnow()` or `date.today()`."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCK_READS
            ):
                bad.append(f"{path.name}:{node.lineno} {node.func.attr}()")
    return bad


def test_boba_proto_imports_nothing_that_does_io() -> None:
    assert forbidden_imports(ROOT) == []


def test_boba_proto_never_reads_the_clock(tmp_path: Path) -> None:
    assert clock_reads(ROOT) == []
    (tmp_path / "clock.py").write_text(
        "from datetime import datetime\nx = datetime.now()\ny = datetime(2026, 1, 1)\n"
    )
    assert clock_reads(tmp_path) == ["clock.py:2 now()"]


def test_the_checker_catches_a_bad_import(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import json\nfrom trio import sleep\n")
    assert forbidden_imports(tmp_path) == ["bad.py:2 trio"]


def test_the_checker_catches_the_clock_the_environment_and_logging(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import os\nimport time, json\nfrom datetime import datetime\nimport logging\n"
    )
    assert forbidden_imports(tmp_path) == [
        "bad.py:1 os", "bad.py:2 time", "bad.py:3 datetime", "bad.py:4 logging",
    ]


def test_runtime_never_imports_or_names_web() -> None:
    assert upward_references(RUNTIME) == []


def test_the_upward_checker_sees_imports_and_import_strings(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        '"""Wired by boba_web.app (a docstring may say so)."""\n'
        "import importlib\n"
        "from boba_web.app import create_app\n"
        "APP = 'boba_web.app:create_app'\n"
        "mod = importlib.import_module(\"boba_web.pages\")\n"
        "ok = 'the web layer (boba_webhooks is another name)'\n"
    )
    assert upward_references(tmp_path) == [
        "bad.py:3 boba_web.app", "bad.py:4 boba_web.app", "bad.py:5 boba_web.pages",
    ]
