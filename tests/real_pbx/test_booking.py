"""A keypad booking on the real Asterisk: a patient's phone dials in, presses 1 for appointments
during the greeting, types their date of birth, picks the second time offered and confirms; the
clinic's schedule then holds one appointment, at that time, booked by phone."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio

from pbx_router.calls import booking_prompts as p
from pbx_router.scheduling.data import import_clinic_data, load_clinic_file
from pbx_router.store import Store
from pbx_router.testing.asterisk import RealAsterisk
from pbx_router.testing.sip import SipCaller

from booking.conftest import SOFIA
from helpers import eventually
from real_pbx.conftest import ROOT, daemon_config, ensure_asterisk, start_real_daemon

# A patient of examples/clinic-patients.csv (SOFIA), calling from the number on their record: a
# phone account whose caller id is that number (what a clinic's trunk would present).
PATIENT_PHONE = f"""
[patient1](phone-endpoint)
context = from-phones
auth = patient1-auth
aors = patient1
callerid = "Sofia" <{SOFIA["number"]}>
[patient1-auth](phone-auth)
username = patient1
password = CHANGE-ME-patient1
[patient1](phone-aor)
"""
# Asterisk says which file each channel plays at verbosity 3: the test follows the prompts so.
PROMPT_LOG = "prompts.log => verbose\n"


@pytest_asyncio.fixture
async def patient_pbx() -> AsyncIterator[RealAsterisk]:
    ensure_asterisk()
    run = Path(tempfile.mkdtemp(prefix="ast-", dir="/tmp"))
    ast = RealAsterisk(ROOT / "asterisk_conf", run,
                       extra_conf={"pjsip.conf": PATIENT_PHONE, "logger.conf": PROMPT_LOG})
    try:
        await ast.start()
        await ast.cli("core set verbose 3")
        yield ast
    finally:
        await ast.stop()
        shutil.rmtree(run, ignore_errors=True)


def prompts_started(ast: RealAsterisk, name: str) -> int:
    """How many times Asterisk started playing our prompt ``name`` to a caller."""
    log = ast.run_dir / "log" / "prompts.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return len(re.findall(rf"Playing '{p.SOUND_DIR}/{re.escape(name)}\.", text))


async def heard(ast: RealAsterisk, name: str, count: int = 1) -> None:
    await eventually(lambda: prompts_started(ast, name) >= count, timeout=60, what=f"the caller hears {name}")


async def closed_record(db_url: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetchrow("SELECT call_id, outcome, extra FROM calls WHERE ended_at IS NOT NULL")
    finally:
        await conn.close()


async def test_a_keypad_booking_ends_in_one_appointment(
    patient_pbx: RealAsterisk, database_url: str, tmp_path: Path
) -> None:
    data = await asyncio.to_thread(load_clinic_file, ROOT / "examples" / "clinic-data.yaml")
    store = await Store.open(database_url, tmp_path / "loader")
    try:
        await import_clinic_data(store.pool, data)
    finally:
        await store.close()
    daemon = await start_real_daemon(patient_pbx, daemon_config(patient_pbx, database_url, tmp_path),
                                     tmp_path / "daemon.log")
    try:
        async with SipCaller(patient_pbx, "100", user="patient1", dtmf=[(1.0, "1")], hangup_after=180) as caller:
            await asyncio.wait_for(caller.answered.wait(), 15)
            await heard(patient_pbx, p.ENTER_DOB)
            caller.press(SOFIA["dob_keys"])  # eight digits end the entry without "#"
            await heard(patient_pbx, p.OFFER_CHOOSE)
            caller.press("2")
            await heard(patient_pbx, p.CONFIRM_ASK)
            caller.press("1")
            await heard(patient_pbx, p.BOOKED)
            await caller.ended(60)  # the daemon says goodbye and hangs up
            assert caller.hung_up_by_pbx
        call = await eventually(lambda: closed_record(database_url), timeout=15, what="the call record")
    finally:
        await daemon.stop()
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT a.status, a.source, a.type_id, lower(a.during) AS start, a.call_id, p.record_number"
            " FROM appointments a JOIN patients p ON p.id = a.patient_id")
    finally:
        await conn.close()
    assert len(rows) == 1, rows
    (appt,) = rows
    assert (appt["status"], appt["source"], appt["record_number"]) == ("booked", "phone", SOFIA["record"])
    assert call["outcome"] == "booking:booked" and appt["call_id"] == call["call_id"]
    # The time booked is the second one offered, in the future.
    booking = (json.loads(call["extra"]) if isinstance(call["extra"], str) else call["extra"])["booking"]
    assert appt["start"] == dt.datetime.fromisoformat(booking["offered"][1]["start"])
    assert appt["start"] > dt.datetime.now(dt.UTC)
