"""Run the fuzz targets under atheris (libFuzzer), each in its own process.

    python -m fuzz.run                      # every target, 20 s each (what `nox -s fuzz` runs)
    python -m fuzz.run --seconds 3600 --corpus fuzz-corpus   # the long run, corpus kept

Each target starts from a seed corpus of real frames (the 2020 Twilio capture, the agent
capture, every golden session's frames). A finding prints its traceback, leaves the input in
`--artifacts` (default `fuzz-artifacts/`), and makes the command exit 1. Per target the last
line reports the executions run, so a bounded CI run shows it did real work.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = ("twilio", "agent", "phone", "dispatcher")
ROOT = Path(__file__).resolve().parent.parent
_SEED_FILES = {
    "twilio": ["tests/protocol/data/twilio-2020-inbound.jsonl"],
    "agent": ["tests/protocol/data/agent-server-v1.jsonl"],
}


def _seeds(target: str) -> list[bytes]:
    """Real frames for the decoders; a handful of call scripts' bytes for the dispatcher."""
    seeds: list[bytes] = []
    for name in _SEED_FILES.get(target, []):
        path = ROOT / name
        if path.exists():
            seeds += [line.encode() for line in path.read_text().splitlines() if line.strip()]
    golden_type = {"twilio": "twilio", "agent": "agent", "phone": "twilio"}.get(target)
    if golden_type is not None:
        for path in sorted((ROOT / "tests" / "golden").glob("*.jsonl")):
            for line in path.read_text().splitlines()[1:]:
                record = json.loads(line)
                given = record.get("in") or {}
                if given.get("type") == golden_type and "frame" in given:
                    seeds.append(json.dumps(given["frame"]).encode())
    if target == "phone":  # the page's own extension, and what the server sends it
        seeds += [b'{"event": "text", "text": "a taro milk tea with boba"}',
                  b'{"event": "transcript", "role": "assistant", "content": "Anything else?"}',
                  b'{"event": "function", "name": "add_to_cart", "arguments": "{}",'
                  b' "result": "{\\"ok\\": true}"}']
    if target == "dispatcher":
        seeds += [bytes(range(n, n + 64)) for n in range(0, 192, 16)]
    # Media frames dominate the captures: keep one seed per shape (payloads and counters
    # aside), so the corpus stays small and every kind of frame is in it.
    unique: dict[bytes, bytes] = {}
    for seed in seeds:
        key = re.sub(rb'"payload":\s*"[^"]*"|[0-9]+', b"", seed)
        unique.setdefault(key, seed)
    return list(unique.values())[:400]


def _run_one(target: str, seconds: int, corpus: Path, artifacts: Path) -> None:
    """In the child: instrument the core, then hand the target to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["boba_proto"]):
        from boba_proto.menu import parse_menu
        from fuzz import targets

    menu_text = importlib.resources.files("boba_proto").joinpath("menu.toml").read_text()
    menu = parse_menu(menu_text, source="built-in menu.toml")
    chosen = {
        "twilio": targets.twilio_frame,
        "agent": targets.agent_frame,
        "phone": targets.phone_frame,
        "dispatcher": targets.dispatcher(menu),
    }[target]
    args = [sys.argv[0], f"-max_total_time={seconds}", "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/{target}-", "-max_len=4096", "-rss_limit_mb=1024",
            str(corpus)]
    atheris.Setup(args, chosen)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--seconds", type=int, default=20, help="per target (default 20)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="keep each target's corpus in DIR/TARGET (default: a temp dir)")
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    options.artifacts.mkdir(parents=True, exist_ok=True)
    if options.child:
        _run_one(options.target, options.seconds, options.corpus, options.artifacts.resolve())
        return 0
    names = TARGETS if options.target == "all" else (options.target,)
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="boba-fuzz-") as scratch:
        for name in names:
            corpus = (options.corpus or Path(scratch)) / name
            corpus.mkdir(parents=True, exist_ok=True)
            for n, seed in enumerate(_seeds(name)):
                (corpus / f"seed-{n:04d}").write_bytes(seed)
            child = subprocess.run(
                [sys.executable, "-m", "fuzz.run", "--child", "--target", name,
                 "--seconds", str(options.seconds), "--corpus", str(corpus),
                 "--artifacts", str(options.artifacts)],
                cwd=ROOT, capture_output=True, text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", child.stderr)
            executions = int(runs[-1]) if runs else 0
            if child.returncode != 0:
                failed.append(name)
                print(child.stderr[-6000:], file=sys.stderr)
                print(f"{name}: FINDING after {executions} executions "
                      f"(input saved under {options.artifacts}/)")
            elif executions == 0:
                failed.append(name)
                print(child.stderr[-3000:], file=sys.stderr)
                print(f"{name}: the fuzzer ran nothing")
            else:
                print(f"{name}: ok, {executions} executions in {options.seconds} s, "
                      "nothing but typed protocol errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
