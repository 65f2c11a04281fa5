"""Real processes for the deployment tests: `boba serve`, nginx running deploy/nginx.conf,
and a self-signed certificate for 127.0.0.1. Everything listens on loopback only."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
START_TIMEOUT = 60.0
BANNER = re.compile(r"BobaRista is open on (http://127\.0\.0\.1:(\d+))")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts this certificate (as Twilio trusts a real CA) uses."""
        return ssl.create_default_context(cafile=str(self.cert))


def self_signed_certificate(directory: Path) -> Certificate:
    """A certificate for IP 127.0.0.1 (and localhost), valid one day, made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return Certificate(cert, key)


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BOBA_", "TWILIO_", "DEEPGRAM_"))}
    env.update(extra)
    return env


@dataclass
class BobaProcess:
    process: subprocess.Popen[str]
    base_url: str
    port: int
    stderr_path: Path

    def log_lines(self) -> list[str]:
        return self.stderr_path.read_text(encoding="utf-8").splitlines()


@contextmanager
def boba_serve(cwd: Path, env: Mapping[str, str]) -> Iterator[BobaProcess]:
    """A real `boba serve --port 0`; stopped with SIGTERM (graceful) at the end."""
    stderr_path = cwd / "boba-serve.stderr"
    with open(stderr_path, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "boba_runtime", "serve", "--port", "0"],
            cwd=cwd, env=clean_env(env), text=True, stdout=subprocess.PIPE, stderr=stderr,
        )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        seen: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        found = None
        while found is None:
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(
                    f"boba serve did not start: {''.join(seen)!r} "
                    f"{stderr_path.read_text()[-2000:]!r}"
                )
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            seen.append(line)
            found = BANNER.search(line)
        yield BobaProcess(process, found.group(1), int(found.group(2)), stderr_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def nginx_site(*, upstream_port: int, http_port: int, https_port: int,
               certificate: Certificate) -> str:
    """deploy/nginx.conf with only its CHANGE values swapped for this test's."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    swaps = [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("    listen 80;\n", f"    listen 127.0.0.1:{http_port};\n"),
        ("    listen [::]:80;\n", ""),
        ("    listen 443 ssl;\n", f"    listen 127.0.0.1:{https_port} ssl;\n"),
        ("    listen [::]:443 ssl;\n", ""),
        ("/etc/letsencrypt/live/boba.example.com/fullchain.pem", str(certificate.cert)),
        ("/etc/letsencrypt/live/boba.example.com/privkey.pem", str(certificate.key)),
    ]
    for old, new in swaps:
        assert text.count(old) == 1, f"deploy/nginx.conf no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class NginxProcess:
    process: subprocess.Popen[bytes]
    prefix: Path
    https_port: int
    http_port: int

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found is None:
        raise AssertionError("nginx is not installed: run scripts/setup-deploy.sh "
                             "(nox -s deploy does)")
    return found


def nginx_main_config(prefix: Path) -> str:
    """The parts of Debian's /etc/nginx/nginx.conf the site needs, in a private prefix."""
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers reach the tmp dir
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n{temp}\n"
        "    gzip on;\n"  # as Debian's default: the SSE location must turn it off
        f"    include {prefix / 'boba-site.conf'};\n"
        "}\n"
    )


@contextmanager
def nginx_in_front(directory: Path, *, https_port: int, upstream_port: int,
                   certificate: Certificate) -> Iterator[NginxProcess]:
    prefix = directory / "nginx"
    prefix.mkdir()
    http_port = free_port()
    (prefix / "boba-site.conf").write_text(nginx_site(
        upstream_port=upstream_port, http_port=http_port, https_port=https_port,
        certificate=certificate,
    ))
    config = prefix / "nginx.conf"
    config.write_text(nginx_main_config(prefix))
    binary = nginx_binary()
    base = [binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    test = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert test.returncode == 0, f"nginx -t refused the config: {test.stderr}"
    process = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(https_port)
        yield NginxProcess(process, prefix, https_port, http_port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def caddy_binary() -> str:
    found = shutil.which("caddy")
    if found is None:
        raise AssertionError("caddy is not installed: run scripts/setup-deploy.sh "
                             "(nox -s deploy does)")
    return found


def caddy_site(*, upstream_port: int, https_port: int, http_port: int,
               certificate: Certificate, prefix: Path) -> str:
    """deploy/Caddyfile with its host, upstream, admin and log swapped for this test's, and
    the test certificate instead of one from Let's Encrypt."""
    text = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    swaps = [
        ("\tadmin localhost:2019\n",
         f"\tadmin off\n\tauto_https disable_redirects\n\thttp_port {http_port}\n"
         f"\thttps_port {https_port}\n\tstorage file_system {prefix / 'storage'}\n"),
        ("boba.example.com {\n",
         f"https://127.0.0.1:{https_port} {{\n\tbind 127.0.0.1\n"
         f"\ttls {certificate.cert} {certificate.key}\n"),
        ("reverse_proxy 127.0.0.1:8000 {", f"reverse_proxy 127.0.0.1:{upstream_port} {{"),
        ("output file /var/log/caddy/boba-access.log", f"output file {prefix / 'access.log'}"),
    ]
    for old, new in swaps:
        assert text.count(old) == 1, f"deploy/Caddyfile no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class CaddyProcess:
    process: subprocess.Popen[bytes]
    prefix: Path
    https_port: int

    @property
    def public_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def error_log(self) -> str:
        path = self.prefix / "caddy.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def caddy_in_front(directory: Path, *, https_port: int, upstream_port: int,
                   certificate: Certificate) -> Iterator[CaddyProcess]:
    prefix = directory / "caddy"
    prefix.mkdir()
    config = prefix / "Caddyfile"
    config.write_text(caddy_site(upstream_port=upstream_port, https_port=https_port,
                                 http_port=free_port(), certificate=certificate,
                                 prefix=prefix))
    env = {**os.environ, "HOME": str(prefix), "XDG_DATA_HOME": str(prefix / "data"),
           "XDG_CONFIG_HOME": str(prefix / "config")}
    binary = caddy_binary()
    checked = subprocess.run([binary, "validate", "--config", str(config), "--adapter",
                              "caddyfile"], capture_output=True, text=True, timeout=60, env=env)
    assert checked.returncode == 0, f"caddy validate refused it: {checked.stderr[-2000:]}"
    with open(prefix / "caddy.log", "wb") as log:
        process = subprocess.Popen(
            [binary, "run", "--config", str(config), "--adapter", "caddyfile"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    try:
        wait_for_port(https_port)
        yield CaddyProcess(process, prefix, https_port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
