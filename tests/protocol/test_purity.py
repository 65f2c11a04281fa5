"""DESIGN §1: boba_proto does no I/O and imports nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

import boba_proto

FORBIDDEN = {
    "trio", "trio_websocket", "quart", "quart_trio", "hypercorn", "twilio", "asyncio",
    "socket", "ssl", "http", "urllib", "requests", "httpx", "sqlite3", "psycopg",
    "threading", "subprocess", "boba_runtime", "boba_web",
}
ROOT = Path(boba_proto.__file__).parent


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


def test_boba_proto_imports_nothing_that_does_io() -> None:
    assert forbidden_imports(ROOT) == []


def test_the_checker_catches_a_bad_import(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import os\nfrom trio import sleep\n")
    assert forbidden_imports(tmp_path) == ["bad.py:2 trio"]


def test_runtime_never_imports_web() -> None:
    runtime = Path(boba_proto.__file__).parent.parent / "boba_runtime"
    offenders = [
        str(p) for p in runtime.rglob("*.py")
        if any(
            (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("boba_web"))
            or (isinstance(n, ast.Import) and any(a.name.startswith("boba_web") for a in n.names))
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    assert offenders == []
