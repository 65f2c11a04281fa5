"""The order store: SQLite or PostgreSQL with a transactional outbox (DESIGN §3, CONTRACT
§4, §7, §8).

One transaction writes an order together with its "received" SMS outbox row and its
`order_created` event row, so the three exist together or not at all. Every blocking
database call runs in `trio.to_thread.run_sync`; the event loop never blocks on disk.

SQLite runs in WAL mode with `synchronous=FULL`, so a commit that returned survives power
loss, not only a killed process; a `CapacityLimiter(1)` guards the single connection.
Several processes may share one file (`boba serve --workers N`): every write runs in
`BEGIN IMMEDIATE` (one writer at a time across processes, `busy_timeout` to wait), ids
come from the database, and order numbers are chosen inside that write lock.

PostgreSQL takes several writers at once (instances, threads): a connection pool, no
global lock, the schema's unique index and conditional updates for what must not race,
event ids handed out at commit (`add_event_row`), LISTEN/NOTIFY to wake every instance
(`StoreListener`), the outbox claimed with `SKIP LOCKED` (`_Db.claim_due_sms`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import trio

from boba_proto import orders as rules
from boba_proto.model import Drink, Order, OrderDraft, OrderStatus
from boba_proto.shop import PrepTimes, wait_minutes
from boba_runtime.store.process_tags import new_process_tag, tagged_process_is_gone
from boba_runtime.store.records_schema import PG_CALL_RECORDS, SQLITE_CALL_RECORDS

log = logging.getLogger(__name__)

T = TypeVar("T")

ORDER_NUMBER_SPACE = 10_000
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's write lock
ACTIVE_SQL = "(" + ", ".join(f"'{value}'" for value in rules.ACTIVE_STATUS_VALUES) + ")"
"""`model.ACTIVE_STATUSES` as an SQL list (the values are fixed enum text, never input)."""


# --- errors ------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of every store error; the message is one readable sentence."""


class OrderNotFound(StoreError):
    """No order ever had that number (HTTP 404)."""


class OrderConflict(StoreError):
    """The transition is not allowed from the order's current status (HTTP 409)."""


class StoreUnavailable(StoreError):
    """The database does not answer (locked too long, unreadable, disk error): HTTP 503."""


class StoreConfigError(StoreError, ValueError):
    """`BOBA_DATABASE` names something this build cannot open: the operator's to fix."""


class OrderNumbersExhausted(StoreError):
    """All 10,000 four-digit numbers belong to active orders."""


# --- records -----------------------------------------------------------------------------


class StoredEvent(msgspec.Struct, frozen=True):
    """One row of the event table: what SSE sends as `id:` and `data:`."""

    id: int
    data: str


class OutboxMessage(msgspec.Struct, frozen=True):
    """One SMS waiting in the durable outbox (CONTRACT §8)."""

    id: int
    order_number: str
    kind: str  # "received" | "ready"
    to: str
    body: str
    attempts: int
    first_attempt_at: str | None


def outbox_message(row: Sequence[Any]) -> OutboxMessage:
    """An `OutboxMessage` from `id, order_number, kind, to_phone, body, attempts,
    first_attempt_at` (the column order of every outbox query)."""
    return OutboxMessage(
        id=int(row[0]),
        order_number=row[1],
        kind=row[2],
        to=row[3],
        body=row[4],
        attempts=int(row[5]),
        first_attempt_at=row[6],
    )


class SmsState(enum.Enum):
    """Outbox row states. `sending` = an attempt was recorded and its outcome is not."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    UNKNOWN = "unknown"
    # plus "failed:<code>", stored as text


_EVENT_ENCODER = msgspec.json.Encoder()
_DRINKS_DECODER = msgspec.json.Decoder(tuple[Drink, ...])


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """UTC ISO 8601 with `Z`, to the second: the shape CONTRACT §4 shows."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_precise_time(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and `Z`; fixed width, so text order = time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def sqlite_path_from_url(database_url: str) -> str:
    """`sqlite:///relative`, `sqlite:////absolute` (and `sqlite:///:memory:`) → a path."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix) or len(database_url) == len(prefix):
        raise StoreConfigError(
            "BOBA_DATABASE must look like sqlite:///relative/path, sqlite:////absolute/path "
            "or postgresql://user@host/dbname"
        )
    return database_url[len(prefix) :]


def redact_url(database_url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", database_url)


# --- schema ------------------------------------------------------------------------------

# Each migration is a list of statements applied in one transaction; append, never edit.
CHECKOUT_KEY_MIGRATION = (
    # A call's retried checkout commits once: the key of a committed checkout is taken.
    # NULL (orders not placed by a call) is never equal to another NULL, so many may have it.
    "ALTER TABLE orders ADD COLUMN checkout_key TEXT",
    "CREATE UNIQUE INDEX orders_checkout_key ON orders (checkout_key)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            order_number TEXT NOT NULL CHECK (length(order_number) = 4),
            status TEXT NOT NULL
                CHECK (status IN ('received', 'ready', 'picked_up', 'cancelled')),
            phone TEXT NOT NULL,
            items TEXT NOT NULL,
            total_cents INTEGER NOT NULL,
            call_sid TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            ready_at TEXT,
            finished_at TEXT
        )""",
        # The schema itself keeps a number unique among active orders.
        f"""CREATE UNIQUE INDEX orders_active_number ON orders (order_number)
            WHERE status IN {ACTIVE_SQL}""",
        "CREATE INDEX orders_number ON orders (order_number, id)",
        "CREATE INDEX orders_phone ON orders (phone, id)",
        "CREATE INDEX orders_status ON orders (status, id)",
        """CREATE TABLE sms_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            order_id INTEGER NOT NULL REFERENCES orders (id),
            kind TEXT NOT NULL CHECK (kind IN ('received', 'ready')),
            to_phone TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued',
            attempts INTEGER NOT NULL DEFAULT 0,
            first_attempt_at TEXT,
            last_attempt_at TEXT,
            next_attempt_at TEXT NOT NULL,
            provider_sid TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (order_id, kind)
        )""",
        "CREATE INDEX sms_outbox_due ON sms_outbox (state, next_attempt_at)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            data TEXT NOT NULL
        )""",
    ),
    # 2: marks that must hold across workers and instances: a stream token used once,
    # a staff session ended by logout (boba_runtime.security_marks).
    (
        """CREATE TABLE once_marks (
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            PRIMARY KEY (kind, key)
        )""",
        "CREATE INDEX once_marks_expiry ON once_marks (expires_at)",
    ),
    SQLITE_CALL_RECORDS,  # 3: call records and transcripts (CONTRACT §13)
    (  # 4: CONTRACT §12: the name on the cup, the wait told, sold-out items, the pause switch
        "ALTER TABLE orders ADD COLUMN name TEXT",
        "ALTER TABLE orders ADD COLUMN ready_in_minutes INTEGER",
        """CREATE TABLE menu_availability (
            kind TEXT NOT NULL CHECK (kind IN ('flavors', 'toppings', 'addons')),
            name TEXT NOT NULL,
            available INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (kind, name)
        )""",
        """CREATE TABLE shop_settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ),
    (  # 5: several instances on one database: who claimed an SMS; how calls ended
        "ALTER TABLE sms_outbox ADD COLUMN claimed_by TEXT",
        "ALTER TABLE sms_outbox ADD COLUMN claimed_at TEXT",
        """CREATE TABLE call_outcomes (
            call_sid TEXT PRIMARY KEY,
            outcome TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX call_outcomes_expiry ON call_outcomes (expires_at)",
    ),
    CHECKOUT_KEY_MIGRATION,  # 6
)

# PostgreSQL: the same tables. Times are text in the "C" collation so that text order is
# time order whatever the server's locale.
PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE orders (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            order_number TEXT NOT NULL CHECK (length(order_number) = 4),
            status TEXT NOT NULL
                CHECK (status IN ('received', 'ready', 'picked_up', 'cancelled')),
            phone TEXT NOT NULL,
            items TEXT NOT NULL,
            total_cents INTEGER NOT NULL,
            call_sid TEXT NOT NULL DEFAULT '',
            created_at TEXT COLLATE "C" NOT NULL,
            ready_at TEXT COLLATE "C",
            finished_at TEXT COLLATE "C"
        )""",
        f"""CREATE UNIQUE INDEX orders_active_number ON orders (order_number)
            WHERE status IN {ACTIVE_SQL}""",
        "CREATE INDEX orders_number ON orders (order_number, id)",
        "CREATE INDEX orders_phone ON orders (phone, id)",
        "CREATE INDEX orders_status ON orders (status, id)",
        """CREATE TABLE sms_outbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            order_id BIGINT NOT NULL REFERENCES orders (id),
            kind TEXT NOT NULL CHECK (kind IN ('received', 'ready')),
            to_phone TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued',
            attempts INTEGER NOT NULL DEFAULT 0,
            first_attempt_at TEXT COLLATE "C",
            last_attempt_at TEXT COLLATE "C",
            next_attempt_at TEXT COLLATE "C" NOT NULL,
            provider_sid TEXT,
            created_at TEXT COLLATE "C" NOT NULL,
            UNIQUE (order_id, kind)
        )""",
        "CREATE INDEX sms_outbox_due ON sms_outbox (state, next_attempt_at)",
        """CREATE TABLE events (
            id BIGINT PRIMARY KEY,
            created_at TEXT COLLATE "C" NOT NULL,
            data TEXT NOT NULL
        )""",
    ),
    (
        """CREATE TABLE once_marks (
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            expires_at TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (kind, key)
        )""",
        "CREATE INDEX once_marks_expiry ON once_marks (expires_at)",
    ),
    PG_CALL_RECORDS,  # 3: as for SQLite
    (  # 4: CONTRACT §12, as for SQLite
        "ALTER TABLE orders ADD COLUMN name TEXT",
        "ALTER TABLE orders ADD COLUMN ready_in_minutes INTEGER",
        """CREATE TABLE menu_availability (
            kind TEXT NOT NULL CHECK (kind IN ('flavors', 'toppings', 'addons')),
            name TEXT NOT NULL,
            available INTEGER NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (kind, name)
        )""",
        """CREATE TABLE shop_settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL
        )""",
    ),
    (  # 5: as for SQLite
        "ALTER TABLE sms_outbox ADD COLUMN claimed_by TEXT",
        'ALTER TABLE sms_outbox ADD COLUMN claimed_at TEXT COLLATE "C"',
        """CREATE TABLE call_outcomes (
            call_sid TEXT PRIMARY KEY,
            outcome TEXT NOT NULL,
            expires_at TEXT COLLATE "C" NOT NULL
        )""",
        "CREATE INDEX call_outcomes_expiry ON call_outcomes (expires_at)",
    ),
    CHECKOUT_KEY_MIGRATION,  # 6
)

