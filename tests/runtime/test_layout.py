"""The runtime's folders keep to their `__init__` docstrings: each imports only what it says
(DESIGN §3, "How the runtime's folder should read")."""

from __future__ import annotations

import ast
from pathlib import Path

import boba_runtime

ROOT = Path(boba_runtime.__file__).parent

MAY_IMPORT = {  # part of the runtime -> the parts of the runtime it may import
    "config": {"config"},
    "store": {"store", "config"},
    "call": {"call", "config", "store", "metrics"},
    "agent": {"agent", "call"},
    "metrics": {"store"},
    "services": {"services", "config", "store", "call", "metrics"},
    "cli": {"cli", "config", "store", "call", "agent", "metrics", "services"},
    "__main__": {"cli"},  # `python -m boba_runtime` is the `boba` command
}


def part_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def runtime_imports(path: Path) -> set[str]:
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            names = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "boba_runtime" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def test_every_part_of_the_runtime_is_listed() -> None:
    found = {part_of(path) for path in ROOT.rglob("*.py")} - {"__init__"}
    assert found == set(MAY_IMPORT)


def test_each_folder_imports_only_what_its_docstring_allows() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        part = part_of(path)
        if part == "__init__":
            continue
        extra = runtime_imports(path) - MAY_IMPORT[part]
        if extra:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(extra)}")
    assert offenders == []


def test_every_folder_says_what_it_owns() -> None:
    for folder in sorted(p for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc and "May import" in doc, folder.name
