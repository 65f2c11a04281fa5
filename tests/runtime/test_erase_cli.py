"""`boba erase --phone` (CONTRACT §1, §13) on SQLite and PostgreSQL: one person's data
goes from orders (number and name on the cup), the SMS outbox, call records, transcripts
and recordings; everyone else's stays; it says what it erased."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from boba_proto.model import OrderDraft
from boba_runtime.call.records import CallRecordWriter, Line, LineKind, Outcome
from boba_runtime.cli import erase as erase_cli
from boba_runtime.store.order_store import OrderStore
from boba_runtime.store.records import get_call
from tests.helpers.stores import any_db_url  # noqa: F401
from tests.runtime.test_store import TARO
from tests.runtime.test_store_pg import pg_server  # noqa: F401

PERSON, OTHER = "+14155550101", "+14155550177"
FROM_PERSON, FOR_PERSON, PERSON_HUNG_UP, OTHERS = (
    "CA" + "1" * 32, "CA" + "2" * 32, "CA" + "3" * 32, "CA" + "4" * 32,
)


async def seed(url: str) -> dict[str, str]:
    async with await OrderStore.open(url, rng=random.Random(11)) as store:
        writer = CallRecordWriter(store)
        numbers = {}
        for sid, caller, phone, name in (
            (FROM_PERSON, PERSON, PERSON, "Mina"),  # the person's own call and order
            (FOR_PERSON, OTHER, PERSON, None),  # a friend ordered with the person's number
            (OTHERS, OTHER, OTHER, "Jo"),  # someone else entirely
        ):
            writer.open_call(sid, caller=caller)
            writer.add_line(sid, Line(seq=1, offset_ms=100, kind=LineKind.TEXT,
                                      role="assistant", content="Hey!"))
            writer.add_line(sid, Line(seq=2, offset_ms=900, kind=LineKind.FUNCTION,
                                      name="save_phone_number",
                                      arguments=f'{{"phone":"{phone}"}}', result="{}"))
            order = await store.commit_order(
                OrderDraft(phone=phone, items=(TARO,), total_cents=625, call_sid=sid,
                           name=name)
            )
            numbers[sid] = order.order_number
            writer.close_call(sid, outcome=Outcome.ORDERED, order_number=order.order_number)
        writer.open_call(PERSON_HUNG_UP, caller=PERSON)
        writer.add_line(PERSON_HUNG_UP, Line(seq=1, offset_ms=100, kind=LineKind.TEXT,
                                             role="user", content="hello?"))
        writer.close_call(PERSON_HUNG_UP, outcome=Outcome.CALLER_HUNG_UP)
        await writer.flush()
        return numbers


async def state(url: str) -> dict[str, object]:
    async with await OrderStore.open(url) as store:
        orders = {o.call_sid: (o.phone, o.name) for o in await store.list_orders(status="all")}
        calls = {}
        for sid in (FROM_PERSON, FOR_PERSON, PERSON_HUNG_UP, OTHERS):
            detail = await get_call(store, sid)
            assert detail is not None
            calls[sid] = (detail.call.caller, len(detail.transcript), detail.call.outcome)
        sms = await store.read(
            lambda conn: sorted(str(r[0]) for r in conn.execute("SELECT to_phone FROM sms_outbox"))
        )
        return {"orders": orders, "calls": calls, "sms": sms}


def test_erase_one_person_everywhere(any_db_url: str, tmp_path: Path) -> None:  # noqa: F811
    numbers = trio.run(seed, any_db_url)
    records = tmp_path / "recordings"
    records.mkdir()
    files = {
        name: records / name
        for name in (
            f"20261125T070511Z-{FROM_PERSON}.jsonl",
            f"20261125T080000Z-{PERSON_HUNG_UP}.jsonl",
            f"20261125T090000Z-{OTHERS}.jsonl",
            "20261125T100000Z-CA" + "5" * 32 + ".jsonl",  # not in the store, mentions them
        )
    }
    for path in files.values():
        path.write_text('{"header": {}}\n')
    files[f"20261125T100000Z-CA{'5' * 32}.jsonl"].write_text(f'{{"caller": "{PERSON}"}}\n')
    env = {"BOBA_DATABASE": any_db_url, "BOBA_RECORD_DIR": str(records)}

    out = io.StringIO()
    assert erase_cli.main(["--phone", "+1 (415) 555-0101"], env, out) == 0
    text = out.getvalue()
    assert text.startswith(f"erased {PERSON}:")
    both = f"{numbers[FROM_PERSON]}, {numbers[FOR_PERSON]}"
    assert f"orders: 2 (phone number and name removed: {both})" in text
    assert "SMS outbox: 2" in text
    assert f"call records: 3 (caller and transcript removed, 5 lines: {FROM_PERSON}, " in text
    assert "recordings: 3 deleted" in text

    after = trio.run(state, any_db_url)
    assert after["orders"] == {  # the name on the cup goes with the number (§12, §13)
        FROM_PERSON: ("", None), FOR_PERSON: ("", None), OTHERS: (OTHER, "Jo"),
    }
    assert after["calls"] == {
        FROM_PERSON: ("", 0, "ordered"),
        FOR_PERSON: ("", 0, "ordered"),  # its transcript held the person's number
        PERSON_HUNG_UP: ("", 0, "caller_hung_up"),
        OTHERS: (OTHER, 2, "ordered"),
    }
    assert after["sms"] == ["", "", OTHER]
    assert sorted(p.name for p in records.iterdir()) == [f"20261125T090000Z-{OTHERS}.jsonl"]

    again = io.StringIO()
    assert erase_cli.main(["--phone", PERSON], env, again) == 0
    assert again.getvalue() == f"nothing is kept for {PERSON}\n"


def test_bad_input_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"BOBA_DATABASE": f"sqlite:///{tmp_path}/boba.sqlite3"}
    assert erase_cli.main(["--phone", "555-0101"], env) == 2
    assert "E.164" in capsys.readouterr().err
    assert erase_cli.main([], env) == 2
    assert erase_cli.main(["--phone", PERSON], {"BOBA_DATABASE": "mysql://x"}) == 2
    assert "BOBA_DATABASE" in capsys.readouterr().err
    assert erase_cli.main(["--phone", PERSON], {"BOBA_RETENTION_DAYS": "0"}) == 2


def test_the_console_script(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/boba.sqlite3"
    trio.run(seed, url)
    done = subprocess.run(
        [sys.executable, "-m", "boba_runtime.cli", "erase", "--phone", PERSON],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "BOBA_DATABASE": url},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"erased {PERSON}:")
