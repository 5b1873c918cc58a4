"""``pbx-router appointments load|slots|book|list|cancel``: staff tools for the schedule.

Times typed or printed here are the clinic's wall-clock time (its zone comes from the loaded
clinic data). Patients are named by record number; the printout shows record numbers, never
names, phone numbers or dates of birth.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pbx_router.scheduling import PartOfDay, SchedulingError, Slot, SlotQuery, Source
from pbx_router.scheduling.data import import_clinic_data, load_clinic_file
from pbx_router.scheduling.service import SchedulingService
from pbx_router.store import Store, StoreError

DATABASE_URL_ENV = "PBX_ROUTER_DATABASE_URL"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "appointments", help="list, book and cancel appointments; load clinic data",
        description="Staff tools for the appointment schedule.",
    )
    parser.add_argument("--database-url", default=os.environ.get(DATABASE_URL_ENV) or None,
                        help=f"PostgreSQL DSN (default ${DATABASE_URL_ENV}; unset: the embedded server)")
    parser.add_argument("--data-dir", type=Path, default=Path("./var"), help="data directory (default ./var)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    load = sub.add_parser("load", help="load providers, hours, appointment types and patients (YAML + CSV)")
    load.add_argument("file", type=Path)
    load.set_defaults(handler=_load)

    slots = sub.add_parser("slots", help="the next free slots")
    slots.add_argument("--type", required=True, dest="type_id")
    slots.add_argument("--provider")
    slots.add_argument("--day", type=dt.date.fromisoformat, help="YYYY-MM-DD")
    slots.add_argument("--part", choices=[p.value for p in PartOfDay])
    slots.add_argument("--limit", type=int, default=5)
    slots.set_defaults(handler=_slots)

    book = sub.add_parser("book", help="book an appointment (staff: any free time)")
    book.add_argument("--patient", required=True, help="record number")
    book.add_argument("--type", required=True, dest="type_id")
    book.add_argument("--provider", required=True)
    book.add_argument("--at", required=True, type=dt.datetime.fromisoformat, help="local start, YYYY-MM-DDTHH:MM")
    book.set_defaults(handler=_book)

    listing = sub.add_parser("list", help="appointments on a day")
    listing.add_argument("--day", type=dt.date.fromisoformat, help="YYYY-MM-DD (default today)")
    listing.add_argument("--days", type=int, default=1)
    listing.add_argument("--provider")
    listing.set_defaults(handler=_list)

    cancel = sub.add_parser("cancel", help="cancel an appointment by id")
    cancel.add_argument("id", type=int)
    cancel.add_argument("--reason", default="cancelled by staff")
    cancel.set_defaults(handler=_cancel)
    parser.set_defaults(func=run)


Handler = Callable[[Store, SchedulingService, argparse.Namespace], Awaitable[int]]


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_with_store(args, args.handler))
    except (StoreError, SchedulingError, ValueError, OSError) as exc:
        print(f"pbx-router appointments: {exc}", file=sys.stderr)
        return 1


async def _with_store(args: argparse.Namespace, handler: Handler) -> int:
    store = await Store.open(args.database_url, args.data_dir, min_size=1, max_size=2)
    try:
        service = await SchedulingService.create(store.pool, min_notice=dt.timedelta(0))
        return await handler(store, service, args)
    finally:
        await store.close()


def _local(moment: dt.datetime, service: SchedulingService) -> str:
    return moment.astimezone(service.tz).strftime("%a %Y-%m-%d %H:%M")


async def _load(store: Store, service: SchedulingService, args: argparse.Namespace) -> int:
    data = await asyncio.to_thread(load_clinic_file, args.file)
    counts = await import_clinic_data(store.pool, data)
    print(f"loaded {counts.providers} providers, {counts.templates} weekly hours, {counts.types} appointment types,"
          f" {counts.exceptions} exceptions, {counts.patients} patients")
    return 0


async def _slots(store: Store, service: SchedulingService, args: argparse.Namespace) -> int:
    query = SlotQuery(
        args.type_id, args.provider,
        days=frozenset({args.day}) if args.day else frozenset(),
        part_of_day=PartOfDay(args.part) if args.part else None,
        earliest=dt.datetime.combine(args.day, dt.time(0), tzinfo=service.tz) if args.day else None,
    )
    slots = await service.find_slots(query, limit=args.limit)
    for slot in slots:
        print(f"{_local(slot.start, service)}  {slot.provider_id}  {slot.type_id}")
    if not slots:
        print("no free slots", file=sys.stderr)
    return 0


async def _book(store: Store, service: SchedulingService, args: argparse.Namespace) -> int:
    patient_id = await store.pool.fetchval("SELECT id FROM patients WHERE record_number = $1", args.patient)
    if patient_id is None:
        raise ValueError(f"no patient with record number {args.patient}")
    appointment_type = await service.appointment_type(args.type_id)
    start = args.at if args.at.tzinfo else args.at.replace(tzinfo=service.tz)
    end = start.astimezone(dt.UTC) + appointment_type.duration
    location = await store.pool.fetchval("SELECT location_id FROM providers WHERE id = $1", args.provider)
    slot = Slot(args.provider, args.type_id, start, end, location)
    appointment = await service.book(slot, patient_id, source=Source.STAFF)
    print(f"booked appointment {appointment.id}: {_local(appointment.start, service)} {appointment.provider_id}")
    return 0


async def _list(store: Store, service: SchedulingService, args: argparse.Namespace) -> int:
    day = args.day or service.now().astimezone(service.tz).date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=service.tz)
    end = dt.datetime.combine(day + dt.timedelta(days=max(1, args.days)), dt.time(0), tzinfo=service.tz)
    appointments = await service.list_appointments(start, end, provider_id=args.provider)
    rows = await store.pool.fetch(
        "SELECT id, record_number FROM patients WHERE id = ANY($1::bigint[])", [a.patient_id for a in appointments]
    )
    records: dict[int, str] = {row["id"]: row["record_number"] for row in rows}
    for a in appointments:
        print(f"{a.id:>6}  {_local(a.start, service)}  {a.provider_id:<10} {a.type_id:<12} {a.status.value:<7}"
              f" {records.get(a.patient_id, '?')}")
    print(f"{len(appointments)} appointment(s)")
    return 0


async def _cancel(store: Store, service: SchedulingService, args: argparse.Namespace) -> int:
    appointment = await service.cancel(args.id, args.reason)
    print(f"appointment {appointment.id} is {appointment.status.value}")
    return 0
