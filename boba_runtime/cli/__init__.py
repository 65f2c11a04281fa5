"""The commands: `boba serve`'s process supervisor (`serve`, with its Hypercorn patch
`hypercorn_guard` and its open-files limit `fdlimit`), `boba replay` (`replay`), `boba
call` (`phone`), `boba bench` (`bench`, `bench_driver`, `bench_baseline`), `boba check`
(`check`), `boba backup` (`backup`), `boba erase` (`erase`), and here the `boba` console
script that dispatches to them, one subcommand per module, imported only when used.

May import anything in the runtime; nothing in the runtime imports this (the web
layer's composition root does: it hands `serve.main` its app factory).

The runtime's own commands are listed here. `boba serve` needs the web app, which the
runtime must not import (DESIGN §1), so it is provided by the composition root and found
through the `boba.commands` entry point group of the installed distribution (pyproject.toml,
where the top layer registers `serve`); any installed package may add a command the same way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Final

COMMAND_GROUP: Final = "boba.commands"
"""Entry points of this group are `boba` subcommands: `main(argv) -> exit code`."""

SUBCOMMANDS: Final = {
    "replay": ("boba_runtime.cli.replay", "Replay recorded calls through the core."),
    "call": ("boba_runtime.cli.phone", "Place a call from the terminal."),
    "bench": ("boba_runtime.cli.bench", "The load benchmark."),
    "check": ("boba_runtime.cli.check", "Check the settings and everything they point at."),
    "backup": ("boba_runtime.cli.backup", "A consistent copy of the order store while it serves."),
    "erase": ("boba_runtime.cli.erase", "Erase one person's data (--phone)."),
}
PLUGGED_HELP: Final = {"serve": "Run the shop: web, calls, SMS and the store."}

Command = Callable[[list[str]], int]


def _plugged() -> list[str]:
    return [ep.name for ep in entry_points(group=COMMAND_GROUP)]


def usage() -> str:
    helps = {name: PLUGGED_HELP.get(name, "") for name in _plugged()}
    helps.update({name: help_ for name, (_, help_) in SUBCOMMANDS.items()})
    lines = ["usage: boba COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, help_ in helps.items()]
    return "\n".join(lines)


def find_command(name: str) -> Command | None:
    if name in SUBCOMMANDS:
        main: Command = importlib.import_module(SUBCOMMANDS[name][0]).main
        return main
    for ep in entry_points(group=COMMAND_GROUP, name=name):
        plugged: Command = ep.load()
        return plugged
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    command = find_command(name)
    if command is None:
        hint = ""
        if name in PLUGGED_HELP:
            hint = " (not installed: `pip install -e .` registers it)"
        print(f"boba: unknown command {name!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    return command(rest)


if __name__ == "__main__":
    raise SystemExit(main())
