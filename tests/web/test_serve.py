"""`boba serve` as a real process: starts with no configuration, answers, stops on signals."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from boba_web.app import serve_command as main
from tests.helpers.processes import CHECKOUT, Child, boba_command, checkout_env, run_child

START_TIMEOUT = 60.0
BANNER = re.compile(r"BobaRista is open on (http://127\.0\.0\.1:\d+)")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any setting of ours, so only defaults (and .env) apply."""
    return checkout_env(extra)


class ServeProcess:
    def __init__(self, child: Child) -> None:
        self.child = child
        self.process = child.process
        self.stdout: list[str] = []

    def wait_for_banner(self) -> str:
        """The base URL, once the banner (through its staff-password line) is printed."""
        first = self.child.wait_for_line(BANNER.search, START_TIMEOUT)
        self.stdout.append(first)
        self.stdout.append(self.child.wait_for_line(lambda line: "staff password:" in line, 5))
        found = BANNER.search(first)
        assert found is not None
        return found.group(1)


@contextmanager
def boba_serve(cwd: Path, *args: str, **env: str) -> Iterator[ServeProcess]:
    with run_child(boba_command("serve", *args), cwd=cwd, env=env, name="boba serve") as child:
        yield ServeProcess(child)


def test_children_run_this_checkout(tmp_path: Path) -> None:
    """What `python -m boba_runtime…` imports in a child is the code under test."""
    done = subprocess.run(
        [*boba_command()[:1], "-c", "import boba_runtime, boba_web, boba_proto; "
         "print(boba_runtime.__file__, boba_web.__file__, boba_proto.__file__)"],
        cwd=tmp_path, env=checkout_env(), capture_output=True, text=True, timeout=60, check=True,
    )
    for path in done.stdout.split():
        assert Path(path).resolve().is_relative_to(CHECKOUT), done.stdout


@pytest.mark.slow
def test_serve_starts_with_no_configuration_answers_and_stops_cleanly(tmp_path: Path) -> None:
    with boba_serve(tmp_path, "--port", "0") as shop:
        base_url = shop.wait_for_banner()
        password_file = tmp_path / "boba-data" / "staff-password"
        password = password_file.read_text().strip()
        shop.child.wait_for_line(lambda line: password in line, 5)  # first start: shown
        banner = shop.child.stdout
        assert f"{base_url}/orders" in banner and f"{base_url}/barista" in banner
        assert "boba-data/staff-password" in banner
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        health = httpx.get(f"{base_url}/healthz", timeout=10)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        shop.process.send_signal(signal.SIGTERM)
        assert shop.process.wait(30) == 0
        shop.child.finish()
        assert password not in shop.child.stderr
    assert (tmp_path / "boba.sqlite3").exists()

    with boba_serve(tmp_path, "--port", "0") as again:  # second start: same password, not shown
        base_url = again.wait_for_banner()
        assert password not in again.child.stdout
        assert httpx.get(f"{base_url}/api/orders/0000", timeout=10,
                         headers={"Authorization": f"Bearer {password}"}).status_code == 404
        again.process.send_signal(signal.SIGINT)
        assert again.process.wait(30) == 0


def test_a_bad_setting_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    with boba_serve(tmp_path, "--port", "0", BOBA_AUDIO="x") as shop:
        assert shop.process.wait(60) == 2
        shop.child.finish()
    lines = shop.child.stderr.strip().splitlines()
    assert lines == ["boba serve: BOBA_AUDIO: expected linear16 or mulaw, got 'x'"]
    assert not (tmp_path / "boba-data").exists()  # nothing written before refusing