ORDER_COLUMNS = """o.id, o.order_number, o.status, o.phone, o.items, o.total_cents,
    o.call_sid, o.created_at, o.ready_at,
    (SELECT state FROM sms_outbox WHERE order_id = o.id AND kind = 'received'),
    (SELECT state FROM sms_outbox WHERE order_id = o.id AND kind = 'ready'),
    o.name, o.ready_in_minutes"""


def _public_sms_state(state: str | None) -> str | None:
    """An attempt in flight is still `queued` to the outside (CONTRACT §4 values)."""
    if state == SmsState.SENDING.value:
        return SmsState.QUEUED.value
    return state


def _row_to_order(row: Sequence[Any]) -> Order:
    return Order(
        order_number=row[1],
        status=OrderStatus(row[2]),
        phone=row[3],
        items=_DRINKS_DECODER.decode(row[4]),
        total_cents=row[5],
        call_sid=row[6],
        created_at=row[7],
        ready_at=row[8],
        sms_received=_public_sms_state(row[9]),
        sms_ready=_public_sms_state(row[10]),
        name=row[11],
        ready_in_minutes=row[12],
    )


# --- the synchronous core, run in a worker thread ----------------------------------------


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class _Conn(Protocol):
    """What `_Db` needs from a connection; SQL is written with `?` placeholders."""

    migrations: tuple[tuple[str, ...], ...]
    dialect: str  # "sqlite" | "postgresql": for the few queries that differ
    unavailable_errors: tuple[type[BaseException], ...]  # → StoreUnavailable
    integrity_errors: tuple[type[BaseException], ...]  # our bug: surfaces as it is
    max_concurrency: int  # store operations that may run at once (threads)
    skip_locked: str  # appended to an outbox claim's SELECT ("" where writers queue anyway)
    ambiguous_errors: tuple[type[BaseException], ...]  # a COMMIT that may have landed

    def session(self) -> contextlib.AbstractContextManager[None]: ...

    def migrating(self) -> contextlib.AbstractContextManager[None]: ...

    def lock_event_ids(self) -> None: ...

    def notify_change(self) -> None: ...

    def is_unique_violation(self, exc: BaseException, constraint: str) -> bool: ...

    def execute(self, sql: str, params: Sequence[object] = ()) -> _Cursor: ...

    def insert_id(self, sql: str, params: Sequence[object]) -> int: ...

    def begin_write(self) -> None: ...

    def commit(self) -> None: ...

    def rollback_if_open(self) -> None: ...

    def transaction_id(self) -> str | None: ...

    def fresh_session(self) -> contextlib.AbstractContextManager[None]: ...

    def transaction_status(self, xid: str) -> str | None: ...

    def ensure_open(self) -> None: ...

    def close(self) -> None: ...


