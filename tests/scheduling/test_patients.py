"""Caller verification and the facts routing rules use, on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt

from pbx_router.scheduling import SlotQuery, Source
from pbx_router.scheduling.patients import CallerFacts, PatientDirectory
from pbx_router.scheduling.service import SchedulingService
from pbx_router.scheduling.verification import Outcome

from scheduling.conftest import FakeClock

FAMILY_NUMBER = "(555) 010-0123"  # Ana (1980-03-14) and Luis (2012-07-04) Flores share it
UNKNOWN_NUMBER = "+15550109999"


async def test_right_date_of_birth_picks_the_patient_on_a_shared_number(directory: PatientDirectory) -> None:
    session = await directory.begin_verification(FAMILY_NUMBER)
    assert session.outcome is Outcome.RETRY
    decision = await session.submit(dt.date(2012, 7, 4))
    assert decision.outcome is Outcome.VERIFIED
    patient = await directory.get(session.patient_id)  # type: ignore[arg-type]
    assert patient is not None and patient.record_number == "MRN09002"


async def test_wrong_date_of_birth_three_times_goes_to_a_human(directory: PatientDirectory) -> None:
    session = await directory.begin_verification(FAMILY_NUMBER)
    outcomes = [(await session.submit(dt.date(1990, 1, 1))).outcome for _ in range(3)]
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.TO_HUMAN]
    assert session.patient_id is None


async def test_unknown_number_is_indistinguishable_from_a_wrong_date_of_birth(directory: PatientDirectory) -> None:
    known = await directory.begin_verification(FAMILY_NUMBER)
    unknown = await directory.begin_verification(UNKNOWN_NUMBER)
    anonymous = await directory.begin_verification(None)
    for session in (known, unknown, anonymous):
        assert session.outcome is Outcome.RETRY and session.decision.attempts_left == 3
    for _ in range(3):
        seen = {((await s.submit(dt.date(1980, 3, 15))).outcome, s.decision.attempts_left) for s in (known, unknown, anonymous)}
        assert len(seen) == 1
    assert "1980" not in repr(known) and "555" not in repr(known)


async def test_failures_count_across_calls_from_one_number(directory: PatientDirectory, clock: FakeClock) -> None:
    for _ in range(2):
        session = await directory.begin_verification(FAMILY_NUMBER)
        for _ in range(3):
            await session.submit(None)
    again = await directory.begin_verification(FAMILY_NUMBER)
    assert again.outcome is Outcome.TO_HUMAN  # straight to staff: no fresh attempts by calling back
    clock.advance(directory.policy.failure_window + dt.timedelta(minutes=1))
    later = await directory.begin_verification(FAMILY_NUMBER)
    assert later.outcome is Outcome.RETRY


async def test_facts_for_rules(directory: PatientDirectory, service: SchedulingService) -> None:
    assert await directory.caller_facts(UNKNOWN_NUMBER) == CallerFacts()
    assert await directory.is_known_patient("555-010-0123")
    assert not await directory.is_known_patient(UNKNOWN_NUMBER)
    ana = await directory.by_record_number("MRN09001")
    assert ana is not None
    facts = await directory.caller_facts(FAMILY_NUMBER)
    assert facts.known_patient and not facts.upcoming_today and facts.no_show_count == 0

    today, later = await service.find_slots(SlotQuery("checkup", provider_id="dr-patel"), limit=2)
    booked = await service.book(today, ana.id, source=Source.PHONE)
    assert [a.id for a in await directory.upcoming_today(ana.id)] == [booked.id]
    missed = await service.book(later, ana.id)
    await service.mark_no_show(missed.id)
    facts = await directory.caller_facts(FAMILY_NUMBER)
    assert facts.upcoming_today and facts.no_show_count == 1
    assert await directory.no_show_count(ana.id) == 1