@pytest.mark.parametrize(("argv", "env", "dotenv", "variable"), [
    (["--port", "abc"], {}, "", "BOBA_PORT"),
    (["--workers", "0"], {}, "", "BOBA_WORKERS"),
    ([], {"BOBA_HOST": "0.0.0.0"}, "", "BOBA_VALIDATE_TWILIO"),
    # issue #13 point 4: loopback bind, but a public URL behind a proxy and no auth token
    ([], {"BOBA_PUBLIC_URL": "https://boba.example.com"}, "", "BOBA_VALIDATE_TWILIO"),
    # issue #13 point 3: a staff password the shop sets needs 12 characters
    ([], {"BOBA_STAFF_PASSWORD": "short-pass1"}, "", "BOBA_STAFF_PASSWORD"),
    ([], {"BOBA_TRUSTED_PROXIES": "10.0.0.0/8,proxy"}, "", "BOBA_TRUSTED_PROXIES"),
    ([], {"BOBA_MAX_SSE_CLIENTS": "0"}, "", "BOBA_MAX_SSE_CLIENTS"),
    ([], {}, "BOBA_MAX_CALLS=many\n", "BOBA_MAX_CALLS"),
    ([], {"BOBA_MENU": "missing.toml"}, "", "BOBA_MENU"),
    ([], {"BOBA_DATABASE": "postgresql://db.example.com/boba"}, "", "BOBA_DATABASE"),
])
def test_bad_settings_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], env: dict[str, str], dotenv: str, variable: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(dotenv)
    assert main(argv, clean_env(BOBA_PORT="0", **env)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"boba serve: {variable}: ")


def test_port_in_use_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:

    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)], clean_env()) == 2
    assert capsys.readouterr().err.startswith("boba serve: BOBA_PORT: cannot listen on")


@pytest.mark.slow
def test_workers_share_the_port_the_store_and_the_event_ids(tmp_path: Path) -> None:
    import trio

    from boba_runtime.store.order_store import OrderStore
    from tests.helpers.orders import draft

    with boba_serve(tmp_path, "--port", "0", "--workers", "2") as shop:
        base_url = shop.wait_for_banner()
        assert "2 worker processes" in shop.child.stdout
        assert all(httpx.get(f"{base_url}/healthz", timeout=30).status_code == 200
                   for _ in range(4))

        async def orders_reach_every_stream() -> list[list[str]]:
            lines: list[list[str]] = [[] for _ in range(4)]
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

                async def listen(index: int, connected: trio.Event) -> None:
                    # a fresh connection each, so the kernel spreads them over the workers
                    async with (
                        httpx.AsyncClient(base_url=base_url, timeout=30) as own,
                        own.stream("GET", "/orders/events") as response,
                    ):
                        connected.set()
                        async for line in response.aiter_lines():
                            if line.startswith(("id:", "data:")):
                                lines[index].append(line)
                            if line.startswith("data:"):
                                return

                async with trio.open_nursery() as nursery:
                    for index in range(4):
                        connected = trio.Event()
                        nursery.start_soon(listen, index, connected)
                        await connected.wait()  # headers come after the subscription
                    store = await OrderStore.open(f"sqlite:///{tmp_path / 'boba.sqlite3'}")
                    try:
                        await store.commit_order(draft())  # another process commits
                    finally:
                        await store.aclose()
                    with trio.fail_after(20):
                        while not all(lines):
                            await trio.sleep(0.05)
                    nursery.cancel_scope.cancel()
                assert (await client.get("/api/orders")).status_code == 200
            return lines

        lines = trio.run(orders_reach_every_stream)
        assert len({tuple(found) for found in lines}) == 1  # same id and data everywhere
        assert lines[0][0] == "id: 1" and '"order_created"' in lines[0][1]
        shop.process.send_signal(signal.SIGTERM)
        assert shop.process.wait(30) == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a test cert")
async def test_tls_when_cert_and_key_are_set(tmp_path: Path) -> None:
    from tests.helpers.server import running_server

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )
    env = {"BOBA_TLS_CERT": str(cert), "BOBA_TLS_KEY": str(key)}
    async with running_server(tmp_path / "shop", env) as server:
        assert server.base_url.startswith("https://")
        assert server.settings.public_url.startswith("https://")
        assert server.settings.stream_url.startswith("wss://")
        async with httpx.AsyncClient(verify=False) as client:
            response = await client.get(f"{server.base_url}/healthz")
        assert response.json() == {"status": "ok"}


