"""`boba erase --phone NUMBER` (CONTRACT §1, §13): one person's data, everywhere it is kept.

Orders keep their drinks and totals (the shop's books and the report need them) but
lose the phone number; the SMS outbox loses it too; call records from that number, about
its orders, or whose transcript mentions it lose the caller and the whole transcript;
their recordings in `BOBA_RECORD_DIR` (and any other recording that mentions the number)
are deleted. Prints what was erased. Settings come from the environment and `.env`, like
`boba serve`. Exit 0 when done (also when nothing was kept), 1 when the store or the
recordings could not be reached, 2 on a bad number or bad settings.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from typing import TextIO

import trio

from boba_runtime.config.settings import Settings, SettingsError, load_settings
from boba_runtime.store.order_store import OrderStore, StoreConfigError, StoreError
from boba_runtime.store.records import ErasedPerson, delete_recordings_of, erase_phone

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
SEPARATORS = re.compile(r"[\s().-]")


def normalise_phone(text: str) -> str | None:
    """`+1 (415) 555-1234` → `+14155551234`; None when it is not an E.164 number."""
    number = SEPARATORS.sub("", text)
    return number if E164.match(number) else None


async def erase(settings: Settings, phone: str) -> tuple[ErasedPerson, tuple[str, ...]]:
    async with await OrderStore.open(settings.database) as store:
        person = await erase_phone(store, phone)
    recordings: tuple[str, ...] = ()
    if settings.record_dir:
        recordings = await trio.to_thread.run_sync(
            delete_recordings_of, settings.record_dir, person.call_sids, phone
        )
    return person, recordings


def report(phone: str, person: ErasedPerson, recordings: tuple[str, ...], out: TextIO) -> None:
    erased = person.erased
    if not (erased.orders or erased.sms or erased.calls or recordings):
        print(f"nothing is kept for {phone}", file=out)
        return
    print(f"erased {phone}:", file=out)
    numbers = ", ".join(person.order_numbers)
    listed = ": " + numbers if numbers else ""
    print(f"  orders: {erased.orders} (phone number and name removed{listed})", file=out)
    print(f"  SMS outbox: {erased.sms} (phone number removed)", file=out)
    sids = ", ".join(person.call_sids)
    print(f"  call records: {erased.calls} (caller and transcript removed, "
          f"{erased.transcript_lines} lines{': ' + sids if sids else ''})", file=out)
    print(f"  recordings: {len(recordings)} deleted", file=out)
    for path in recordings:
        print(f"    {path}", file=out)


def main(argv: list[str], environ: Mapping[str, str] | None = None,
         out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    parser = argparse.ArgumentParser(
        prog="boba erase",
        description="Erase one person's data everywhere it is kept (orders' phone, call "
        "records and transcripts, recordings). Settings from the environment and .env.",
    )
    parser.add_argument("--phone", required=True, help="the number, E.164 (+14155551234)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return 2 if exit_.code else 0
    phone = normalise_phone(args.phone)
    if phone is None:
        print(f"boba erase: {args.phone!r} is not a phone number in E.164 form "
              "(like +14155551234)", file=sys.stderr)
        return 2
    try:
        settings = load_settings({}, os.environ if environ is None else environ, ".env")
    except SettingsError as error:
        print(f"boba erase: {error}", file=sys.stderr)
        return 2
    try:
        person, recordings = trio.run(erase, settings, phone)
    except StoreConfigError as error:
        print(f"boba erase: BOBA_DATABASE: {error}", file=sys.stderr)
        return 2
    except StoreError as error:
        print(f"boba erase: nothing erased: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"boba erase: the store is erased, but recordings could not be: {error}",
              file=sys.stderr)
        return 1
    report(phone, person, recordings, out)
    return 0
