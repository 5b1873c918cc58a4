"""The whole booking voice flow with a real recogniser on fixture speech: the caller asks for a
checkup, types the date of birth, picks the Tuesday slot by saying "next Tuesday morning" while the
offer is read, says "yes" to the read-back, and the appointment is booked for them, once.

The emulator streams a caller's audio once, from the answer: the test assembles one recording with
each utterance placed inside the prompt it answers (speech stops a prompt, so only the start of
each window matters)."""

from __future__ import annotations

import datetime as dt
import wave
from pathlib import Path
from typing import Any

import numpy as np

from pbx_router.calls import booking_prompts as p
from pbx_router.testing import AsteriskEmulator
from pbx_router.testing.audio import read_wav

from booking.conftest import (
    SOFIA,
    TUESDAY_10AM,
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

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio"
DaemonFactory = Any

# (seconds into the caller's audio, fixture): the request during the greeting; the choice well inside
# the offer (which starts 3-6 s after the answer and lasts about 20 s); "yes please" inside the
# read-back (which starts 1-3 s after the choice ends and lasts about 10 s). yes_02, not yes_01:
# the recogniser hears yes_01 as "the at".
SCRIPT = [(0.0, "appt_new_03.wav"), (9.5, "date_01.wav"), (16.3, "yes_02.wav")]


def assemble(script: list[tuple[float, str]], out: Path) -> Path:
    pieces = [(at, *read_wav(AUDIO / name)) for at, name in script]
    assert all(rate == 8000 for _, _, rate in pieces)
    total = max(int(at * 8000) + len(pcm) for at, pcm, _ in pieces) + 8000
    track = np.zeros(total, dtype=np.int16)
    for at, pcm, _ in pieces:
        start = int(at * 8000)
        track[start:start + len(pcm)] = pcm
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(track.tobytes())
    return out


async def test_caller_books_a_checkup_by_voice_and_keypad(
    booking_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, tmp_path: Path, listening: str
) -> None:
    daemon = await start_booking_daemon(start_daemon, listening, TUESDAY_10AM)
    audio = assemble(SCRIPT, tmp_path / "caller.wav")
    call = await booking_pbx.place_call(caller_number=SOFIA["number"], dialled="100", audio=audio, audio_at=0.3)
    await prompt_started(booking_pbx, call, p.ENTER_DOB, timeout=20)
    await press(call, SOFIA["dob_keys"])
    await call.wait_for(lambda c: c.fate != "in_stasis", timeout=60)

    row = await eventually(lambda: call_record(clinic_db, call.channel_id), what="call record")
    booking = extra_of(row)["booking"]
    assert call.fate == "hung_up_by_app", (call.continued_to, booking)
    assert row["outcome"] == "booking:booked"
    assert "book a check" in row["transcript"]  # "checkup" (pocketsphinx) or "check up" (moonshine)
    # The offer was cut short by the caller's answer (barge-in), and the read-back was the Tuesday.
    media = played(booking_pbx, call.channel_id)
    assert [m[0] for m in media][-4:] == [prompt(p.ENTER_DOB), prompt(p.OFFER_INTRO), prompt(p.YOU_CHOSE),
                                          prompt(p.BOOKED)]
    readback = next(m for m in media if m[0] == prompt(p.YOU_CHOSE))
    assert readback[1:4] == ["sound:digits/day-2", "sound:digits/mon-11", "sound:digits/h-1"]  # Tue Dec 1st
    assert booking["request"]["type"] == "checkup"
    assert "tuesday" in booking["heard"][0] and "yes" in booking["heard"][1]

    rows = await query(clinic_db, "SELECT patient_id, type_id, lower(during) AS start, status FROM appointments")
    assert len(rows) == 1
    appt = rows[0]
    assert appt["status"] == "booked" and appt["type_id"] == "checkup"
    assert appt["patient_id"] == await patient_id(clinic_db, SOFIA["record"])
    assert appt["start"] == TUESDAY_10AM + dt.timedelta(minutes=30)
    await eventually(lambda: daemon.app.brain.ports.in_use == 0, what="listening ports given back")


async def test_caller_cancels_the_friday_visit_they_asked_about_by_voice(
    booking_pbx: AsteriskEmulator, start_daemon: DaemonFactory, clinic_db: str, tmp_path: Path, listening: str
) -> None:
    from booking.test_booking_keypad import given_booked_appointment

    thursday = await given_booked_appointment(clinic_db, tmp_path / "t", SOFIA["record"], day=3)
    friday = await given_booked_appointment(clinic_db, tmp_path / "f", SOFIA["record"], day=4)
    await start_booking_daemon(start_daemon, listening, TUESDAY_10AM)
    # "please cancel my visit on friday"; then "yes please" while the Friday visit is read back
    # (which starts 4-7 s after the answer and lasts about 10 s).
    audio = assemble([(0.0, "appt_cancel_02.wav"), (9.0, "yes_02.wav")], tmp_path / "caller.wav")
    call = await booking_pbx.place_call(caller_number=SOFIA["number"], dialled="100", audio=audio, audio_at=0.3)
    await prompt_started(booking_pbx, call, p.ENTER_DOB, timeout=20)
    await press(call, SOFIA["dob_keys"])
    await call.wait_for(lambda c: c.fate != "in_stasis", timeout=40)

    row = await eventually(lambda: call_record(clinic_db, call.channel_id), what="call record")
    assert call.fate == "hung_up_by_app", extra_of(row)["booking"]
    assert row["outcome"] == "booking:cancelled"
    readout = next(m for m in played(booking_pbx, call.channel_id) if m[0] == prompt(p.NEXT_APPOINTMENT))
    assert readout[1] == "sound:digits/day-5"  # Friday, not the earlier Thursday visit
    rows = await query(clinic_db, "SELECT id, status FROM appointments ORDER BY id")
    assert [(r["id"], r["status"]) for r in rows] == [(thursday["id"], "booked"), (friday["id"], "cancelled")]