def _create_private_file(path: Path) -> None:
    """Create the database file mode 600 (its folder 700) before SQLite opens it.

    It holds phone numbers (CONTRACT §2). SQLite gives its `-wal` and `-shm` files the
    database file's own mode, so they are private too. An existing file is left as it is.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


class _SqliteConn:
    """SQLite: WAL, `synchronous=FULL`, writers serialised by `BEGIN IMMEDIATE`."""

    migrations = MIGRATIONS
    dialect = "sqlite"
    unavailable_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    max_concurrency = 1  # one connection, used by one thread at a time
    skip_locked = ""  # BEGIN IMMEDIATE: one writer at a time, nothing to skip
    # A failed COMMIT on the one local connection leaves the transaction open and is
    # rolled back: its outcome is known, never ambiguous.
    ambiguous_errors: tuple[type[BaseException], ...] = ()

    def _switch_to_wal(self, busy_timeout: float) -> str:
        """`PRAGMA journal_mode = WAL`, retried: on a new file it needs a lock SQLite does
        not wait for (no busy handler), so two workers opening one fresh store at once saw
        "database is locked" at start (test_sigterm_during_worker_start_up_is_a_clean_stop)."""
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                return str(self.raw.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def __init__(self, path: str, busy_timeout: float) -> None:
        if path != ":memory:":
            _create_private_file(Path(path))
        self.raw = sqlite3.connect(
            path,
            timeout=busy_timeout,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,  # used from trio's worker threads, one at a time
        )
        try:
            self.raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self._switch_to_wal(busy_timeout)
            if path != ":memory:" and str(mode).lower() != "wal":
                raise StoreUnavailable(f"could not switch the database to WAL mode ({mode})")
            self.raw.execute("PRAGMA synchronous = FULL")
            self.raw.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            self.raw.close()
            raise

    def execute(self, sql: str, params: Sequence[object] = ()) -> _Cursor:
        return self.raw.execute(sql, params)

    def insert_id(self, sql: str, params: Sequence[object]) -> int:
        row_id = self.raw.execute(sql, params).lastrowid
        assert row_id is not None
        return row_id

    def begin_write(self) -> None:
        self.raw.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback_if_open(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def session(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # one connection for everything

    def migrating(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # the migration's BEGIN IMMEDIATE is enough

    def lock_event_ids(self) -> None:
        pass  # BEGIN IMMEDIATE already made this the only writer

    def notify_change(self) -> None:
        pass  # other processes on the file poll it

    def is_unique_violation(self, exc: BaseException, constraint: str) -> bool:
        return False  # numbers are chosen inside the write lock: no race to lose

    def transaction_id(self) -> str | None:
        return None  # nothing to settle later (`ambiguous_errors` is empty)

    def fresh_session(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def transaction_status(self, xid: str) -> str | None:
        return None

    def ensure_open(self) -> None:
        pass  # a file does not hang up

    def close(self) -> None:
        self.raw.close()


StoreConnection = _Conn
"""What `OrderStore.read` and `write` hand to their work function."""


PG_MIGRATE_LOCK = 0x626F626D  # "bobm": one migrating instance at a time (session lock)
PG_EVENT_LOCK = 0x626F6261  # "boba": event ids handed out in commit order (xact lock)
# The event lock keeps the key of the old whole-transaction write lock, so an instance of
# the previous version still running during a rolling upgrade hands out event ids in
# turn with the new ones instead of colliding with them.
PG_NOTIFY_CHANNEL = "boba_events"
DEFAULT_POOL_SIZE = 8  # connections per process; worker threads wait for a free one


class _PostgresConn:
    """PostgreSQL through sync psycopg (its async API is asyncio-only) and a connection pool.

    Several writers run at once, in several threads and instances: nothing takes a global
    lock. Each store operation checks a connection out of the pool (`session`) and binds it
    to its worker thread, so the `_Conn` methods need no connection argument. The pool
    checks a connection before handing it out and replaces a dead one, so after the server
    restarts or kills our backends the operation in flight fails (`StoreUnavailable`) and
    the next ones work again, without restarting BobaRista.
    """

    migrations = PG_MIGRATIONS
    dialect = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"  # an outbox row another instance claims is skipped

    def __init__(
        self, url: str, busy_timeout: float, *, name: str = "", pool_size: int = DEFAULT_POOL_SIZE
    ) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise StoreConfigError(
                "BOBA_DATABASE is a PostgreSQL URL but psycopg or psycopg-pool is not "
                "installed (pip install 'psycopg[binary]' psycopg-pool)"
            ) from exc
        self._psycopg = psycopg
        self.url = url
        self.connect_timeout = max(1, math.ceil(busy_timeout))
        self._busy_timeout = busy_timeout
        self.unavailable_errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self.integrity_errors: tuple[type[BaseException], ...] = (psycopg.IntegrityError,)
        # The connection lost (backend terminated, server gone) during COMMIT: the commit
        # may be durable although the client got the error (`_Db._settle_commit`).
        self.ambiguous_errors: tuple[type[BaseException], ...] = (psycopg.OperationalError,)
        self.max_concurrency = pool_size
        self._local = threading.local()
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "autocommit": True,  # we issue BEGIN / COMMIT ourselves
                "connect_timeout": self.connect_timeout,
                "application_name": f"boba {name}"[:63],
            },
            configure=self._configure,
            timeout=busy_timeout,  # waiting for a free connection → StoreUnavailable
            reconnect_timeout=5.0,  # per attempt series; the pool grows again when asked
            open=False,
            name="boba-store",
        )
        # One plain connection first: its error says what is wrong (no such database, bad
        # password, nobody listening), where the pool would only say it timed out.
        psycopg.connect(url, connect_timeout=self.connect_timeout).close()
        try:
            self.pool.open(wait=True, timeout=max(busy_timeout, float(self.connect_timeout)))
        except BaseException:
            self.pool.close(timeout=0)  # its threads would retry forever
            raise

    def _configure(self, raw: Any) -> None:
        raw.execute(f"SET lock_timeout = '{int(self._busy_timeout * 1000)}ms'")

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Bind one pooled connection to this thread for one store operation."""
        if getattr(self._local, "raw", None) is not None:
            yield  # nested (a store extension calling a store method): same connection
            return
        raw = self._live_connection()
        self._local.raw = raw
        try:
            yield
        finally:
            self._local.raw = None
            self.pool.putconn(raw)  # rolled back if a transaction is still open

    def _live_connection(self) -> Any:
        """A pooled connection that answers. A dead one (its backend killed, the server
        restarted) goes back to the pool, which replaces it, and the next is tried at
        once: the pool's own check would wait 1 s, 2 s, 4 s between dead connections."""
        for _ in range(self.max_concurrency):
            raw = self.pool.getconn()
            try:
                raw.execute("")  # one round trip, no statement
            except self._psycopg.Error:
                self.pool.putconn(raw)  # broken: closed and replaced
                continue
            return raw
        return self.pool.getconn()  # by now a fresh one, or PoolTimeout → StoreUnavailable

    @property
    def raw(self) -> Any:
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raise RuntimeError("a PostgreSQL store call outside `_Db.call` (no connection)")
        return raw

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")  # our SQL has no other "?" and no "%"

    def execute(self, sql: str, params: Sequence[object] = ()) -> _Cursor:
        cursor: _Cursor = self.raw.execute(self._sql(sql), params or None)
        return cursor

    def insert_id(self, sql: str, params: Sequence[object]) -> int:
        row = self.raw.execute(self._sql(sql) + " RETURNING id", params).fetchone()
        return int(row[0])

    def begin_write(self) -> None:
        self.raw.execute("BEGIN")

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback_if_open(self) -> None:
        idle = self._psycopg.pq.TransactionStatus.IDLE
        raw = self.raw
        if not raw.closed and not raw.broken and raw.info.transaction_status != idle:
            raw.execute("ROLLBACK")

    def lock_event_ids(self) -> None:
        """Hold the event-id lock until this transaction ends (see `_Db._add_event`)."""
        self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (PG_EVENT_LOCK,))

    def notify_change(self) -> None:
        """Wake every instance's listener when this transaction commits (and not before)."""
        self.raw.execute(f"SELECT pg_notify('{PG_NOTIFY_CHANNEL}', '')")

    def is_unique_violation(self, exc: BaseException, constraint: str) -> bool:
        unique = self._psycopg.errors.UniqueViolation
        return isinstance(exc, unique) and exc.diag.constraint_name == constraint

    def transaction_id(self) -> str | None:
        """This transaction's id (assigned now if it had none), to ask about it later."""
        return str(self.raw.execute("SELECT pg_current_xact_id()").fetchone()[0])

    @contextlib.contextmanager
    def fresh_session(self) -> Iterator[None]:
        """Bind another pooled connection to this thread for the block, in place of the
        one that broke; the broken one is bound again (and returned) afterwards."""
        old = getattr(self._local, "raw", None)
        raw = self._live_connection()
        self._local.raw = raw
        try:
            yield
        finally:
            self._local.raw = old
            self.pool.putconn(raw)

    def transaction_status(self, xid: str) -> str | None:
        """"committed", "aborted", "in progress" (PostgreSQL's own answer), or None when
        the server no longer knows."""
        row = self.raw.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def migrating(self) -> Iterator[None]:
        """One instance migrates at a time: instances started together on an empty
        database would otherwise race to create the same tables."""
        self.raw.execute("SELECT pg_advisory_lock(%s)", (PG_MIGRATE_LOCK,))
        try:
            yield
        finally:
            with contextlib.suppress(self._psycopg.Error):  # a dead session dropped it
                self.raw.execute("SELECT pg_advisory_unlock(%s)", (PG_MIGRATE_LOCK,))

    def ensure_open(self) -> None:
        pass  # the pool checks each connection as it hands it out

    def close(self) -> None:
        self.pool.close(timeout=5.0)


