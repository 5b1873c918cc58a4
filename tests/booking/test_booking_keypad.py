"""The booking voice flow driven from the keypad (no recogniser): a caller presses 1 (appointments)
at the greeting, types the date of birth, picks an offered slot and confirms; cancels and moves an
existing appointment; and every way out that is not a finished booking reaches the scheduling team
with what was captured."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pbx_router.calls import booking_prompts as p
from pbx_router.scheduling.patients import PatientDirectory
from pbx_router.scheduling.service import SchedulingService
from pbx_router.store import Store
from pbx_router.testing import AsteriskEmulator

from booking.conftest import (
    AISHA,
    SOFIA,
    TUESDAY_10AM,
    UNKNOWN_NUMBER,
    call_record,
    extra_of,
    patient_id,
    played,
    press,
    prompt,
    prompt_started,
    query,
    start_booking_daemon,
)
from helpers import eventually

DaemonFactory = Any
STAFF = ("router-queue", "scheduling", 1)


async def book_slot_by_keypad(pbx: AsteriskEmulator, number: str, dob_keys: str, choice: str) -> Any:
    call = await pbx.place_call(caller_number=number, dialled="100", dtmf=[(0.2, "1")])
    await prompt_started(pbx, call, p.ENTER_DOB)
    await press(call, dob_keys)  # eight digits end the entry without "#"
    await prompt_started(pbx, call, p.OFFER_INTRO)
    await press(call, choice)
    await prompt_started(pbx, call, p.YOU_CHOSE)
    await press(call, "1")
    await call.wait_for(lambda c: c.fate != "in_stasis", timeout=30)
    return call


async def test_keypad_caller_books_the_slot_they_picked(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str
) -> None:
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    call = await book_slot_by_keypad(keypad_pbx, SOFIA["number"], SOFIA["dob_keys"], "2")

    assert call.fate == "hung_up_by_app"
    media = played(keypad_pbx, call.channel_id)
    assert media[-1] == [prompt(p.BOOKED)]
    # Three slots were offered, each read as "N, <weekday> <month> <ordinal> at <time>".
    offer = next(m for m in media if m[0] == prompt(p.OFFER_INTRO))
    assert [m for m in offer if m in ("sound:digits/1", "sound:digits/2", "sound:digits/3")] == \
        ["sound:digits/1", "sound:digits/2", "sound:digits/3"]
    assert sum(m.startswith("sound:digits/day-") for m in offer) == 3
    assert offer[-1] == prompt(p.OFFER_CHOOSE)

    row = await eventually(lambda: call_record(clinic_db, call.channel_id), what="call record")
    booking = extra_of(row)["booking"]
    assert row["outcome"] == "booking:booked"
    second = booking["offered"][1]
    rows = await query(clinic_db, "SELECT patient_id, provider_id, type_id, lower(during) AS start, status, source,"
                                  " call_id FROM appointments")
    assert len(rows) == 1
    (appt,) = rows
    assert appt["status"] == "booked" and appt["source"] == "phone"
    assert appt["patient_id"] == await patient_id(clinic_db, SOFIA["record"])
    assert appt["type_id"] == "checkup"  # the clinic's default visit when none was named
    assert (appt["start"], appt["provider_id"]) == (dt.datetime.fromisoformat(second["start"]), second["provider"])
    assert appt["call_id"] == row["call_id"]
    # The read-back was the chosen slot: the same weekday sound as the second offer's.
    readback = next(m for m in media if m[0] == prompt(p.YOU_CHOSE))
    local = appt["start"].astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert f"sound:digits/day-{(local.weekday() + 1) % 7}" in readback


async def test_offers_are_spread_over_days(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str
) -> None:
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    # A slip on the keypad: "*" starts the date of birth over.
    call = await book_slot_by_keypad(keypad_pbx, AISHA["number"], "1231*" + AISHA["dob_keys"], "1")
    row = await eventually(lambda: call_record(clinic_db, call.channel_id), what="call record")
    offered = extra_of(row)["booking"]["offered"]
    days = [dt.datetime.fromisoformat(o["start"]).astimezone(dt.timezone(dt.timedelta(hours=-5))).date() for o in offered]
    assert days == [dt.date(2026, 12, 1), dt.date(2026, 12, 2), dt.date(2026, 12, 3)]
    # Aisha's usual doctor is not asked for; the first offer is the earliest after the 30-minute notice.
    assert dt.datetime.fromisoformat(offered[0]["start"]) == TUESDAY_10AM + dt.timedelta(minutes=30)


async def wrong_dob_three_times(pbx: AsteriskEmulator, number: str) -> Any:
    call = await pbx.place_call(caller_number=number, dialled="100", dtmf=[(0.2, "1")])
    await prompt_started(pbx, call, p.ENTER_DOB)
    await press(call, "01011990")
    await prompt_started(pbx, call, p.DOB_RETRY, 1)
    await press(call, "1231199#")  # seven digits and "#": not a date at all
    await prompt_started(pbx, call, p.DOB_RETRY, 2)
    await press(call, "0203*02032005")  # "*" starts over; still the wrong year
    await call.wait_for(lambda c: c.fate == "continued", timeout=30)
    return call


async def test_wrong_dob_three_times_goes_to_staff_and_an_unknown_number_hears_the_same(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str
) -> None:
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    known = await wrong_dob_three_times(keypad_pbx, SOFIA["number"])
    unknown = await wrong_dob_three_times(keypad_pbx, UNKNOWN_NUMBER)

    for call in (known, unknown):
        assert call.continued_to == STAFF
        assert played(keypad_pbx, call.channel_id)[-1] == [prompt(p.TO_STAFF)]
    # Nothing tells a caller whether the number belongs to a patient: the same prompts, in order.
    assert played(keypad_pbx, known.channel_id) == played(keypad_pbx, unknown.channel_id)

    for call in (known, unknown):
        row = await eventually(lambda c=call: call_record(clinic_db, c.channel_id), what="call record")
        booking = extra_of(row)["booking"]
        assert booking["verified"] is False and "patient_id" not in booking
        assert booking["reason"] == "verification_failed" and booking["verification_attempts"] == 3
        assert row["outcome"] == "queue:scheduling:dialplan:router-queue"
    assert await query(clinic_db, "SELECT id FROM appointments") == []
    failures = await query(clinic_db, "SELECT number FROM verification_failures ORDER BY number")
    assert sorted(r["number"] for r in failures) == sorted([SOFIA["number"]] * 3 + [UNKNOWN_NUMBER] * 3)


async def test_pressing_zero_at_the_offer_reaches_staff_with_what_was_captured(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str
) -> None:
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    call = await keypad_pbx.place_call(caller_number=SOFIA["number"], dialled="100", dtmf=[(0.2, "1")])
    await prompt_started(keypad_pbx, call, p.ENTER_DOB)
    await press(call, "02032004")
    await prompt_started(keypad_pbx, call, p.OFFER_INTRO)
    await press(call, "0")
    await call.wait_for(lambda c: c.fate == "continued", timeout=20)
    assert call.continued_to == STAFF
    row = await eventually(lambda: call_record(clinic_db, call.channel_id), what="call record")
    booking = extra_of(row)["booking"]
    assert booking["reason"] == "asked_for_person" and booking["step"] == "choose"
    assert booking["verified"] is True and booking["patient_id"] == await patient_id(clinic_db, SOFIA["record"])
    assert len(booking["offered"]) == 3


async def test_silence_at_the_read_back_releases_the_hold_and_reaches_staff(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str
) -> None:
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    call = await keypad_pbx.place_call(caller_number=SOFIA["number"], dialled="100", dtmf=[(0.2, "1")])
    await prompt_started(keypad_pbx, call, p.ENTER_DOB)
    await press(call, "02032004")
    await prompt_started(keypad_pbx, call, p.OFFER_INTRO)
    await press(call, "3")
    await prompt_started(keypad_pbx, call, p.YOU_CHOSE)
    held = await query(clinic_db, "SELECT status FROM appointments")
    assert [r["status"] for r in held] == ["held"]  # the slot is kept while it is read back
    await call.wait_for(lambda c: c.fate == "continued", timeout=40)  # asked twice, then staff
    assert call.continued_to == STAFF
    assert [m[0] for m in played(keypad_pbx, call.channel_id)][-3:] == \
        [prompt(p.YOU_CHOSE), prompt(p.SORRY_AGAIN), prompt(p.TO_STAFF)]
    rows = await query(clinic_db, "SELECT status, cancel_reason FROM appointments")
    assert [(r["status"], r["cancel_reason"]) for r in rows] == [("cancelled", "handed to staff")]
    row = await eventually(lambda: call_record(clinic_db, call.channel_id), what="call record")
    assert extra_of(row)["booking"]["reason"] == "no_answer:confirm"


async def test_caller_hanging_up_at_the_read_back_releases_the_hold(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str
) -> None:
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    call = await keypad_pbx.place_call(caller_number=SOFIA["number"], dialled="100", dtmf=[(0.2, "1")])
    await prompt_started(keypad_pbx, call, p.ENTER_DOB)
    await press(call, "02032004")
    await prompt_started(keypad_pbx, call, p.OFFER_INTRO)
    await press(call, "1")
    await prompt_started(keypad_pbx, call, p.YOU_CHOSE)
    await call.hangup()

    async def released() -> bool:
        rows = await query(clinic_db, "SELECT status FROM appointments")
        return [r["status"] for r in rows] == ["cancelled"]

    await eventually(released, what="hold released")


async def given_booked_appointment(db_url: str, tmp: Any, record_number: str, day: int = 3) -> dict[str, Any]:
    """A booking made earlier by staff for ``day`` December (default Thursday 3), 09:00 with Dr. Patel."""
    store = await Store.open(db_url, tmp)
    try:
        service = await SchedulingService.create(store.pool, clock=lambda: TUESDAY_10AM)
        directory = PatientDirectory(store.pool, service.tz)
        patient = await directory.by_record_number(record_number)
        assert patient is not None
        start = dt.datetime(2026, 12, day, 9, 0, tzinfo=service.tz)
        from pbx_router.scheduling import Slot

        appt = await service.book(Slot("dr-patel", "checkup", start, start + dt.timedelta(minutes=30), "main"),
                                  patient.id)
        return {"id": appt.id, "start": appt.start, "patient_id": patient.id}
    finally:
        await store.close()


async def test_keypad_caller_cancels_their_next_appointment(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str, tmp_path: Any
) -> None:
    existing = await given_booked_appointment(clinic_db, tmp_path / "given", SOFIA["record"])
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    call = await keypad_pbx.place_call(caller_number=SOFIA["number"], dialled="100", dtmf=[(0.2, "9")])
    await prompt_started(keypad_pbx, call, p.ENTER_DOB)
    await press(call, "02032004")
    await prompt_started(keypad_pbx, call, p.NEXT_APPOINTMENT)
    readout = next(m for m in played(keypad_pbx, call.channel_id) if m[0] == prompt(p.NEXT_APPOINTMENT))
    # Thursday (day-4 counting from Sunday), December (mon-11), the third, at nine o'clock a.m.
    assert readout[1:] == ["sound:digits/day-4", "sound:digits/mon-11", "sound:digits/h-3", "sound:digits/at",
                           "sound:digits/9", "sound:digits/oclock", "sound:digits/a-m", prompt(p.ASK_CANCEL)]
    await press(call, "1")
    await call.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=20)
    assert played(keypad_pbx, call.channel_id)[-1] == [prompt(p.CANCELLED)]
    rows = await query(clinic_db, "SELECT id, status FROM appointments")
    assert [(r["id"], r["status"]) for r in rows] == [(existing["id"], "cancelled")]


async def test_keypad_caller_moves_their_next_appointment(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str, tmp_path: Any
) -> None:
    existing = await given_booked_appointment(clinic_db, tmp_path / "given", SOFIA["record"])
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    call = await keypad_pbx.place_call(caller_number=SOFIA["number"], dialled="100", dtmf=[(0.2, "8")])
    await prompt_started(keypad_pbx, call, p.ENTER_DOB)
    await press(call, "02032004")
    await prompt_started(keypad_pbx, call, p.NEXT_APPOINTMENT)
    await press(call, "1")
    await prompt_started(keypad_pbx, call, p.ASK_NEW_TIME)
    # Nothing said: any time with the same doctor is offered (after the "when" question times out).
    await prompt_started(keypad_pbx, call, p.OFFER_INTRO, timeout=20)
    await press(call, "1")
    await prompt_started(keypad_pbx, call, p.YOU_CHOSE)
    await press(call, "1")
    await call.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=20)
    rows = await query(clinic_db, "SELECT id, status, replaces_id, provider_id, patient_id FROM appointments ORDER BY id")
    assert [(r["id"], r["status"]) for r in rows] == [(existing["id"], "cancelled"), (rows[1]["id"], "booked")]
    assert rows[1]["replaces_id"] == existing["id"] and rows[1]["provider_id"] == "dr-patel"
    assert rows[1]["patient_id"] == existing["patient_id"]


async def test_a_slot_taken_while_it_was_offered_is_said_so_and_the_times_offered_again(
    keypad_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, keypad_only: str, tmp_path: Any
) -> None:
    await start_booking_daemon(start_daemon, keypad_only, TUESDAY_10AM)
    call = await keypad_pbx.place_call(caller_number=SOFIA["number"], dialled="100", dtmf=[(0.2, "1")])
    await prompt_started(keypad_pbx, call, p.ENTER_DOB)
    await press(call, SOFIA["dob_keys"])
    await prompt_started(keypad_pbx, call, p.OFFER_INTRO)
    # Meanwhile the front desk books the first offered time (Tuesday 10:30) with both doctors free then.
    store = await Store.open(clinic_db, tmp_path / "desk")
    try:
        desk = await SchedulingService.create(store.pool, clock=lambda: TUESDAY_10AM)
        other = await PatientDirectory(store.pool, desk.tz).by_record_number(AISHA["record"])
        assert other is not None
        from pbx_router.scheduling import SlotQuery

        for slot in await desk.find_slots(SlotQuery("checkup"), limit=3):
            if slot.start == TUESDAY_10AM + dt.timedelta(minutes=30):
                await desk.book(slot, other.id)
    finally:
        await store.close()
    await press(call, "1")
    await prompt_started(keypad_pbx, call, p.SLOT_TAKEN)
    await prompt_started(keypad_pbx, call, p.OFFER_INTRO, 2)
    await press(call, "1")
    await prompt_started(keypad_pbx, call, p.YOU_CHOSE)
    await press(call, "1")
    await call.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=20)
    sofia = await patient_id(clinic_db, SOFIA["record"])
    rows = await query(clinic_db, "SELECT lower(during) AS start, status FROM appointments WHERE patient_id = $1", sofia)
    assert [r["status"] for r in rows] == ["booked"]
    assert rows[0]["start"] != TUESDAY_10AM + dt.timedelta(minutes=30)
