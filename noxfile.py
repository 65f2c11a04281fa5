"""Every CI check is a default session here; `.ci/run` just runs `nox`."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = [
    "tests", "lint", "typecheck", "browser", "fuzz", "deploy", "speech", "faults",
]

LOCK = ("-c", "constraints.txt")
"""Every session installs the exact versions of the committed lock (CI's Python 3.11)."""


@nox.session
def tests(session: nox.Session) -> None:
    """Protocol, golden, runtime and loopback tests (all but browser, deploy, speech, faults)."""
    session.install("-e", ".[test]", *LOCK)
    # The speech and browser folders belong to their own sessions (they import engines and
    # a browser this session does not install): not even collected here; nor the faults.
    session.run(
        "pytest", "-m", "not browser and not deploy and not speech and not faults",
        "--durations=10",
        *(session.posargs or ("tests", "--ignore=tests/speech", "--ignore=tests/browser",
                              "--ignore=tests/faults")),
    )


@nox.session
def faults(session: nox.Session) -> None:
    """The fault suite (docs/faults.md): real `boba serve` processes under SIGKILL, killed
    PostgreSQL connections, a failing Twilio API and a burst of calls; each case prints its
    figure (`FAULT ...`). Needs PostgreSQL (BOBA_TEST_POSTGRES_URL, default local)."""
    session.install("-e", ".[test]", *LOCK)
    session.run("pytest", "-m", "faults", "-s", "--durations=10",
                *(session.posargs or ("tests/faults",)))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6", *LOCK)
    session.run("ruff", "check", "boba_proto", "boba_runtime", "boba_web", "tests", "fuzz",
                "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the sans-IO core, then on the runtime and web layers."""
    session.install("-e", ".[typecheck]", *LOCK)
    session.run("mypy", "--strict", "boba_proto")
    session.run("mypy", "--strict", "boba_runtime", "boba_web")


@nox.session
def browser(session: nox.Session) -> None:
    """The TV board and the barista console in real headless Chromium (Debian's package)."""
    session.run("bash", "scripts/setup-browser.sh", external=True)
    session.install("-e", ".[test,speech]", *LOCK)  # /phone by voice needs the offline speech
    session.run("pytest", "-m", "browser", *(session.posargs or ("tests/browser",)))


@nox.session(default=False)
def screenshots(session: nox.Session) -> None:
    """Deliberate refresh of docs/*.png from the browser tests (never in CI): review, commit."""
    session.run("bash", "scripts/setup-browser.sh", external=True)
    session.install("-e", ".[test,speech]", *LOCK)
    session.run(
        "pytest", "-m", "browser", *(session.posargs or ("tests/browser",)),
        env={"BOBA_SCREENSHOTS_TO_DOCS": "1"},
    )


@nox.session
def fuzz(session: nox.Session) -> None:
    """Coverage-guided fuzzing (atheris) of the decoders and the function dispatcher, bounded.

    The long run: `nox -s fuzz -- --seconds 3600 --corpus fuzz-corpus` (docs/fuzzing.md).
    """
    session.install("-e", ".[fuzz]", *LOCK)  # atheris itself: not in the lock yet
    session.run("python", "-m", "fuzz.run", *(session.posargs or ("--seconds", "20")))


@nox.session
def deploy(session: nox.Session) -> None:
    """deploy/: nginx and Caddy (Debian's packages) in front of a real `boba serve` over TLS,
    and the systemd unit checked by systemd-analyze. Prints the measured SSE delay."""
    session.run("bash", "scripts/setup-deploy.sh", external=True)
    session.install("-e", ".[test]", *LOCK)
    session.run("pytest", "-m", "deploy", "-s", *(session.posargs or ("tests/deploy",)))


@nox.session
def speech(session: nox.Session) -> None:
    """The local agent's offline speech (issue 19): accuracy, and an order by voice."""
    session.install("-e", ".[test,speech]", *LOCK)
    session.run(  # the voice test of /phone runs in the browser session
        "pytest", "-m", "speech and not browser", "--durations=5",
        *(session.posargs or ("tests",)),
    )


@nox.session
def golden_update(session: nox.Session) -> None:
    """Deliberate snapshot refresh: never run in CI; review the diff before committing."""
    session.install("-e", ".[test]", *LOCK)
    session.run("pytest", "tests/golden", "--snapshot-update")


@nox.session(default=False)
def bench_dsp(session: nox.Session) -> None:
    """DSP micro-benchmark (issue 3): µs per call per 20 ms tick vs resample_poly per chunk."""
    session.install("-e", ".", *LOCK)
    session.run(
        "python", "bench/bench_dsp.py", *(session.posargs or ("--pin",)),
        env={"OPENBLAS_NUM_THREADS": "1"},
    )


@nox.session(default=False)
def bench_speech(session: nox.Session) -> None:
    """CPU per call of the local agent's offline speech (issue 19)."""
    session.install("-e", ".[speech]", *LOCK)
    session.run("python", "bench/bench_speech.py", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Load benchmark (CONTRACT §11): `nox -s bench -- --calls 50 --audio mulaw --json f.json`."""
    session.install("-e", ".", *LOCK)
    session.run("boba", "bench", *session.posargs)