NUMBER_ATTEMPTS = 20
SETTLE_COMMIT_S = 2.0  # how long a lost commit's outcome is waited for before "try again"
"""Commits of one order that may lose its number to a concurrent commit (PostgreSQL)."""


class _Db:
    """The blocking half, run in worker threads: SQLite's one connection (one thread at a
    time, the store's limiter), or PostgreSQL's pool (one connection per operation)."""

    def __init__(self, conn: _Conn, rng: random.Random, instance_id: str = "") -> None:
        self._rng = rng
        self.conn = conn
        self.instance_id = instance_id or new_process_tag()
        try:
            with conn.session(), conn.migrating():
                self._migrate()
        except BaseException:
            conn.close()
            raise

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one store operation (in a worker thread) on a connection of its own."""
        with self.conn.session():
            self.conn.ensure_open()
            return fn(*args)

    def close(self) -> None:
        self.conn.close()

    def _write(self, work: Callable[[_Conn], T]) -> T:
        """Run `work` in one write transaction (one writer at a time): all or nothing."""
        conn = self.conn
        conn.begin_write()
        try:
            result = work(conn)
            conn.commit()
        except BaseException:
            conn.rollback_if_open()
            raise
        return result

    def _migrate(self) -> None:
        migrations = self.conn.migrations

        def apply(conn: _Conn) -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = conn.execute(
                "SELECT coalesce(max(version), 0) FROM schema_migrations"
            ).fetchone()[0]
            if current > len(migrations):
                raise StoreConfigError(
                    f"the database schema is version {current}, newer than this build "
                    f"knows ({len(migrations)}); upgrade BobaRista"
                )
            for version in range(current + 1, len(migrations) + 1):
                for statement in migrations[version - 1]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, format_time(utc_now())),
                )
                log.info("store: applied schema migration %d", version)

        self._write(apply)

    def schema_version(self) -> int:
        row = self.conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0])

    # -- orders --

    def _pick_number(self, conn: _Conn) -> str:
        """A random number not held by an active order; read inside the write lock."""
        used = {
            row[0]
            for row in conn.execute(f"SELECT order_number FROM orders WHERE status IN {ACTIVE_SQL}")
        }
        if len(used) >= ORDER_NUMBER_SPACE:
            raise OrderNumbersExhausted(
                "all 10,000 order numbers belong to active orders; "
                "mark some orders picked up or cancelled"
            )
        for _ in range(8):  # cheap while the shop is far from full
            candidate = f"{self._rng.randrange(ORDER_NUMBER_SPACE):04d}"
            if candidate not in used:
                return candidate
        free = [f"{n:04d}" for n in range(ORDER_NUMBER_SPACE) if f"{n:04d}" not in used]
        return self._rng.choice(free)

    @staticmethod
    def _add_event(conn: _Conn, now: str, event: rules.OrderEvent) -> None:
        add_event_row(conn, now, _EVENT_ENCODER.encode(event).decode())

    @staticmethod
    def _queue_sms(
        conn: _Conn,
        order_id: int,
        kind: rules.SmsKind,
        to: str,
        number: str,
        now: str,
        minutes: int | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO sms_outbox (order_id, kind, to_phone, body, next_attempt_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (order_id, kind.value, to, rules.sms_text(kind, number, minutes), now, now),
        )

    @staticmethod
    def _order_by_id(conn: _Conn, order_id: int) -> Order:
        row = conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = ?", (order_id,)
        ).fetchone()
        return _row_to_order(row)

    def commit_order(self, draft: OrderDraft, now: datetime) -> Order:
        """The new order; with a `checkout_key` already committed, that order instead
        (nothing new: no number, event or SMS)."""
        created = format_time(now)
        precise = format_precise_time(now)
        items = msgspec.json.encode(draft.items).decode()
        key = draft.checkout_key
        xid: list[str] = []  # the last attempt's transaction, to settle a lost COMMIT

        def work(conn: _Conn) -> Order:
            if key is not None:
                committed = self._order_by_key(conn, key)
                if committed is not None:
                    log.info("store: checkout %s was committed before: order %s",
                             key, committed.order_number)
                    return committed
                xid[:] = [tx] if (tx := conn.transaction_id()) is not None else []
            # No lock: on PostgreSQL a concurrent commit may take the same number first;
            # the partial unique index refuses the second and `_commit_numbered` retries.
            number = self._pick_number(conn)
            # CONTRACT §12: the wait counts the drinks of the received orders ahead, read
            # inside the write lock like the number.
            ahead = sum(drinks for _, drinks in received_drinks(conn))
            prep = PrepTimes(
                per_drink=draft.prep_minutes_per_drink, minimum=draft.prep_minutes_min
            )
            minutes = wait_minutes(prep, ahead)
            order_id = conn.insert_id(
                "INSERT INTO orders (order_number, status, phone, items, total_cents, "
                "call_sid, created_at, name, ready_in_minutes, checkout_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (number, OrderStatus.RECEIVED.value, draft.phone, items, draft.total_cents,
                 draft.call_sid, created, draft.name, minutes, key),
            )
            sms = rules.SMS_ON_ENTERING[OrderStatus.RECEIVED]
            self._queue_sms(conn, order_id, sms, draft.phone, number, precise, minutes)
            self._add_event(conn, precise, rules.order_created(number))  # last: see there
            return self._order_by_id(conn, order_id)

        try:
            return self._commit_numbered(work)
        except self.conn.ambiguous_errors as exc:
            if key is None or not xid:
                raise
            landed = self._settle_commit(xid[0], key, exc)
            if landed is None:
                raise
            log.warning("store: a commit whose connection was lost had landed: order %s",
                        landed.order_number)
            return landed

    @staticmethod
    def _order_by_key(conn: _Conn, key: str) -> Order | None:
        row = conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders o WHERE o.checkout_key = ?", (key,)
        ).fetchone()
        return None if row is None else _row_to_order(row)

    def _settle_commit(self, xid: str, key: str, lost: BaseException) -> Order | None:
        """After the connection was lost during a commit: the order if the commit landed,
        None if it did not or this cannot tell in `SETTLE_COMMIT_S` (the caller is told
        to try again, and the retry's key finds the order if it landed after all).

        Asked on another connection. PostgreSQL knows the transaction's fate; a commit
        may be marked done a moment before other sessions see its rows, hence the loop."""
        deadline = time.monotonic() + SETTLE_COMMIT_S
        try:
            with self.conn.fresh_session():
                while True:
                    status = self.conn.transaction_status(xid)
                    if status == "committed":
                        order = self._order_by_key(self.conn, key)
                        if order is not None:
                            return order
                    elif status != "in progress":
                        log.info("store: a commit whose connection was lost did not land (%s)",
                                 status)
                        return None  # rolled back (or forgotten): not placed
                    if time.monotonic() >= deadline:
                        log.warning("store: could not settle a lost commit (%s) in %g s",
                                    status, SETTLE_COMMIT_S)
                        return None
                    time.sleep(0.02)
        except self.conn.unavailable_errors as exc:
            log.warning("store: could not settle a lost commit (%s): %s", lost, exc)
            return None

    def _commit_numbered(self, work: Callable[[_Conn], T]) -> T:
        """`_write(work)`, again (with a fresh number) when a concurrent commit took the
        number first: the index `orders_active_number` keeps active numbers unique."""
        for attempt in range(1, NUMBER_ATTEMPTS + 1):
            try:
                return self._write(work)
            except Exception as exc:
                if self.conn.is_unique_violation(exc, "orders_checkout_key"):
                    continue  # the same checkout committed concurrently: `work` finds it
                if not self.conn.is_unique_violation(exc, "orders_active_number"):
                    raise
                log.info("store: order number taken by a concurrent commit (try %d)", attempt)
        raise StoreUnavailable(
            f"{NUMBER_ATTEMPTS} concurrent commits took the chosen order numbers first; "
            "try again"
        )

    @staticmethod
    def _find(conn: _Conn, number: str) -> tuple[int, Order] | None:
        """The active order with that number, else the most recent one that had it."""
        row = conn.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders o WHERE o.order_number = ? "
            f"ORDER BY (o.status IN {ACTIVE_SQL}) DESC, o.id DESC LIMIT 1",
            (number,),
        ).fetchone()
        return None if row is None else (int(row[0]), _row_to_order(row))

    def get_order(self, number: str) -> Order | None:
        found = self._find(self.conn, number)
        return None if found is None else found[1]

    def list_orders(self, statuses: Sequence[str] | None, limit: int) -> list[Order]:
        if statuses is None:
            rows = self.conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM orders o ORDER BY o.id DESC LIMIT ?", (limit,)
            )
        else:
            marks = ", ".join("?" for _ in statuses)
            rows = self.conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM orders o WHERE o.status IN ({marks}) "
                "ORDER BY o.id DESC LIMIT ?",
                (*statuses, limit),
            )
        return [_row_to_order(row) for row in rows]

    def orders_for_phones(
        self, phones: Sequence[str], number: str | None, limit: int
    ) -> list[Order]:
        if not phones:
            return []
        marks = ", ".join("?" for _ in phones)
        sql = f"SELECT {ORDER_COLUMNS} FROM orders o WHERE o.phone IN ({marks})"
        params: list[object] = list(phones)
        if number is not None:
            sql += " AND o.order_number = ?"
            params.append(number)
        sql += " ORDER BY o.id DESC LIMIT ?"
        params.append(limit)
        return [_row_to_order(row) for row in self.conn.execute(sql, params)]

    def transition(self, number: str, target: OrderStatus, now: datetime) -> tuple[Order, bool]:
        """Move the order to `target` if `orders.check_transition` allows it, in one
        transaction with the SMS the new status sends and its event."""
        stamp = format_time(now)
        precise = format_precise_time(now)

        def work(conn: _Conn) -> tuple[Order, bool]:
            # Conditional on the status read: a concurrent change (another instance's
            # staff tablet, the expiry) makes the UPDATE match nothing, and the order is
            # read and judged again, so both ask as if they had come one after the other.
            while True:
                found = self._find(conn, number)
                if found is None:
                    raise OrderNotFound(f"there is no order {number}")
                order_id, order = found
                verdict = rules.check_transition(order.status, target)
                if verdict is rules.Transition.ALREADY_DONE:
                    return order, False
                if verdict is rules.Transition.CONFLICT:
                    raise OrderConflict(rules.conflict_message(number, order.status, target))
                column = "ready_at" if target is OrderStatus.READY else "finished_at"
                changed = conn.execute(
                    f"UPDATE orders SET status = ?, {column} = ? WHERE id = ? AND status = ?",
                    (target.value, stamp, order_id, order.status.value),
                ).rowcount
                if changed == 1:
                    break
            sms = rules.SMS_ON_ENTERING.get(target)
            if sms is not None:
                self._queue_sms(conn, order_id, sms, order.phone, number, precise)
            self._add_event(conn, precise, rules.status_changed(number, target))
            return self._order_by_id(conn, order_id), True

        return self._write(work)

    def expire_ready(self, cutoff: datetime, now: datetime) -> list[Order]:
        stamp = format_time(now)
        precise = format_precise_time(now)

        def work(conn: _Conn) -> list[Order]:
            ids = [
                int(row[0])
                for row in conn.execute(
                    "SELECT id FROM orders WHERE status = ? AND ready_at <= ? ORDER BY id",
                    (OrderStatus.READY.value, format_time(cutoff)),
                )
            ]
            expired = []
            for order_id in ids:  # another instance's expiry may have taken some first
                changed = conn.execute(
                    "UPDATE orders SET status = ?, finished_at = ? WHERE id = ? AND status = ?",
                    (rules.EXPIRED_STATUS.value, stamp, order_id, OrderStatus.READY.value),
                ).rowcount
                if changed == 1:
                    expired.append(self._order_by_id(conn, order_id))
            for order in expired:  # the events last: they take the event-id lock
                self._add_event(
                    conn, precise, rules.status_changed(order.order_number, rules.EXPIRED_STATUS)
                )
            return expired

        return self._write(work)

    # -- events --

    def events_after(self, last_id: int, limit: int) -> list[StoredEvent]:
        rows = self.conn.execute(
            "SELECT id, data FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
        )
        return [StoredEvent(id=int(r[0]), data=r[1]) for r in rows]

    def last_event_id(self) -> int:
        row = self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        return int(row[0])

    # -- SMS outbox --

    def due_sms(self, now: datetime, limit: int) -> list[OutboxMessage]:
        rows = self.conn.execute(
            "SELECT m.id, o.order_number, m.kind, m.to_phone, m.body, m.attempts, "
            "m.first_attempt_at FROM sms_outbox m JOIN orders o ON o.id = m.order_id "
            "WHERE m.state = 'queued' AND m.next_attempt_at <= ? "
            "ORDER BY m.next_attempt_at, m.id LIMIT ?",
            (format_precise_time(now), limit),
        )
        return [outbox_message(r) for r in rows]

    def mark_sms_sending(self, message_id: int, now: datetime) -> bool:
        precise = format_precise_time(now)

        def work(conn: _Conn) -> bool:
            return self._claim_sms(conn, message_id, precise)

        return self._write(work)

    def _claim_sms(self, conn: _Conn, message_id: int, precise: str) -> bool:
        """queued → sending, the attempt counted and the claimer named; False if taken."""
        cursor = conn.execute(
            "UPDATE sms_outbox SET state = 'sending', attempts = attempts + 1, "
            "first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ?, "
            "claimed_by = ?, claimed_at = ? WHERE id = ? AND state = 'queued'",
            (precise, precise, self.instance_id, precise, message_id),
        )
        return cursor.rowcount == 1

    def claim_due_sms(self, now: datetime, limit: int) -> list[OutboxMessage]:
        """Claim up to `limit` due messages for this instance, in one transaction.

        PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two instances' workers claiming at the
        same moment take different rows instead of queueing on the same ones (and the
        loser of a row never sends it: the claim is conditional on `queued`).
        """
        precise = format_precise_time(now)
        due = "FROM sms_outbox WHERE state = 'queued' AND next_attempt_at <= ?"
        if self.conn.execute(f"SELECT 1 {due} LIMIT 1", (precise,)).fetchone() is None:
            return []  # the usual poll: nothing due, so no write transaction (no lock)

        def work(conn: _Conn) -> list[OutboxMessage]:
            ids = [
                int(row[0])
                for row in conn.execute(
                    f"SELECT id {due} ORDER BY next_attempt_at, id LIMIT ?" + conn.skip_locked,
                    (precise, limit),
                )
            ]
            claimed = [i for i in ids if self._claim_sms(conn, i, precise)]
            return [self._outbox_message(conn, i) for i in claimed]

        return self._write(work)

    @staticmethod
    def _outbox_message(conn: _Conn, message_id: int) -> OutboxMessage:
        """The message as it was before this attempt was counted (what `due_sms` shows)."""
        r = conn.execute(
            "SELECT m.id, o.order_number, m.kind, m.to_phone, m.body, m.attempts - 1, "
            "CASE WHEN m.attempts = 1 THEN NULL ELSE m.first_attempt_at END "
            "FROM sms_outbox m JOIN orders o ON o.id = m.order_id WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        return outbox_message(r)

    def mark_sms_result(
        self,
        message_id: int,
        result: str,
        retry_at: datetime | None,
        provider_sid: str | None,
    ) -> bool:
        def work(conn: _Conn) -> bool:
            if result == SmsState.QUEUED.value:
                assert retry_at is not None
                cursor = conn.execute(
                    "UPDATE sms_outbox SET state = 'queued', next_attempt_at = ? "
                    "WHERE id = ? AND state = 'sending'",
                    (format_precise_time(retry_at), message_id),
                )
            else:
                cursor = conn.execute(
                    "UPDATE sms_outbox SET state = ?, provider_sid = coalesce(?, provider_sid) "
                    "WHERE id = ? AND state = 'sending'",
                    (result, provider_sid, message_id),
                )
            return cursor.rowcount == 1

        return self._write(work)

    def mark_stale_sending_unknown(self, cutoff: datetime, exclude: frozenset[int]) -> list[int]:
        """Claims older than `cutoff`, and claims of an instance on this host that is gone."""
        stale = format_precise_time(cutoff)

        def work(conn: _Conn) -> list[int]:
            ids = [
                int(message_id)
                for message_id, claimed_at, claimed_by in conn.execute(
                    "SELECT id, coalesce(claimed_at, last_attempt_at), claimed_by "
                    "FROM sms_outbox WHERE state = 'sending'"
                )
                if int(message_id) not in exclude
                and (
                    str(claimed_at) <= stale
                    or (claimed_by and instance_is_dead(str(claimed_by), self.instance_id))
                )
            ]
            for message_id in ids:
                conn.execute(
                    "UPDATE sms_outbox SET state = 'unknown' WHERE id = ? AND state = 'sending'",
                    (message_id,),
                )
            return ids

        return self._write(work)

    def sms_row(self, message_id: int) -> dict[str, object] | None:
        cursor = self.conn.execute("SELECT * FROM sms_outbox WHERE id = ?", (message_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}

    def count_orders_by_status(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM orders GROUP BY status")
        return {str(status): int(n) for status, n in rows}

    def count_sms_by_result(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        rows = self.conn.execute("SELECT kind, state, count(*) FROM sms_outbox GROUP BY 1, 2")
        for kind, state, n in rows:
            key = (str(kind), _public_sms_state(str(state)) or "")
            counts[key] = counts.get(key, 0) + int(n)
        return counts

    # -- marks that hold across workers (stream tokens used, sessions ended) --

    def claim_once(self, kind: str, key: str, expires_at: datetime, now: datetime) -> bool:
        """Insert the mark unless a live one exists; True when this call inserted it."""

        def work(conn: _Conn) -> bool:
            conn.execute("DELETE FROM once_marks WHERE expires_at <= ?", (format_time(now),))
            cursor = conn.execute(
                "INSERT INTO once_marks (kind, key, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, key) DO NOTHING",
                (kind, key, format_time(expires_at)),
            )
            return cursor.rowcount == 1

        return self._write(work)

    def has_mark(self, kind: str, key: str, now: datetime) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM once_marks WHERE kind = ? AND key = ? AND expires_at > ?",
            (kind, key, format_time(now)),
        ).fetchone()
        return row is not None

    # -- how calls ended, for `/voice/after` on whichever instance Twilio calls --

    def save_call_outcome(
        self, call_sid: str, outcome: str, expires_at: datetime, now: datetime
    ) -> None:
        def work(conn: _Conn) -> None:
            conn.execute("DELETE FROM call_outcomes WHERE expires_at <= ?", (format_time(now),))
            conn.execute(
                "INSERT INTO call_outcomes (call_sid, outcome, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (call_sid) DO UPDATE SET outcome = excluded.outcome, "
                "expires_at = excluded.expires_at",
                (call_sid, outcome, format_time(expires_at)),
            )

        self._write(work)

    def call_outcome(self, call_sid: str, now: datetime) -> str | None:
        row = self.conn.execute(
            "SELECT outcome FROM call_outcomes WHERE call_sid = ? AND expires_at > ?",
            (call_sid, format_time(now)),
        ).fetchone()
        return None if row is None else str(row[0])

    def ping(self) -> None:
        self.conn.execute("SELECT count(*) FROM schema_migrations").fetchone()


def add_event_row(conn: _Conn, now: str, data: str) -> None:
    """Append one event (SSE `id:` + `data:`); call it LAST in a write transaction.

    Readers tail the table with `id > last` (this process's feed, other instances' feeds,
    a browser replaying from `Last-Event-ID`), so an id must never become visible after a
    higher one. Ids from a sequence would: two writers take 7 and 8, the one with 8
    commits first, a reader moves past 8, and 7 is never read. Waiting for gaps to fill
    would not do either: a rolled-back transaction leaves a gap that never fills, and every
    event after it would wait out the timeout. So the id is handed out at commit time:
    the transaction takes the event-id lock (PostgreSQL: an advisory lock held until
    COMMIT; SQLite: its write lock already), then inserts max(id) + 1, then commits. Only
    this insert and the commit run under the lock; choosing numbers, the order, the SMS row
    and the status changes before it run concurrently. After the lock nothing but event
    rows may be written, so no transaction waits for a row while holding it. The NOTIFY
    goes out with the commit and wakes every instance's feed (`StoreListener`).
    """
    conn.lock_event_ids()
    conn.execute(
        "INSERT INTO events (id, created_at, data) "
        "SELECT coalesce(max(id), 0) + 1, ?, ? FROM events",
        (now, data),
    )
    conn.notify_change()


def instance_is_dead(instance: str, me: str) -> bool:
    """Whether an outbox claimer is certainly gone. In this very process (tests open
    several stores in one) we cannot know: the claim's age decides."""
    return tagged_process_is_gone(instance, me, same_pid_is_gone=False)


def received_drinks(conn: _Conn) -> list[tuple[str, int]]:
    """`(order_number, drinks)` of every `received` order, oldest first (the queue)."""
    rows = conn.execute(
        "SELECT order_number, items FROM orders WHERE status = ? ORDER BY id",
        (OrderStatus.RECEIVED.value,),
    )
    return [(str(r[0]), len(_DRINKS_DECODER.decode(r[1]))) for r in rows]


LIST_FILTERS: dict[str, tuple[str, ...] | None] = {
    "active": rules.ACTIVE_STATUS_VALUES,
    "all": None,
    **{s.value: (s.value,) for s in OrderStatus},
}


# --- the async face ----------------------------------------------------------------------


class StoreChanges:
    """This process's one "the store changed" signal: fired after every commit that adds
    event or outbox rows (an order, a status change, an expiry), so the event feed and the
    SMS worker act at once and nobody else has to remember to wake them.

    Take `next_change()` BEFORE reading the store, then wait on it: a commit between the
    read and the wait sets the event already taken, so it is never missed. On PostgreSQL
    other instances' commits fire it too (`StoreListener`); commits by other processes on
    one SQLite file do not, and the feed and the worker poll for those.
    """

    def __init__(self) -> None:
        self._next = trio.Event()

    def next_change(self) -> trio.Event:
        """Set by the next commit that adds events or outbox rows (after this call)."""
        return self._next

    def fire(self) -> None:
        fired, self._next = self._next, trio.Event()
        fired.set()



LISTEN_TIMEOUT = 0.5  # seconds between looks at the stop flag while listening
LISTEN_RETRY = 1.0  # seconds between reconnects; each failed try also fires `changes`


class StoreListener:
    """PostgreSQL `LISTEN boba_events` on one dedicated connection, in its own thread.

    Every commit that adds events or outbox rows, by any instance, sends a NOTIFY with its
    commit (`add_event_row`); this thread turns each into `StoreChanges.fire()` in the trio
    loop, so the feed and the SMS worker look at the table at once instead of polling it.
    While the connection is down it fires every `LISTEN_RETRY` seconds (a slow poll) and
    reconnects; after reconnecting it fires once, for what was committed meanwhile.
    """

    def __init__(
        self, conn: _PostgresConn, changes: StoreChanges, token: trio.lowlevel.TrioToken
    ) -> None:
        self._conn = conn
        self._changes = changes
        self._token = token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="boba-store-listen", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Blocking: ends the thread (within `LISTEN_TIMEOUT` s, or a connect timeout)."""
        self._stop.set()
        self._thread.join()

    def _fire(self) -> None:
        try:
            self._token.run_sync_soon(self._changes.fire)
        except trio.RunFinishedError:
            self._stop.set()  # the trio run ended without closing the store

    def _run(self) -> None:
        import psycopg

        down_logged = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conn.url,
                    autocommit=True,
                    connect_timeout=self._conn.connect_timeout,
                    application_name="boba listener",
                ) as raw:
                    raw.execute(f"LISTEN {PG_NOTIFY_CHANNEL}")
                    self.connected.set()
                    if down_logged:
                        log.warning("store: listening for other instances' commits again")
                        down_logged = False
                    self._fire()  # what was committed while we were not listening
                    while not self._stop.is_set():
                        for _ in raw.notifies(timeout=LISTEN_TIMEOUT):
                            self._fire()
            except psycopg.Error as exc:
                self.connected.clear()
                if not down_logged:
                    log.warning(
                        "store: cannot listen for other instances' commits (%s); "
                        "polling every %.0f s until reconnected",
                        redact_url(str(exc)).strip(),
                        LISTEN_RETRY,
                    )
                    down_logged = True
                self._fire()
                self._stop.wait(LISTEN_RETRY)
        self.connected.clear()


class OrderStore:
    """The order store the runtime and the web layer use; every method is trio-async."""

    def __init__(self, db: _Db, clock: Callable[[], datetime]) -> None:
        self._db = db
        self.clock = clock
        self._limiter = trio.CapacityLimiter(db.conn.max_concurrency)
        self._closed = False
        self.changes = StoreChanges()
        self._listener: StoreListener | None = None
        if isinstance(db.conn, _PostgresConn):
            token = trio.lowlevel.current_trio_token()
            self._listener = StoreListener(db.conn, self.changes, token)
            self._listener.start()

    @property
    def instance_id(self) -> str:
        """This store object's name in the outbox's `claimed_by` (`host:pid:random`)."""
        return self._db.instance_id

    @property
    def listening(self) -> bool:
        """PostgreSQL: the LISTEN connection is up (other instances' commits wake us)."""
        return self._listener is not None and self._listener.connected.is_set()

    @classmethod
    async def open(
        cls,
        database_url: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> OrderStore:
        """Open (creating if needed) and migrate the store at `database_url`.

        `rng` picks order numbers; tests pass a seeded `random.Random`. `busy_timeout`:
        how long a write waits for another process's write before `StoreUnavailable`.
        """
        chooser = rng if rng is not None else random.SystemRandom()
        instance_id = new_process_tag()
        connect: Callable[[], _Conn]
        if database_url.startswith(POSTGRES_SCHEMES):
            where = redact_url(database_url)

            def connect() -> _Conn:
                return _PostgresConn(database_url, busy_timeout, name=instance_id)
        else:
            where = path = sqlite_path_from_url(database_url)

            def connect() -> _Conn:
                return _SqliteConn(path, busy_timeout)

        def build() -> _Db:
            return _Db(connect(), chooser, instance_id)

        try:
            db = await trio.to_thread.run_sync(build)
        except StoreError:
            raise
        except Exception as exc:  # sqlite3 / psycopg / OS errors: the database is not there
            message = redact_url(str(exc))
            raise StoreUnavailable(f"cannot open the order database {where}: {message}") from exc
        return cls(db, clock)

    async def __aenter__(self) -> OrderStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._listener is not None:
                await trio.to_thread.run_sync(self._listener.stop)
            await trio.to_thread.run_sync(self._db.close)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailable("the order store is closed")
        conn = self._db.conn
        try:
            return await trio.to_thread.run_sync(self._db.call, fn, *args, limiter=self._limiter)
        except StoreError:
            raise
        except Exception as exc:
            if isinstance(exc, conn.integrity_errors):
                raise  # a bug in our SQL, not an outage: let it surface as one
            if isinstance(exc, conn.unavailable_errors):
                message = redact_url(str(exc))
                raise StoreUnavailable(f"the order database does not answer: {message}") from exc
            raise

    async def claim_once(self, kind: str, key: str, *, expires_at: datetime) -> bool:
        """Mark (kind, key) until `expires_at`, for every worker and instance sharing this
        store. True for the first claim; False while a live mark exists."""
        return await self._run(self._db.claim_once, kind, key, expires_at, self.clock())

    async def has_mark(self, kind: str, key: str) -> bool:
        """True while a mark made by `claim_once` is live."""
        return await self._run(self._db.has_mark, kind, key, self.clock())

    async def ping(self) -> None:
        await self._run(self._db.ping)

    async def save_call_outcome(self, call_sid: str, outcome: str, *, expires_at: datetime) -> None:
        """Remember how a call ended until `expires_at`, for `/voice/after` on any instance."""
        await self._run(self._db.save_call_outcome, call_sid, outcome, expires_at, self.clock())

    async def call_outcome(self, call_sid: str) -> str | None:
        """What `save_call_outcome` stored, or None (never saved, or expired)."""
        return await self._run(self._db.call_outcome, call_sid, self.clock())

    # -- for feature modules with their own tables (call records, reports, retention) --

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql": the SQL a feature module must speak."""
        return self._db.conn.dialect

    async def read(self, work: Callable[[StoreConnection], T]) -> T:
        """Run `work(connection)` in the store's worker thread (`?` placeholders)."""
        return await self._run(work, self._db.conn)

    async def write(self, work: Callable[[StoreConnection], T]) -> T:
        """Run `work(connection)` in one write transaction: all or nothing."""
        return await self._run(self._db._write, work)

    async def count_orders_by_status(self) -> dict[str, int]:
        """{status: number of orders ever}, for /metrics."""
        return await self._run(self._db.count_orders_by_status)

    async def count_sms_by_result(self) -> dict[tuple[str, str], int]:
        """{(kind, result): n} over the whole outbox ("sending" counts as "queued")."""
        return await self._run(self._db.count_sms_by_result)

    async def schema_version(self) -> int:
        return await self._run(self._db.schema_version)

    async def commit_order(self, draft: OrderDraft) -> Order:
        """Commit order + "received" SMS + `order_created` event in one transaction."""
        order = await self._run(self._db.commit_order, draft, self.clock())
        self.changes.fire()
        return order

    async def get_order(self, order_number: str) -> Order | None:
        return await self._run(self._db.get_order, order_number)

    async def list_orders(self, *, status: str = "active", limit: int = 50) -> list[Order]:
        if status not in LIST_FILTERS:
            raise ValueError(f"unknown order status filter {status!r}")
        return await self._run(self._db.list_orders, LIST_FILTERS[status], limit)

    async def mark_ready(self, order_number: str) -> tuple[Order, bool]:
        """received → ready with its SMS and event; (order, False) when already ready."""
        return await self._transition(order_number, OrderStatus.READY)

    async def mark_picked_up(self, order_number: str) -> Order:
        order, _ = await self._transition(order_number, OrderStatus.PICKED_UP)
        return order

    async def cancel(self, order_number: str) -> Order:
        order, _ = await self._transition(order_number, OrderStatus.CANCELLED)
        return order

    async def _transition(self, order_number: str, target: OrderStatus) -> tuple[Order, bool]:
        order, changed = await self._run(self._db.transition, order_number, target, self.clock())
        if changed:
            self.changes.fire()
        return order, changed

    async def orders_for_phones(
        self, phones: Sequence[str], *, order_number: str | None = None, limit: int = 10
    ) -> list[Order]:
        return await self._run(self._db.orders_for_phones, tuple(phones), order_number, limit)

    async def expire_ready(self, *, older_than: timedelta) -> list[Order]:
        """ready → picked_up for orders ready longer than `older_than` (with events)."""
        now = self.clock()
        expired = await self._run(self._db.expire_ready, now - older_than, now)
        if expired:
            self.changes.fire()
        return expired

    async def events_after(self, last_id: int, *, limit: int = 500) -> list[StoredEvent]:
        return await self._run(self._db.events_after, last_id, limit)

    async def last_event_id(self) -> int:
        return await self._run(self._db.last_event_id)

    # -- SMS outbox --

    async def due_sms(self, *, limit: int = 20) -> list[OutboxMessage]:
        return await self._run(self._db.due_sms, self.clock(), limit)

    async def claim_due_sms(self, *, limit: int = 20) -> list[OutboxMessage]:
        """Claim up to `limit` due messages for this instance (each as `mark_sms_sending`
        does); another instance's worker never gets the same ones."""
        return await self._run(self._db.claim_due_sms, self.clock(), limit)

    async def mark_sms_sending(self, message_id: int) -> bool:
        """Record an attempt BEFORE the request goes out; a claim across processes.

        Returns False when the message is no longer queued (another worker took it, or it
        was settled): the caller must then not send it.
        """
        return await self._run(self._db.mark_sms_sending, message_id, self.clock())

    async def mark_sms_result(
        self,
        message_id: int,
        result: str,
        *,
        retry_at: datetime | None = None,
        provider_sid: str | None = None,
    ) -> bool:
        """Settle an attempt: "sent" | "unknown" | "failed:<code>" | "queued" (+ retry_at).

        Only a message in state "sending" changes, so a "sent" message is never re-queued.
        """
        if result == SmsState.QUEUED.value and retry_at is None:
            raise ValueError("a retry needs retry_at")
        valid = result in {"sent", "unknown", "queued"} or (
            result.startswith("failed:") and len(result) > len("failed:")
        )
        if not valid:
            raise ValueError(f"unknown SMS result {result!r}")
        return await self._run(self._db.mark_sms_result, message_id, result, retry_at, provider_sid)

    async def mark_stale_sending_unknown(
        self, *, older_than: timedelta, exclude: Sequence[int] = ()
    ) -> list[int]:
        """Attempts left "sending" longer than `older_than` (a crash mid-send) → "unknown".

        The message may have gone out, so it is never re-sent blindly. `exclude`: ids this
        process is sending right now.
        """
        return await self._run(
            self._db.mark_stale_sending_unknown, self.clock() - older_than, frozenset(exclude)
        )

    async def sms_row(self, message_id: int) -> dict[str, object] | None:
        """The raw outbox row, for tests and diagnostics."""
        return await self._run(self._db.sms_row, message_id)

    async def run_in_db(self, work: Callable[[_Db], T]) -> T:
        """Run `work(db)` in the store's worker thread: for store extensions that keep
        their own tables (`boba_runtime.store.shop`), with the same errors as every method."""
        return await self._run(work, self._db)


async def run_ready_expiry(
    store: OrderStore,
    *,
    after: timedelta,
    interval: float = 30.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Until cancelled: ready orders older than `after` become picked up (CONTRACT §4,
    `BOBA_READY_EXPIRY_MINUTES`). Safe to run in every worker process: the update is a
    transaction, so an order expires once; the store's `changes` signal tells the event
    feed."""
    task_status.started()
    while True:
        try:
            expired = await store.expire_ready(older_than=after)
        except StoreError as exc:
            log.warning("store: ready-order expiry skipped (%s)", exc)
        else:
            for order in expired:
                log.info("order %s was ready too long; marked picked up", order.order_number)
        await trio.sleep(interval)
