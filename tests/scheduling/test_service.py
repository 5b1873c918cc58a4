"""The scheduling service on a real PostgreSQL with the example clinic loaded."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import textwrap
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from pbx_router.scheduling import (
    AppointmentStatus,
    HoldExpired,
    IdempotencyMismatch,
    InvalidTransition,
    Slot,
    SlotQuery,
    SlotUnavailable,
    Source,
)
from pbx_router.scheduling.service import SchedulingService
from pbx_router.store import Store

from scheduling.conftest import FakeClock

NY = ZoneInfo("America/New_York")


async def patient_ids(store: Store, n: int) -> list[int]:
    rows = await store.pool.fetch("SELECT id FROM patients ORDER BY id LIMIT $1", n)
    return [r["id"] for r in rows]


async def first_slot(service: SchedulingService, **query: object) -> Slot:
    slots = await service.find_slots(SlotQuery("checkup", **query), limit=1)  # type: ignore[arg-type]
    assert slots
    return slots[0]


async def test_slots_come_from_the_clinic_hours_in_its_time_zone(service: SchedulingService) -> None:
    slots = await service.find_slots(SlotQuery("checkup", provider_id="dr-patel"), limit=3)
    assert [s.start.astimezone(NY).strftime("%a %H:%M") for s in slots] == ["Mon 08:00", "Mon 08:30", "Mon 09:00"]
    assert service.tz.key == "America/New_York"


async def test_hundred_concurrent_holds_on_one_slot_exactly_one_wins(service: SchedulingService, clinic: Store) -> None:
    slot = await first_slot(service, provider_id="dr-patel")
    patients = await patient_ids(clinic, 100)

    async def try_hold(patient_id: int) -> object:
        try:
            return await service.hold(slot, patient_id)
        except SlotUnavailable as exc:
            return exc

    results = await asyncio.gather(*(try_hold(p) for p in patients))
    winners = [r for r in results if not isinstance(r, SlotUnavailable)]
    assert len(winners) == 1
    assert sum(isinstance(r, SlotUnavailable) for r in results) == 99
    live = await clinic.pool.fetchval(
        "SELECT count(*) FROM appointments WHERE provider_id = 'dr-patel' AND status IN ('held', 'booked')"
    )
    assert live == 1
    # The slot is no longer offered to anyone else.
    assert slot not in await service.find_slots(SlotQuery("checkup", provider_id="dr-patel"), limit=3)


async def test_hold_expires_then_the_slot_is_free_and_confirm_fails(service: SchedulingService, clinic: Store, clock: FakeClock) -> None:
    slot = await first_slot(service, provider_id="dr-nguyen")
    first, second = await patient_ids(clinic, 2)
    hold = await service.hold(slot, first)
    assert hold.status is AppointmentStatus.HELD
    with pytest.raises(SlotUnavailable):
        await service.hold(slot, second)
    clock.advance(service.hold_ttl + dt.timedelta(seconds=1))
    assert slot in await service.find_slots(SlotQuery("checkup", provider_id="dr-nguyen"), limit=3)
    taken = await service.hold(slot, second)  # the expired hold is swept out of the way
    with pytest.raises(HoldExpired):
        await service.confirm(hold.id)
    booked = await service.confirm(taken.id)
    assert booked.status is AppointmentStatus.BOOKED
    assert (await service.get(hold.id)).status is AppointmentStatus.EXPIRED  # type: ignore[union-attr]


async def test_sweeper_marks_expired_holds(service: SchedulingService, clinic: Store, clock: FakeClock) -> None:
    slots = await service.find_slots(SlotQuery("follow-up"), limit=3)
    (patient,) = await patient_ids(clinic, 1)
    holds = [await service.hold(s, patient) for s in slots]
    assert await service.sweep_expired_holds() == 0
    clock.advance(dt.timedelta(minutes=6))
    assert await service.sweep_expired_holds() == 3
    assert {(await service.get(h.id)).status for h in holds} == {AppointmentStatus.EXPIRED}  # type: ignore[union-attr]


async def test_confirm_is_idempotent_and_cancel_frees_the_slot(service: SchedulingService, clinic: Store) -> None:
    slot = await first_slot(service)
    first, second = await patient_ids(clinic, 2)
    hold = await service.hold(slot, first)
    assert (await service.confirm(hold.id)).status is AppointmentStatus.BOOKED
    assert (await service.confirm(hold.id)).status is AppointmentStatus.BOOKED
    cancelled = await service.cancel(hold.id, "patient request")
    assert cancelled.status is AppointmentStatus.CANCELLED
    assert (await service.cancel(hold.id)).status is AppointmentStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        await service.confirm(hold.id)
    assert (await service.hold(slot, second)).status is AppointmentStatus.HELD


async def test_retried_request_with_the_same_key_never_books_twice(service: SchedulingService, clinic: Store) -> None:
    slot = await first_slot(service)
    (patient,) = await patient_ids(clinic, 1)
    results = await asyncio.gather(*(service.hold(slot, patient, idempotency_key="call-1:hold") for _ in range(10)))
    assert len({r.id for r in results}) == 1
    assert await clinic.pool.fetchval("SELECT count(*) FROM appointments") == 1
    other = (await service.find_slots(SlotQuery("checkup"), limit=2))[1]
    with pytest.raises(IdempotencyMismatch):
        await service.hold(other, patient, idempotency_key="call-1:hold")


async def test_phone_holds_must_be_real_slots_but_staff_may_book_any_free_time(service: SchedulingService, clinic: Store) -> None:
    (patient,) = await patient_ids(clinic, 1)
    sunday = dt.datetime(2026, 12, 6, 10, 0, tzinfo=NY)
    odd = Slot("dr-patel", "checkup", sunday, sunday + dt.timedelta(minutes=30))
    with pytest.raises(SlotUnavailable):
        await service.hold(odd, patient)
    booked = await service.book(odd, patient, source=Source.STAFF)
    assert booked.status is AppointmentStatus.BOOKED
    overlapping = Slot("dr-patel", "follow-up", sunday + dt.timedelta(minutes=15), sunday + dt.timedelta(minutes=30))
    with pytest.raises(SlotUnavailable):
        await service.book(overlapping, patient, source=Source.STAFF)


async def test_the_database_itself_refuses_overlapping_live_appointments(service: SchedulingService, clinic: Store) -> None:
    slot = await first_slot(service)
    (patient,) = await patient_ids(clinic, 1)
    await service.book(slot, patient)
    with pytest.raises(asyncpg.ExclusionViolationError):
        await clinic.pool.execute(
            "INSERT INTO appointments (patient_id, provider_id, type_id, during, status, source)"
            " VALUES ($1, $2, 'checkup', tstzrange($3, $4), 'booked', 'import')",
            patient, slot.provider_id, slot.start + dt.timedelta(minutes=10), slot.end + dt.timedelta(minutes=10),
        )


async def test_modify_moves_a_booking_and_is_all_or_nothing(service: SchedulingService, clinic: Store) -> None:
    first, second = await patient_ids(clinic, 2)
    a, b, c = await service.find_slots(SlotQuery("checkup", provider_id="dr-patel"), limit=3)
    mine = await service.confirm((await service.hold(a, first)).id)
    theirs = await service.book(c, second)
    with pytest.raises(SlotUnavailable):
        await service.modify(mine.id, c)
    assert (await service.get(mine.id)).status is AppointmentStatus.BOOKED  # type: ignore[union-attr]
    # Moving by less than the length (overlaps the old time) works: the old one is released first.
    later = Slot(a.provider_id, a.type_id, a.start + dt.timedelta(minutes=30), a.end + dt.timedelta(minutes=30), a.location_id)
    assert later == b
    moved = await service.modify(mine.id, b, idempotency_key="k-move")
    assert moved.status is AppointmentStatus.BOOKED and moved.replaces_id == mine.id
    assert (await service.get(mine.id)).status is AppointmentStatus.CANCELLED  # type: ignore[union-attr]
    assert (await service.modify(mine.id, b, idempotency_key="k-move")).id == moved.id
    assert theirs.status is AppointmentStatus.BOOKED


async def test_modify_is_atomic_when_the_process_dies_between_steps(service: SchedulingService, clinic: Store, db_url: str) -> None:
    (patient,) = await patient_ids(clinic, 1)
    a, b = await service.find_slots(SlotQuery("checkup", provider_id="dr-okafor"), limit=2)
    booked = await service.book(a, patient, source=Source.PHONE)
    script = textwrap.dedent(
        f"""
        import asyncio, datetime as dt, os, asyncpg
        from zoneinfo import ZoneInfo
        from pbx_router.scheduling import Slot
        from pbx_router.scheduling.service import SchedulingService

        async def die(step):
            if step == "released":
                os._exit(9)  # the process dies with the transaction open

        async def main():
            pool = await asyncpg.create_pool({db_url!r}, min_size=1, max_size=1)
            service = SchedulingService(pool, ZoneInfo("America/New_York"), on_step=die,
                                        clock=lambda: dt.datetime.fromisoformat({service.now().isoformat()!r}),
                                        min_notice=dt.timedelta(0))
            new = Slot({b.provider_id!r}, {b.type_id!r}, dt.datetime.fromisoformat({b.start.isoformat()!r}),
                       dt.datetime.fromisoformat({b.end.isoformat()!r}), {b.location_id!r})
            await service.modify({booked.id}, new)

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, env={**os.environ})
    assert await asyncio.wait_for(proc.wait(), 60) == 9
    # Nothing changed: the old booking stands, the new time is free and nothing waits on locks.
    assert (await service.get(booked.id)).status is AppointmentStatus.BOOKED  # type: ignore[union-attr]
    assert await clinic.pool.fetchval("SELECT count(*) FROM appointments") == 1
    moved = await asyncio.wait_for(service.modify(booked.id, b), 30)
    assert moved.start == b.start


async def test_fall_back_night_appointments_are_distinct_instants(clinic: Store, clock: FakeClock) -> None:
    service = SchedulingService(clinic.pool, NY, clock=clock)
    (patient,) = await patient_ids(clinic, 1)
    first_one = dt.datetime(2026, 11, 1, 1, 0, tzinfo=NY)  # 01:00 EDT
    second_one = first_one.replace(fold=1)  # 01:00 EST, an hour later
    a = await service.book(Slot("dr-patel", "checkup", first_one, first_one.astimezone(dt.UTC) + dt.timedelta(minutes=30)), patient)
    b = await service.book(Slot("dr-patel", "checkup", second_one, second_one.astimezone(dt.UTC) + dt.timedelta(minutes=30)), patient)
    assert b.start - a.start == dt.timedelta(hours=1)
    assert [x.start.astimezone(NY).strftime("%H:%M%z") for x in (a, b)] == ["01:00-0400", "01:00-0500"]
