"""Clinic data files and the staff CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from pbx_router.cli import main
from pbx_router.scheduling.data import (
    import_clinic_data,
    load_clinic_file,
    parse_clinic_data,
)
from pbx_router.store import Store

from scheduling.conftest import EXAMPLE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timezone: Mars/Olympus\n", "unknown timezone"),
        ("providers: [{id: a, name: A, hours: {mon: '09:00-08:00'}}]\n", "ends before it starts"),
        ("providers: [{id: a, name: A, hours: {someday: '09:00-10:00'}}]\n", "unknown day"),
        ("appointment_types: [{id: t, duration: 30, providers: [ghost]}]\n", "unknown provider 'ghost'"),
        ("patients: [{record_number: X1, first_name: A, last_name: B, date_of_birth: 14/03/1980}]\n", "YYYY-MM-DD"),
        ("patients: [{record_number: X1, first_name: A, last_name: B, date_of_birth: 1980-03-14, phones: [abc]}]\n", "not a phone"),
        ("providers: [oops\n", "not valid YAML"),
        ("- just a list\n", "must be a mapping"),
    ],
)
def test_bad_clinic_data_is_reported_with_where(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_clinic_data(text, "clinic.yaml")
    assert str(info.value).startswith("clinic.yaml")


def test_unquoted_yaml_times_are_read_as_times() -> None:
    data = parse_clinic_data("providers: [{id: a, name: A, hours: {mon: [08:00-12:00]}}]\n")
    assert (data.templates[0].start, data.templates[0].end) == (dt.time(8), dt.time(12))


async def test_loading_twice_gives_the_same_rows(store: Store) -> None:
    data = await asyncio.to_thread(load_clinic_file, EXAMPLE)
    await import_clinic_data(store.pool, data)
    counts = await store.pool.fetchrow(
        "SELECT (SELECT count(*) FROM availability_templates) t, (SELECT count(*) FROM patients) p,"
        " (SELECT count(*) FROM patient_phones) ph, (SELECT count(*) FROM availability_exceptions) e"
    )
    await import_clinic_data(store.pool, data)
    again = await store.pool.fetchrow(
        "SELECT (SELECT count(*) FROM availability_templates) t, (SELECT count(*) FROM patients) p,"
        " (SELECT count(*) FROM patient_phones) ph, (SELECT count(*) FROM availability_exceptions) e"
    )
    assert dict(counts) == dict(again)
    assert counts["p"] == len(data.patients) and counts["t"] == len(data.templates)


async def test_staff_cli_load_slots_book_list_cancel(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def cli(*argv: str) -> tuple[int, str]:
        code = await asyncio.to_thread(main, ["appointments", "--database-url", db_url, "--data-dir", str(tmp_path), *argv])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    code, out = await cli("load", str(EXAMPLE))
    assert code == 0 and "242 patients" in out
    code, out = await cli("slots", "--type", "checkup", "--provider", "dr-patel", "--day", "2027-03-01", "--part", "afternoon", "--limit", "2")
    assert code == 0
    # (structlog, unconfigured in-process, also writes to stdout: look at the slot lines only)
    assert [line for line in out.splitlines() if "  checkup" in line] == ["Mon 2027-03-01 13:00  dr-patel  checkup", "Mon 2027-03-01 13:30  dr-patel  checkup"]
    code, out = await cli("book", "--patient", "MRN09001", "--type", "checkup", "--provider", "dr-patel", "--at", "2027-03-01T13:00")
    assert code == 0 and "booked appointment" in out
    appointment_id = out.split("booked appointment ", 1)[1].split(":", 1)[0]
    code, out = await cli("book", "--patient", "MRN00002", "--type", "checkup", "--provider", "dr-patel", "--at", "2027-03-01T13:15")
    assert code == 1 and "taken" in out
    code, out = await cli("list", "--day", "2027-03-01")
    assert "MRN09001" in out and "13:00" in out and "1 appointment(s)" in out and "Flores" not in out
    code, out = await cli("cancel", appointment_id)
    assert code == 0 and "cancelled" in out
    code, out = await cli("list", "--day", "2027-03-01")
    assert "0 appointment(s)" in out
