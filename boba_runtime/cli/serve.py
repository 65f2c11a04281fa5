"""`boba serve`: the whole shop in one trio run.

    trio.run
    └── root nursery
        ├── signal watcher      SIGINT/SIGTERM → graceful shutdown; a second one → stop now
        └── run_shop
            ├── store + event feed      (open_services, with the call-record writer)
            ├── SMS outbox worker
            ├── ready-expiry task       ready → picked_up after BOBA_READY_EXPIRY_MINUTES
            ├── retention task          BOBA_RETENTION_DAYS: at start, then hourly
            └── public_port.serve_public  our own listening socket: raw WebSocket routes
                                          (/twilio) on the stream, the rest to Hypercorn
                                          serving app_factory(services)

The runtime does not import the web layer (DESIGN §1): `run_shop` and `main` take the
app factory as a parameter. The composition root (`boba_web.app.serve_command`) calls
`main` with its `create_app`, and the `boba` dispatcher reaches it through the
`boba.commands` entry point (a worker of `--workers N` is started the same way).

We bind the listening socket ourselves (`serve_public` listens on it), so with port 0
the real port is known before Services are built and the default public URL is right.
Exit codes: 0 after a clean shutdown, 2 for bad settings (one line naming the variable).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from functools import partial
from typing import Any

import msgspec
import trio
from hypercorn.config import Config

from boba_proto.menu import Menu
from boba_runtime.cli.fdlimit import raise_open_files_limit
from boba_runtime.cli.hypercorn_guard import guard_connections
from boba_runtime.cli.public_port import RAW_ROUTES, RawWebSocketRoute, serve_public
from boba_runtime.config.logs import configure_logging
from boba_runtime.config.secrets import Secrets, load_secrets
from boba_runtime.config.settings import Settings, SettingsError, load_settings
from boba_runtime.services import Services, load_menu, open_services
from boba_runtime.store.feed import DEFAULT_PING_INTERVAL
from boba_runtime.store.order_store import run_ready_expiry
from boba_runtime.store.retention import run_retention
from boba_runtime.store.sms import make_sender, run_sms_worker

log = logging.getLogger("boba.serve")

DEFAULT_GRACE_PERIOD = 10.0  # seconds calls in progress may take to finish on shutdown
LISTEN_BACKLOG = 1024
LISTEN_FD = "listen_fd"  # internal flags of a worker process (not settings)
PARENT_PID = "parent_pid"
READY_FD = "ready_fd"
READY = b"ready\n"  # what a worker writes on its ready pipe once it accepts connections
# A peer that acknowledges nothing for this long is gone (a frozen TV, a dead network).
# Hypercorn's socket writes are shielded from cancellation, so without this kernel limit
# one such client could hold its connection, and the shutdown, forever.
STALLED_CONNECTION_TIMEOUT = 30.0


class ShopStarted(msgspec.Struct, frozen=True, kw_only=True):
    """What `run_shop` reports once it answers requests."""

    base_url: str  # where it listens, e.g. http://127.0.0.1:41234
    services: Services


def bind_listener(
    settings: Settings, *, stalled_timeout: float = STALLED_CONNECTION_TIMEOUT
) -> socket.socket:
    """A listening TCP socket on BOBA_HOST:BOBA_PORT; failure is a SettingsError.

    Accepted connections inherit TCP_USER_TIMEOUT (Linux): unacknowledged data older
    than `stalled_timeout` fails the connection instead of blocking its writer forever.
    """
    host = None if settings.host in {"", "*"} else settings.host.strip("[]")
    try:
        family, type_, proto, _, address = socket.getaddrinfo(
            host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, type_, proto)
    except OSError as error:
        raise SettingsError("BOBA_HOST", f"cannot use {settings.host!r}: {error}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            milliseconds = max(1, int(stalled_timeout * 1000))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        raise SettingsError(
            "BOBA_PORT", f"cannot listen on {settings.host}:{settings.port}: {error.strerror}"
        ) from None
    return sock


def hypercorn_config(settings: Settings, fd: int, grace_period: float) -> Config:
    guard_connections()  # a client that breaks one connection cannot stop the server
    config = Config()
    config.bind = [f"fd://{fd}"]
    config.websocket_max_message_size = settings.max_message_bytes
    config.graceful_timeout = grace_period
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our logging setup
    if settings.tls_cert is not None and settings.tls_key is not None:
        config.certfile = settings.tls_cert
        config.keyfile = settings.tls_key
    return config


async def expire_ready_orders(services: Services) -> None:
    """ready → picked_up after BOBA_READY_EXPIRY_MINUTES, checked a few times per period;
    the board and the console hear of it at once (through the store's change signal)."""
    older_than = timedelta(minutes=services.settings.ready_expiry_minutes)
    await run_ready_expiry(
        services.store,
        after=older_than,
        interval=min(30.0, max(0.5, older_than.total_seconds() / 10)),
    )


async def keep_retention(
    services: Services, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """BOBA_RETENTION_DAYS: erase old personal data and recordings, at start and hourly."""
    await run_retention(
        services.store,
        days=services.settings.retention_days,
        record_dir=services.settings.record_dir,
        task_status=task_status,
    )


def raw_routes(app: Any) -> dict[str, RawWebSocketRoute]:
    """The WebSocket routes the app asks to take off Hypercorn (`public_port.RAW_ROUTES`)."""
    extensions = getattr(app, "extensions", None)
    routes = extensions.get(RAW_ROUTES) if isinstance(extensions, dict) else None
    return dict(routes) if routes else {}


AppFactory = Callable[[Services], Any]
"""Services -> the ASGI app (`boba_web.app.create_app`, handed in by the composition root)."""


async def run_shop(
    settings: Settings,
    *,
    app_factory: AppFactory,
    shutdown: trio.Event,
    secrets: Secrets | None = None,
    menu: Menu | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    sse_ping_interval: float = DEFAULT_PING_INTERVAL,
    poll_interval: float | None = None,
    client_buffer: int | None = None,
    store: Any = None,
    stalled_timeout: float = STALLED_CONNECTION_TIMEOUT,
    listener: socket.socket | None = None,
    task_status: trio.TaskStatus[ShopStarted] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Everything `boba serve` runs, until `shutdown` is set and connections have closed.

    Tests run this too (tests/helpers/server.py), with port 0 and shorter intervals.
    """
    if listener is None:  # a worker of `--workers N` inherits its parent's socket instead
        listener = bind_listener(settings, stalled_timeout=stalled_timeout)
    try:
        settings = settings.with_port(listener.getsockname()[1])
        options: dict[str, Any] = {"sse_ping_interval": sse_ping_interval, "store": store}
        if poll_interval is not None:
            options["poll_interval"] = poll_interval
        if client_buffer is not None:
            options["client_buffer"] = client_buffer
        async with open_services(settings, secrets=secrets, menu=menu, **options) as services:
            app = app_factory(services)
            config = hypercorn_config(settings, listener.fileno(), grace_period)
            public_socket = socket.socket(fileno=listener.detach())  # serve_public's now
            sender = make_sender(settings)

            async def shutdown_trigger() -> None:
                await shutdown.wait()
                log.info("shutting down: no new connections; %g s for calls to finish",
                         grace_period)
                services.feed.end_streams()  # live streams would hold the grace period

            async with trio.open_nursery() as nursery:

                async def serve_then_stop(
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    await serve_public(
                        app, config, public_socket, raw_routes(app),
                        max_message_bytes=settings.max_message_bytes,
                        shutdown_trigger=shutdown_trigger, task_status=task_status,
                    )
                    nursery.cancel_scope.cancel()  # web server done: stop the workers too

                await nursery.start(run_sms_worker, services.store, sender)
                nursery.start_soon(expire_ready_orders, services)
                await nursery.start(keep_retention, services)
                binds: list[str] = await nursery.start(serve_then_stop)
                task_status.started(ShopStarted(base_url=binds[0], services=services))
    finally:
        if listener.fileno() != -1:
            listener.close()


def print_banner(settings: Settings, secrets: Secrets, base_url: str, workers: int = 1) -> None:
    public = settings.public_url
    processes = f" ({workers} worker processes)" if workers > 1 else ""
    lines = [
        f"BobaRista is open on {base_url}{processes}",
        f"  TV board:         {public}/orders",
        f"  barista console:  {public}/barista",
        f"  Twilio webhook:   {public}/voice  (stream {settings.stream_url})",
    ]
    if secrets.password_file is None:
        lines.append("  staff password:   from BOBA_STAFF_PASSWORD")
    else:
        lines.append(f"  staff password:   in {secrets.password_file}")
        if secrets.password_created:
            lines.append(f"  (first start: the staff password is {secrets.staff_password})")
    if not settings.twilio_signatures_checked:
        if settings.validate_twilio:
            lines.append("  note: no TWILIO_AUTH_TOKEN: Twilio signatures are NOT checked "
                         "(allowed only because both the bind address and BOBA_PUBLIC_URL "
                         "are loopback)")
        else:
            lines.append("  note: BOBA_VALIDATE_TWILIO=false: Twilio signatures are NOT checked")
    if settings.agent_url == "local":
        lines.append("  agent: the built-in local agent (no DEEPGRAM_API_KEY)")
    print("\n".join(lines), flush=True)


async def _watch_signals(
    signals: AsyncIterator[int], shutdown: trio.Event, hard_stop: trio.CancelScope
) -> None:
    async for signum in signals:
        if not shutdown.is_set():
            log.info("%s received: shutting down gracefully", signal.Signals(signum).name)
            shutdown.set()
        else:
            log.warning("second signal: stopping now")
            hard_stop.cancel()


async def _check_think_model(settings: Settings) -> None:
    from boba_runtime.call.agent_link import ThinkModelUnavailable, check_think_model

    try:
        warning = await check_think_model(
            agent_url=settings.agent_url,
            api_key=settings.deepgram_api_key,
            provider=settings.think_provider,
            model=settings.think_model,
        )
    except ThinkModelUnavailable as error:
        text = str(error)
        raise SettingsError("BOBA_THINK_MODEL", text.removeprefix("BOBA_THINK_MODEL: ")) from None
    if warning:
        log.warning("%s", warning)


async def _watch_parent(parent_pid: int, shutdown: trio.Event) -> None:
    """A worker whose supervisor died (even by SIGKILL) shuts down instead of lingering."""
    while os.getppid() == parent_pid:
        await trio.sleep(1.0)
    log.warning("the supervising process is gone: shutting down")
    shutdown.set()


async def _serve_main(
    settings: Settings,
    secrets: Secrets,
    menu: Menu,
    *,
    app_factory: AppFactory,
    listener: socket.socket | None = None,
    parent_pid: int | None = None,
    ready_fd: int | None = None,
) -> None:
    """One process serving; with `parent_pid` it is a worker of `--workers N`, which
    writes `READY` to `ready_fd` once it accepts connections (its signal handler is in
    place by then, so the supervisor's SIGTERM always meets a graceful shutdown)."""
    if parent_pid is None:
        await _check_think_model(settings)  # the supervisor already did, for its workers
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, shutdown, nursery.cancel_scope)
            if parent_pid is not None:
                nursery.start_soon(_watch_parent, parent_pid, shutdown)

            async def shop_then_stop(
                task_status: trio.TaskStatus[ShopStarted] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                await run_shop(
                    settings, app_factory=app_factory, shutdown=shutdown, secrets=secrets,
                    menu=menu, listener=listener, task_status=task_status,
                )
                nursery.cancel_scope.cancel()  # drained: stop watching signals

            started = await nursery.start(shop_then_stop)
            # Every call and event stream holds a descriptor. Raised once the start can no
            # longer fail, so a refused start prints its one line and nothing else.
            raise_open_files_limit()
            if parent_pid is None:
                print_banner(started.services.settings, secrets, started.base_url)
            else:
                log.info("worker %d is serving", os.getpid())
                if ready_fd is not None:
                    _report_ready(ready_fd)
    log.info("stopped cleanly")


async def _supervise(settings: Settings, secrets: Secrets) -> int:
    """`--workers N`: N worker processes accept on one shared socket; we forward signals.

    Workers run in their own session, so a terminal's Ctrl-C reaches only us and each
    worker gets exactly one SIGTERM (a second signal to us is forwarded as the "stop
    now"). A worker that exits on its own stops the others: no silent half-capacity.
    """
    exit_codes: dict[int, int] = {}
    processes: list[trio.Process] = []
    ready: set[int] = set()  # pids of the workers that accept connections
    shutdown = trio.Event()

    def signal_workers() -> None:
        # Only ready workers: one still starting has no handler yet and would die of the
        # signal (-15), taking the shared accept queue with it. It is signalled the moment
        # it reports ready (watch_ready below).
        for process in processes:
            if process.returncode is None and process.pid in ready:
                process.send_signal(signal.SIGTERM)

    async def forward(signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            log.info("%s received: stopping the workers", signal.Signals(signum).name)
            shutdown.set()
            signal_workers()

    async def reap(process: trio.Process) -> None:
        code = await process.wait()
        exit_codes[process.pid] = code
        _mark_worker_dead(process.pid)
        if not shutdown.is_set():
            log.error("worker %d exited (%s): stopping the others", process.pid, code)
            shutdown.set()
            signal_workers()

    async def watch_ready(process: trio.Process, read_fd: int, all_ready: trio.Event) -> None:
        if not await _wait_ready(read_fd):
            return  # it exited before accepting: reap() reports that
        ready.add(process.pid)
        if shutdown.is_set() and process.returncode is None:
            process.send_signal(signal.SIGTERM)  # asked to stop while it was starting
        if len(ready) == settings.workers:
            all_ready.set()

    # The signal receiver is in place before the port is bound: a SIGTERM that comes
    # earlier kills a process that had no connection to lose.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward, signals)
            await _check_think_model(settings)
            listener = bind_listener(settings)
            settings = settings.with_port(listener.getsockname()[1])
            from boba_runtime.metrics import prepare_multiprocess_dir

            if shutdown.is_set():  # stopped while checking: nobody connected yet
                listener.close()
                nursery.cancel_scope.cancel()
                return 0
            prepare_multiprocess_dir(settings.data_path)
            command = [
                sys.executable, "-m", "boba_runtime.cli", "serve",
                "--host", settings.host, "--port", str(settings.port),
                "--listen-fd", str(listener.fileno()), "--parent-pid", str(os.getpid()),
            ]
            async with trio.open_nursery() as workers:
                all_ready = trio.Event()
                for _ in range(settings.workers):
                    if shutdown.is_set():
                        break  # stopped during start-up: no more workers
                    read_fd, write_fd = os.pipe()
                    try:
                        process = await trio.lowlevel.open_process(
                            [*command, "--ready-fd", str(write_fd)],
                            pass_fds=(listener.fileno(), write_fd), start_new_session=True,
                        )
                    except BaseException:
                        os.close(read_fd)
                        listener.close()
                        raise
                    finally:
                        os.close(write_fd)  # the worker's copy is the only one now
                    processes.append(process)
                    workers.start_soon(reap, process)
                    workers.start_soon(watch_ready, process, read_fd, all_ready)
                listener.close()  # the workers hold it now

                async def banner_when_accepting() -> None:
                    await all_ready.wait()
                    if shutdown.is_set():
                        return
                    base_url = f"{'https' if settings.tls_enabled else 'http'}://" + (
                        f"{settings.host}:{settings.port}"
                    )
                    print_banner(settings, secrets, base_url, workers=settings.workers)

                banner = trio.CancelScope()

                async def banner_task() -> None:
                    with banner:
                        await banner_when_accepting()

                workers.start_soon(banner_task)
                # The banner task must not outlive the workers (none may become ready).
                async with trio.open_nursery() as wait_all:
                    for process in processes:
                        wait_all.start_soon(process.wait)
                banner.cancel()
            nursery.cancel_scope.cancel()
    codes = list(exit_codes.values())
    return 2 if 2 in codes else (0 if all(code == 0 for code in codes) else 1)


def _report_ready(ready_fd: int) -> None:
    try:
        os.write(ready_fd, READY)
    except OSError as error:  # the supervisor is gone; _watch_parent stops us
        log.warning("could not report readiness to the supervisor: %s", error)
    finally:
        os.close(ready_fd)


async def _wait_ready(read_fd: int) -> bool:
    """True once the worker at the other end of the pipe reports READY; False if it
    closed the pipe first (it exited before accepting)."""
    async with trio.lowlevel.FdStream(read_fd) as pipe:
        received = b""
        while not received.endswith(READY):
            chunk = await pipe.receive_some(64)
            if not chunk:
                return False
            received += chunk
    return True


def _mark_worker_dead(pid: int) -> None:
    from boba_runtime.metrics import mark_worker_dead

    mark_worker_dead(pid)


def _parse_flags(argv: list[str]) -> dict[str, str | None]:
    parser = argparse.ArgumentParser(
        prog="boba serve",
        description="Run the shop: web, calls, SMS and the store. Settings come from flags, "
        "the environment and .env (see docs/serve.md).",
    )
    parser.add_argument("--host", help="bind address (BOBA_HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="bind port (BOBA_PORT, default 8000)")
    parser.add_argument("--workers", help="worker processes sharing the port (default 1)")
    # internal: how a supervisor starts its workers
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    flags: dict[str, str | None] = {
        "BOBA_HOST": args.host, "BOBA_PORT": args.port, "BOBA_WORKERS": args.workers,
    }
    if args.listen_fd is not None:
        flags["BOBA_WORKERS"] = "1"
        flags[LISTEN_FD] = str(args.listen_fd)
        flags[PARENT_PID] = str(args.parent_pid or os.getppid())
        flags[READY_FD] = None if args.ready_fd is None else str(args.ready_fd)
    return flags


def _first_settings_error(group: BaseExceptionGroup[BaseException]) -> SettingsError | None:
    matched = group.subgroup(SettingsError)
    while isinstance(matched, BaseExceptionGroup):
        matched = matched.exceptions[0]  # type: ignore[assignment]
    return matched


def main(
    argv: list[str], environ: Mapping[str, str] | None = None, *, app_factory: AppFactory
) -> int:
    """`boba serve`, serving the app `app_factory` builds (see the module docstring)."""
    try:
        flags = _parse_flags(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(flags, os.environ if environ is None else environ, ".env")
        configure_logging(settings.log_format, settings.log_level)
        menu = load_menu(settings)  # checks without side effects first, then files
        secrets = load_secrets(settings)
        if settings.record_dir is not None:
            try:
                os.makedirs(settings.record_dir, mode=0o700, exist_ok=True)
            except OSError as error:
                raise SettingsError("BOBA_RECORD_DIR", f"cannot create it: {error}") from None
        listen_fd = flags.get(LISTEN_FD)
        if listen_fd is not None:  # a worker of `--workers N`
            listener = socket.socket(fileno=int(listen_fd))
            settings = settings.with_port(listener.getsockname()[1])
            ready_fd = flags.get(READY_FD)
            trio.run(partial(_serve_main, settings, secrets, menu, app_factory=app_factory,
                             listener=listener, parent_pid=int(flags[PARENT_PID] or 0),
                             ready_fd=None if ready_fd is None else int(ready_fd)))
        elif settings.workers > 1:
            return trio.run(_supervise, settings, secrets)
        else:
            trio.run(partial(_serve_main, settings, secrets, menu, app_factory=app_factory))
    except SettingsError as error:
        print(f"boba serve: {error}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        first = _first_settings_error(group)
        if first is None:
            raise
        print(f"boba serve: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
