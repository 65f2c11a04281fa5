"""The `boba` console script: one subcommand per module, imported only when used."""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "serve": ("boba_runtime.serve", "Run the shop: web, calls, SMS and the store."),
    "replay": ("boba_runtime.replay", "Replay recorded calls through the core."),
    "call": ("boba_runtime.phone_cli", "Place a call from the terminal."),
    "bench": ("boba_runtime.bench", "The load benchmark."),
}


def usage() -> str:
    lines = ["usage: boba COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"boba: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
