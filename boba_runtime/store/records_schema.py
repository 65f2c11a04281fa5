"""Tables of call records and transcripts (CONTRACT §13), as one store migration.

Kept apart from `store.py` so the call-record feature owns its schema; `store.py` appends
these statements to its migration lists. Times are UTC text with microseconds
(`YYYY-MM-DDTHH:MM:SS.ffffffZ`, fixed width, so text order is time order); PostgreSQL
keeps them in the "C" collation for the same reason.

`calls`: one row per call, written when the call is admitted and updated when it ends.
While a call runs, `outcome` is NULL and `owner` names the process writing it, which
touches `seen_at` now and then; a call whose writer died is marked `unknown`.
`call_lines`: the transcript, one row per `ConversationText` line or function call.
"""

from __future__ import annotations

_CALL_COLUMNS = """
    call_sid TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    caller TEXT NOT NULL DEFAULT '',
    started_at {time} NOT NULL,
    ended_at {time},
    outcome TEXT CHECK (outcome IN ('ordered', 'no_order', 'transferred', 'agent_failed',
        'busy', 'closed', 'caller_hung_up', 'unknown')),
    order_number TEXT,
    greeted_ms INTEGER,
    ordered_ms INTEGER,
    lines_dropped INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '',
    seen_at {time} NOT NULL,
    erased_at {time}
"""

_LINE_COLUMNS = """
    call_sid TEXT NOT NULL REFERENCES calls (call_sid),
    seq INTEGER NOT NULL,
    offset_ms INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('text', 'function')),
    role TEXT NOT NULL DEFAULT '',
    content TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    arguments TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '',
    UNIQUE (call_sid, seq)
"""

_INDEXES = (
    "CREATE INDEX calls_started ON calls (started_at)",
    "CREATE INDEX calls_caller ON calls (caller)",
    "CREATE INDEX calls_open ON calls (outcome, owner)",
    "CREATE INDEX orders_created ON orders (created_at)",
    "CREATE INDEX orders_call ON orders (call_sid)",
)

SQLITE_CALL_RECORDS: tuple[str, ...] = (
    "CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    + _CALL_COLUMNS.format(time="TEXT")
    + ")",
    "CREATE TABLE call_lines (id INTEGER PRIMARY KEY AUTOINCREMENT," + _LINE_COLUMNS + ")",
    *_INDEXES,
)

PG_CALL_RECORDS: tuple[str, ...] = (
    "CREATE TABLE calls (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    + _CALL_COLUMNS.format(time='TEXT COLLATE "C"')
    + ")",
    "CREATE TABLE call_lines (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    + _LINE_COLUMNS
    + ")",
    *_INDEXES,
)
