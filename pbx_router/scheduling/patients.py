"""Patients on PostgreSQL: caller lookup, the facts routing rules use, and caller verification.

Facts for rules (``known_patient``, ``upcoming_today``, ``no_show_count``) are computed from the
caller ID *before* verification; rules may use them to route, but nothing derived from them may be
said to the caller until ``VerificationSession`` reports ``VERIFIED``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import asyncpg

from pbx_router.log import get_logger
from pbx_router.scheduling import verification
from pbx_router.scheduling.model import Appointment, Patient
from pbx_router.scheduling.service import APPOINTMENT_COLUMNS, appointment_from_row
from pbx_router.scheduling.verification import (
    Candidate,
    Decision,
    Outcome,
    VerificationPolicy,
    normalize_number,
)

log = get_logger(__name__)

_PATIENT_COLUMNS = (
    "p.id, p.record_number, p.first_name, p.last_name, p.date_of_birth, p.preferred_language,"
    " p.usual_provider_id, coalesce((SELECT array_agg(number ORDER BY number) FROM patient_phones"
    " WHERE patient_id = p.id), '{}') AS phones"
)


def _patient(row: asyncpg.Record) -> Patient:
    return Patient(
        id=row["id"],
        record_number=row["record_number"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        date_of_birth=row["date_of_birth"],
        phones=tuple(row["phones"]),
        preferred_language=row["preferred_language"],
        usual_provider_id=row["usual_provider_id"],
    )


@dataclass(frozen=True, slots=True)
class CallerFacts:
    """What rules may know about a caller ID (any patient on the number)."""

    known_patient: bool = False
    upcoming_today: bool = False
    no_show_count: int = 0
    preferred_language: str | None = None


class PatientDirectory:
    def __init__(
        self,
        pool: asyncpg.Pool,
        tz: ZoneInfo,
        *,
        policy: VerificationPolicy = VerificationPolicy(),
        default_country_code: str = "1",
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.pool = pool
        self.tz = tz
        self.policy = policy
        self.default_country_code = default_country_code
        self._clock = clock

    def normalize(self, number: str | None) -> str | None:
        return normalize_number(number, self.default_country_code)

    async def get(self, patient_id: int) -> Patient | None:
        row = await self.pool.fetchrow(f"SELECT {_PATIENT_COLUMNS} FROM patients p WHERE p.id = $1", patient_id)
        return None if row is None else _patient(row)

    async def by_record_number(self, record_number: str) -> Patient | None:
        row = await self.pool.fetchrow(
            f"SELECT {_PATIENT_COLUMNS} FROM patients p WHERE p.record_number = $1", record_number
        )
        return None if row is None else _patient(row)

    async def _patient_ids(self, number: str | None) -> list[int]:
        normalized = self.normalize(number)
        if normalized is None:
            return []
        rows = await self.pool.fetch(
            "SELECT patient_id FROM patient_phones WHERE number = $1 ORDER BY patient_id", normalized
        )
        return [r["patient_id"] for r in rows]

    # -- facts for rules ------------------------------------------------------------------------

    async def is_known_patient(self, number: str | None) -> bool:
        return bool(await self._patient_ids(number))

    async def upcoming_today(self, patient_id: int, now: dt.datetime | None = None) -> list[Appointment]:
        """The patient's booked appointments later today (clinic time zone)."""
        now = now or self._clock()
        local = now.astimezone(self.tz)
        end_of_day = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=self.tz)
        rows = await self.pool.fetch(
            f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE patient_id = $1 AND status = 'booked'"
            f" AND upper(during) > $2 AND lower(during) < $3 ORDER BY lower(during)",
            patient_id, now, end_of_day,
        )
        return [appointment_from_row(r) for r in rows]

    async def no_show_count(self, patient_id: int, since: dt.datetime | None = None) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM appointments WHERE patient_id = $1 AND status = 'no_show'"
                " AND ($2::timestamptz IS NULL OR lower(during) >= $2)",
                patient_id, since,
            )
        )

    async def caller_facts(self, number: str | None, now: dt.datetime | None = None) -> CallerFacts:
        """Facts for the rules from a caller ID (max over the patients sharing the number)."""
        ids = await self._patient_ids(number)
        if not ids:
            return CallerFacts()
        upcoming = False
        no_shows = 0
        for patient_id in ids:
            upcoming = upcoming or bool(await self.upcoming_today(patient_id, now))
            no_shows = max(no_shows, await self.no_show_count(patient_id))
        language = await self.pool.fetchval("SELECT preferred_language FROM patients WHERE id = $1", ids[0])
        return CallerFacts(True, upcoming, no_shows, language)

    async def upcoming(self, patient_id: int, now: dt.datetime | None = None, limit: int = 5) -> list[Appointment]:
        """Booked appointments from now on (what "reschedule/cancel my appointment" acts on)."""
        rows = await self.pool.fetch(
            f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE patient_id = $1 AND status = 'booked'"
            f" AND lower(during) >= $2 ORDER BY lower(during) LIMIT $3",
            patient_id, now or self._clock(), limit,
        )
        return [appointment_from_row(r) for r in rows]

    # -- verification ---------------------------------------------------------------------------

    async def begin_verification(self, number: str | None) -> VerificationSession:
        """Start verifying a caller. Same work, same answers for known and unknown numbers."""
        normalized = self.normalize(number)
        now = self._clock()
        rows = await self.pool.fetch(
            "SELECT p.id, p.date_of_birth FROM patient_phones ph JOIN patients p ON p.id = ph.patient_id"
            " WHERE ph.number = $1 ORDER BY p.id",
            normalized or "",
        )
        prior = await self.pool.fetchval(
            "SELECT count(*) FROM verification_failures WHERE number = $1 AND failed_at > $2",
            normalized or "", now - self.policy.failure_window,
        )
        candidates = tuple(Candidate(r["id"], r["date_of_birth"]) for r in rows)
        return VerificationSession(self, normalized, candidates, verification.start(self.policy, int(prior)))

    async def _record_failure(self, number: str | None) -> None:
        if number is not None:
            await self.pool.execute(
                "INSERT INTO verification_failures (number, failed_at) VALUES ($1, $2)", number, self._clock()
            )


@dataclass
class VerificationSession:
    """One caller's verification. ``decision.outcome`` is RETRY (ask), VERIFIED or TO_HUMAN."""

    _directory: PatientDirectory
    _number: str | None = field(repr=False)
    _candidates: tuple[Candidate, ...] = field(repr=False)
    decision: Decision

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    @property
    def patient_id(self) -> int | None:
        return self.decision.patient_id

    async def submit(self, date_of_birth: dt.date | None) -> Decision:
        """Check one date of birth (None: nothing usable heard). Failures are recorded."""
        self.decision = verification.check(
            self._directory.policy, self.decision.state, date_of_birth, self._candidates
        )
        if self.decision.outcome is not Outcome.VERIFIED:
            await self._directory._record_failure(self._number)
        log.info("caller_verification", outcome=self.decision.outcome.value, attempts=self.decision.state.attempts)
        return self.decision
