"""Clinic data files (YAML + a patients CSV) -> validated plain data -> the database.

Parsing is pure and raises ``ValueError`` naming the file and the entry at fault. Importing is
idempotent: loading the same file twice leaves the same rows (upserts; a provider's weekly hours
and the listed exceptions are replaced, not appended).

YAML shape (see ``examples/clinic-data.yaml``)::

    timezone: America/New_York
    locations: [{id, name, address}]
    providers: [{id, name, aliases: [...], location, hours: {mon: "08:00-12:00" | [..]}}]
    appointment_types: [{id, name, duration: minutes, step: minutes, keywords, providers, phone_bookable}]
    exceptions: [{provider (optional), from: ISO, to: ISO, kind: unavailable|available, reason}]
    patients_csv: clinic-patients.csv     # relative to the YAML file
    patients: [{record_number, first_name, last_name, date_of_birth, phones, ...}]

CSV columns: record_number, first_name, last_name, date_of_birth (YYYY-MM-DD), phones (``;``
separated), preferred_language, usual_provider.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import yaml

from pbx_router.scheduling.model import (
    AppointmentType,
    AvailabilityException,
    Location,
    Patient,
    Provider,
    WeeklyTemplate,
)
from pbx_router.scheduling.verification import normalize_number

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


@dataclass(frozen=True, slots=True)
class ClinicData:
    timezone: ZoneInfo
    locations: tuple[Location, ...]
    providers: tuple[Provider, ...]
    types: tuple[AppointmentType, ...]
    templates: tuple[WeeklyTemplate, ...]
    exceptions: tuple[AvailabilityException, ...]
    patients: tuple[Patient, ...]


def _time(value: Any, where: str) -> dt.time:
    if isinstance(value, int):  # YAML 1.1 reads 08:00 unquoted as sexagesimal minutes
        return dt.time(value // 60, value % 60)
    try:
        return dt.time.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a time (HH:MM)") from None


def _hours(spec: Any, where: str) -> list[tuple[dt.time, dt.time]]:
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for item in items:
        text = str(item)
        if "-" not in text:
            raise ValueError(f"{where}: {item!r} is not a range like 08:00-12:00")
        start_text, end_text = text.split("-", 1)
        start, end = _time(start_text, where), _time(end_text, where)
        if start >= end:
            raise ValueError(f"{where}: {item!r} ends before it starts")
        out.append((start, end))
    return out


def _moment(value: Any, tz: ZoneInfo, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time(0))
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not an ISO date/time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _require(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: must be a mapping")
    value = entry.get(key)
    if value in (None, ""):
        raise ValueError(f"{where}: missing {key!r}")
    return value


def parse_patients_csv(text: str, source: str = "patients.csv", default_country_code: str = "1") -> list[Patient]:
    reader = csv.DictReader(io.StringIO(text))
    patients = []
    for line, row in enumerate(reader, start=2):
        patients.append(_patient(row, f"{source}:{line}", default_country_code))
    return patients


def _patient(entry: Mapping[str, Any], where: str, country: str) -> Patient:
    dob_value = _require(entry, "date_of_birth", where)
    try:
        dob = dob_value if isinstance(dob_value, dt.date) else dt.date.fromisoformat(str(dob_value).strip())
    except ValueError:
        raise ValueError(f"{where}: date_of_birth must be YYYY-MM-DD") from None
    raw_phones = entry.get("phones") or ""
    phone_list = raw_phones if isinstance(raw_phones, list) else str(raw_phones).split(";")
    phones = []
    for raw in phone_list:
        if str(raw).strip():
            number = normalize_number(str(raw), country)
            if number is None:
                raise ValueError(f"{where}: {raw!r} is not a phone number")
            phones.append(number)
    return Patient(
        id=0,
        record_number=str(_require(entry, "record_number", where)).strip(),
        first_name=str(_require(entry, "first_name", where)).strip(),
        last_name=str(_require(entry, "last_name", where)).strip(),
        date_of_birth=dob,
        phones=tuple(phones),
        preferred_language=str(entry.get("preferred_language") or "en").strip(),
        usual_provider_id=(str(entry["usual_provider"]).strip() or None) if entry.get("usual_provider") else None,
    )


def parse_clinic_data(text: str, source: str = "clinic-data.yaml", base_dir: Path | None = None) -> ClinicData:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ValueError(f"{source}: the top level must be a mapping")
    try:
        tz = ZoneInfo(str(doc.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{source}: unknown timezone {doc.get('timezone')!r}") from None
    country = str(doc.get("country_code") or "1")

    locations = tuple(
        Location(
            str(_require(e, "id", f"{source}: locations[{i}]")), str(e.get("name") or e["id"]),
            str(e.get("address") or ""),
        )
        for i, e in enumerate(doc.get("locations") or [])
    )
    location_ids = {loc.id for loc in locations}
    providers: list[Provider] = []
    templates: list[WeeklyTemplate] = []
    for i, entry in enumerate(doc.get("providers") or []):
        where = f"{source}: providers[{i}]"
        provider_id = str(_require(entry, "id", where))
        location = entry.get("location")
        if location is not None and location not in location_ids:
            raise ValueError(f"{where}: unknown location {location!r}")
        providers.append(Provider(provider_id, str(_require(entry, "name", where)),
                                  tuple(str(a) for a in entry.get("aliases") or ()), location,
                                  bool(entry.get("active", True))))
        hours = entry.get("hours") or {}
        if not isinstance(hours, Mapping):
            raise ValueError(f"{where}: hours must map mon..sun to ranges")
        for day, spec in hours.items():
            key = str(day).lower()[:3]
            if key not in _DAYS:
                raise ValueError(f"{where}: unknown day {day!r}")
            for start, end in _hours(spec, f"{where}.hours.{day}"):
                templates.append(WeeklyTemplate(provider_id, _DAYS[key], start, end, location))
    provider_ids = {p.id for p in providers}
    if len(provider_ids) != len(providers):
        raise ValueError(f"{source}: duplicate provider id")

    types: list[AppointmentType] = []
    for i, entry in enumerate(doc.get("appointment_types") or []):
        where = f"{source}: appointment_types[{i}]"
        for provider in entry.get("providers") or ():
            if provider not in provider_ids:
                raise ValueError(f"{where}: unknown provider {provider!r}")
        duration = int(_require(entry, "duration", where))
        if not 5 <= duration <= 480:
            raise ValueError(f"{where}: duration must be 5-480 minutes")
        step = entry.get("step")
        types.append(AppointmentType(
            id=str(_require(entry, "id", where)),
            name=str(entry.get("name") or entry["id"]),
            duration=dt.timedelta(minutes=duration),
            provider_ids=tuple(str(p) for p in entry.get("providers") or provider_ids),
            step=None if step is None else dt.timedelta(minutes=int(step)),
            keywords=tuple(str(k) for k in entry.get("keywords") or ()),
            phone_bookable=bool(entry.get("phone_bookable", True)),
        ))

    exceptions: list[AvailabilityException] = []
    for i, entry in enumerate(doc.get("exceptions") or []):
        where = f"{source}: exceptions[{i}]"
        provider = entry.get("provider")
        if provider is not None and provider not in provider_ids:
            raise ValueError(f"{where}: unknown provider {provider!r}")
        begins = _moment(_require(entry, "from", where), tz, where)
        ends = _moment(_require(entry, "to", where), tz, where)
        kind = str(entry.get("kind") or "unavailable")
        if kind not in ("unavailable", "available") or begins >= ends:
            raise ValueError(f"{where}: kind must be unavailable/available and from < to")
        exceptions.append(
            AvailabilityException(begins, ends, kind, provider, entry.get("location"), str(entry.get("reason") or ""))
        )

    patients = [_patient(e, f"{source}: patients[{i}]", country) for i, e in enumerate(doc.get("patients") or [])]
    csv_name = doc.get("patients_csv")
    if csv_name:
        path = (base_dir or Path(".")) / str(csv_name)
        try:
            csv_text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{source}: cannot read patients_csv {path}: {exc.strerror}") from None
        patients.extend(parse_patients_csv(csv_text, str(path), country))
    for patient in patients:
        if patient.usual_provider_id is not None and patient.usual_provider_id not in provider_ids:
            raise ValueError(f"{source}: patient {patient.record_number}: unknown usual_provider")
    return ClinicData(
        tz, locations, tuple(providers), tuple(types), tuple(templates), tuple(exceptions), tuple(patients)
    )


def load_clinic_file(path: Path) -> ClinicData:
    """Read and parse a clinic YAML file (blocking: call it via ``asyncio.to_thread``)."""
    return parse_clinic_data(path.read_text(encoding="utf-8"), str(path), path.parent)


@dataclass(frozen=True, slots=True)
class ImportCounts:
    providers: int
    types: int
    templates: int
    exceptions: int
    patients: int


async def import_clinic_data(pool: asyncpg.Pool, data: ClinicData) -> ImportCounts:
    """Write ``data`` in one transaction (all or nothing)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE scheduling_settings SET timezone = $1, updated_at = now()", data.timezone.key)
        await conn.executemany(
            "INSERT INTO locations (id, name, address) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, address = EXCLUDED.address",
            [(loc.id, loc.name, loc.address) for loc in data.locations],
        )
        await conn.executemany(
            "INSERT INTO providers (id, name, aliases, location_id, active) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, aliases = EXCLUDED.aliases,"
            " location_id = EXCLUDED.location_id, active = EXCLUDED.active",
            [(p.id, p.name, list(p.aliases), p.location_id, p.active) for p in data.providers],
        )
        provider_ids = [p.id for p in data.providers]
        await conn.execute("DELETE FROM availability_templates WHERE provider_id = ANY($1::text[])", provider_ids)
        await conn.executemany(
            "INSERT INTO availability_templates (provider_id, location_id, weekday, start_time, end_time,"
            " valid_from, valid_until) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                (t.provider_id, t.location_id, t.weekday, t.start, t.end, t.valid_from, t.valid_until)
                for t in data.templates
            ],
        )
        await conn.executemany(
            "INSERT INTO appointment_types (id, name, duration_minutes, step_minutes, keywords, phone_bookable)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
            " duration_minutes = EXCLUDED.duration_minutes, step_minutes = EXCLUDED.step_minutes,"
            " keywords = EXCLUDED.keywords, phone_bookable = EXCLUDED.phone_bookable",
            [(t.id, t.name, t.duration // dt.timedelta(minutes=1),
              None if t.step is None else t.step // dt.timedelta(minutes=1), list(t.keywords), t.phone_bookable)
             for t in data.types],
        )
        await conn.execute(
            "DELETE FROM appointment_type_providers WHERE type_id = ANY($1::text[])", [t.id for t in data.types]
        )
        await conn.executemany(
            "INSERT INTO appointment_type_providers (type_id, provider_id) VALUES ($1, $2)",
            [(t.id, p) for t in data.types for p in t.provider_ids],
        )
        # Exceptions have no natural key: the file is the list, so replace what it covers.
        await conn.execute(
            "DELETE FROM availability_exceptions WHERE provider_id IS NULL OR provider_id = ANY($1::text[])",
            provider_ids,
        )
        await conn.executemany(
            "INSERT INTO availability_exceptions (provider_id, location_id, during, kind, reason)"
            " VALUES ($1, $2, tstzrange($3, $4, '[)'), $5, $6)",
            [(e.provider_id, e.location_id, e.start, e.end, e.kind, e.reason) for e in data.exceptions],
        )
        for patient in data.patients:
            patient_id = await conn.fetchval(
                "INSERT INTO patients (record_number, first_name, last_name, date_of_birth, preferred_language,"
                " usual_provider_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (record_number) DO UPDATE SET"
                " first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,"
                " date_of_birth = EXCLUDED.date_of_birth, preferred_language = EXCLUDED.preferred_language,"
                " usual_provider_id = EXCLUDED.usual_provider_id RETURNING id",
                patient.record_number, patient.first_name, patient.last_name, patient.date_of_birth,
                patient.preferred_language, patient.usual_provider_id,
            )
            await conn.execute("DELETE FROM patient_phones WHERE patient_id = $1", patient_id)
            await conn.executemany(
                "INSERT INTO patient_phones (patient_id, number) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                [(patient_id, number) for number in dict.fromkeys(patient.phones)],
            )
    return ImportCounts(
        len(data.providers), len(data.types), len(data.templates), len(data.exceptions), len(data.patients)
    )