def children_of(pid: int) -> list[str]:
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(stat_file.parent.name)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc for children")
def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    with boba_serve(tmp_path, "--port", "0", "--workers", "2") as shop:
        base_url = shop.wait_for_banner()
        assert httpx.get(f"{base_url}/healthz", timeout=30).status_code == 200
        pid = shop.process.pid
        children = children_of(pid)
        assert len(children) == 2
        shop.process.kill()  # SIGKILL: no chance to forward anything
        shop.process.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
            time.sleep(0.1)
        assert not any(Path(f"/proc/{c}").exists() for c in children)


@pytest.mark.slow
def test_serve_raises_its_open_files_limit_to_the_hard_limit(tmp_path: Path) -> None:
    """1,000 idle event streams took the server down at a soft limit of 1024 (issue #13
    point 5): `boba serve` raises the soft limit to the hard one at start and logs it."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    if hard == low:
        pytest.skip("the hard limit is too low to tell a raise from none")

    def lower_the_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    with run_child(boba_command("serve", "--port", "0"), cwd=tmp_path, name="boba serve",
                   preexec_fn=lower_the_soft_limit) as child:
        process = child.process
        ServeProcess(child).wait_for_banner()
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        expected = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        assert line.split()[3] == expected or int(line.split()[3]) > low, line
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        child.finish()
        assert f"open files limit: {line.split()[3]} (was {low}" in child.stderr


def free_port() -> int:

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def queue_a_request(port: int, timeout: float) -> socket.socket:
    """A `GET /healthz` sent as soon as the port takes connections (it then waits in the
    shared accept queue until a worker accepts it)."""

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline, f"port {port} never took a connection"
            time.sleep(0.01)
    conn.settimeout(60)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return conn


def read_answer(conn: socket.socket) -> bytes:
    answer = b""
    with conn:
        while chunk := conn.recv(65536):  # ConnectionResetError here is the bug
            answer += chunk
    return answer


def stop_during_start_up(cwd: Path, delay: float) -> str | None:
    """Start `--workers 2`, queue a request, SIGTERM the supervisor `delay` s after the
    port opened; None if the request was answered and the exit code was 0, else why not."""
    from concurrent.futures import ThreadPoolExecutor

    port = free_port()
    with (
        boba_serve(cwd, "--port", str(port), "--workers", "2") as shop,
        ThreadPoolExecutor(1) as reader,
    ):
        answer = reader.submit(read_answer, queue_a_request(port, START_TIMEOUT))
        time.sleep(delay)
        shop.process.send_signal(signal.SIGTERM)
        code = shop.process.wait(60)
        try:
            text = answer.result(10)
        except OSError as error:
            text = f"{error!r}".encode()
        if code == 0 and text.startswith(b"HTTP/1.1 200"):
            return None
        shop.child.finish()
        return (f"SIGTERM {delay:.2f} s after the port opened: exit {code}, answer "
                f"{text[:60]!r}\n{shop.child.report()}")


@pytest.mark.slow
def test_sigterm_during_worker_start_up_is_a_clean_stop(tmp_path: Path) -> None:
    """`--workers 2` stopped while its workers start (20 times, at delays spread over the
    start-up, two shops at a time): every queued request is answered, never reset, and
    the exit code is 0. Before the fix a worker signalled before installing its handler
    died of SIGTERM (-15), the supervisor stopped the other, and the accept queue was
    reset; and a supervisor signalled before `trio.run` died holding the bound port."""
    from concurrent.futures import ThreadPoolExecutor

    delays = [0.15 * i for i in range(20)]  # 0 … 2.85 s after the port opened
    for attempt in range(20):
        (tmp_path / f"start-{attempt}").mkdir()
    with ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(
            lambda attempt: stop_during_start_up(tmp_path / f"start-{attempt}", delays[attempt]),
            range(20)) if f is not None]
    assert not failures, "\n\n".join(failures)
