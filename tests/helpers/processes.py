"""Child processes that run *this checkout's* code, in a clean environment, and keep
their output for the failure report.

* `checkout_env()`: the caller's environment without any BOBA_/TWILIO_/DEEPGRAM_ setting,
  with PYTHONPATH pointing at the checkout first, so `python -m boba_runtime.cli` imports
  the code under test, not whatever `boba_runtime` is installed. Run children in a tmp
  `cwd` too: that keeps a developer's `.env` out of them.
* `Child`: a `subprocess.Popen` whose stdout and stderr are drained by threads into
  memory (a pipe nobody reads blocks the child once full), so a test can wait for a
  line and print everything the child said when it fails.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

CHECKOUT = Path(__file__).resolve().parents[2]
OUR_PREFIXES = ("BOBA_", "TWILIO_", "DEEPGRAM_", "PROMETHEUS_MULTIPROC_DIR")


def checkout_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a child that must run the checkout with only the settings given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(CHECKOUT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def boba_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "boba_runtime.cli", *args]


class Child:
    """A running child with its output collected line by line (both streams)."""

    def __init__(self, process: subprocess.Popen[str], name: str) -> None:
        self.process = process
        self.name = name
        self._lock = threading.Lock()
        self._out: list[str] = []
        self._err: list[str] = []
        self.stdout_lines: queue.Queue[str] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._drain, args=(process.stdout, self._out, True),
                             daemon=True),
            threading.Thread(target=self._drain, args=(process.stderr, self._err, False),
                             daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: IO[str] | None, into: list[str], is_stdout: bool) -> None:
        if stream is None:
            return
        for line in stream:
            with self._lock:
                into.append(line)
            if is_stdout:
                self.stdout_lines.put(line)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._err)

    def finish(self, timeout: float = 10.0) -> None:
        """Wait for the output threads (after the process has ended)."""
        for reader in self._readers:
            reader.join(timeout)

    def report(self) -> str:
        code = self.process.poll()
        return (f"--- {self.name} (pid {self.process.pid}, exit {code}) stdout ---\n"
                f"{self.stdout}--- {self.name} stderr ---\n{self.stderr}--- end ---")

    def wait_for_line(self, predicate: object, timeout: float) -> str:
        """The first stdout line for which `predicate(line)` is truthy; AssertionError
        (with all output) if the child exits or `timeout` passes first."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stdout_lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.stdout_lines.empty():
                    self.finish(2)
                    if self.stdout_lines.empty():
                        break
                continue
            if predicate(line):
                return line
        raise AssertionError(f"{self.name}: no expected line within {timeout} s\n{self.report()}")


@contextmanager
def run_child(
    argv: list[str], *, cwd: Path, env: Mapping[str, str] | None = None, name: str = "child",
    **popen: object,
) -> Iterator[Child]:
    """Start `argv` in `cwd` with `checkout_env(env)`; kill it if still running at the end.

    The child's whole output is printed when the block ends, so pytest shows it with
    any failure (pytest only shows captured output of failed tests)."""
    process = subprocess.Popen(
        argv, cwd=cwd, env=checkout_env(env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen,  # type: ignore[call-overload]
    )
    child = Child(process, name)
    try:
        yield child
    finally:
        if process.poll() is None:
            process.kill()
        try:
            process.wait(10)
        finally:
            child.finish()
            print(child.report())
