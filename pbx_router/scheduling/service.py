"""The scheduling service: slots, holds, bookings, changes and cancellations on PostgreSQL.

Concurrency rule: nothing here checks "is the slot free?" and then writes. The write is attempted
and the database's exclusion constraint (``appointments_no_overlap``) decides; the loser gets
``SlotUnavailable``. That is what makes 100 callers grabbing one slot end with exactly one hold.

Round trips matter (the benchmark wants >= 500 hold+confirm/s): a hold is one statement, a
confirm is one statement. Expired holds still sit in the constraint until swept, so a hold that
collides sweeps expired holds in its range and tries once more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import asyncpg

from pbx_router.log import get_logger
from pbx_router.scheduling.errors import (
    AppointmentNotFound,
    HoldExpired,
    IdempotencyMismatch,
    InvalidTransition,
    SlotUnavailable,
    UnknownReference,
)
from pbx_router.scheduling.model import (
    Appointment,
    AppointmentStatus,
    AppointmentType,
    AvailabilityException,
    Interval,
    Provider,
    Slot,
    SlotQuery,
    Source,
    WeeklyTemplate,
)
from pbx_router.scheduling.policy import generate_slots

log = get_logger(__name__)

Clock = Callable[[], dt.datetime]
StepHook = Callable[[str], Awaitable[None]]

LIVE = ("held", "booked")
APPOINTMENT_COLUMNS = (
    "id, patient_id, provider_id, location_id, type_id, lower(during) AS start_at,"
    " upper(during) AS end_at, status, source, hold_expires_at, replaces_id, cancel_reason, call_id"
)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def appointment_from_row(row: asyncpg.Record) -> Appointment:
    return Appointment(
        id=row["id"],
        patient_id=row["patient_id"],
        provider_id=row["provider_id"],
        type_id=row["type_id"],
        start=row["start_at"],
        end=row["end_at"],
        status=AppointmentStatus(row["status"]),
        source=Source(row["source"]),
        location_id=row["location_id"],
        hold_expires_at=row["hold_expires_at"],
        replaces_id=row["replaces_id"],
        cancel_reason=row["cancel_reason"],
        call_id=row["call_id"],
    )


@dataclass(frozen=True, slots=True)
class Reference:
    """Clinic data that changes rarely (reloaded every ``cache_ttl``, or on ``invalidate()``)."""

    types: dict[str, AppointmentType]
    providers: dict[str, Provider]
    templates: tuple[WeeklyTemplate, ...]
    exceptions: tuple[AvailabilityException, ...]


async def load_reference(conn: asyncpg.Connection | asyncpg.Pool, since: dt.datetime) -> Reference:
    type_rows = await conn.fetch(
        "SELECT t.id, t.name, t.duration_minutes, t.step_minutes, t.keywords, t.phone_bookable,"
        " coalesce(array_agg(tp.provider_id ORDER BY tp.provider_id)"
        "          FILTER (WHERE tp.provider_id IS NOT NULL), '{}') AS provider_ids"
        " FROM appointment_types t LEFT JOIN appointment_type_providers tp ON tp.type_id = t.id"
        " LEFT JOIN providers p ON p.id = tp.provider_id AND p.active"
        " GROUP BY t.id ORDER BY t.id"
    )
    provider_rows = await conn.fetch("SELECT id, name, aliases, location_id, active FROM providers ORDER BY id")
    template_rows = await conn.fetch(
        "SELECT provider_id, weekday, start_time, end_time, location_id, valid_from, valid_until"
        " FROM availability_templates ORDER BY provider_id, weekday, start_time"
    )
    exception_rows = await conn.fetch(
        "SELECT provider_id, location_id, lower(during) AS start_at, upper(during) AS end_at, kind, reason"
        " FROM availability_exceptions WHERE upper(during) > $1 ORDER BY lower(during)",
        since,
    )
    active = {r["id"] for r in provider_rows if r["active"]}
    return Reference(
        types={
            r["id"]: AppointmentType(
                id=r["id"],
                name=r["name"],
                duration=dt.timedelta(minutes=r["duration_minutes"]),
                provider_ids=tuple(p for p in r["provider_ids"] if p in active),
                step=None if r["step_minutes"] is None else dt.timedelta(minutes=r["step_minutes"]),
                keywords=tuple(r["keywords"]),
                phone_bookable=r["phone_bookable"],
            )
            for r in type_rows
        },
        providers={
            r["id"]: Provider(r["id"], r["name"], tuple(r["aliases"]), r["location_id"], r["active"])
            for r in provider_rows
        },
        templates=tuple(
            WeeklyTemplate(
                r["provider_id"], r["weekday"], r["start_time"], r["end_time"], r["location_id"],
                r["valid_from"], r["valid_until"],
            )
            for r in template_rows
        ),
        exceptions=tuple(
            AvailabilityException(
                r["start_at"], r["end_at"], r["kind"], r["provider_id"], r["location_id"], r["reason"]
            )
            for r in exception_rows
        ),
    )


async def load_timezone(pool: asyncpg.Pool) -> ZoneInfo:
    """The clinic's time zone as stored by the clinic-data loader."""
    name = await pool.fetchval("SELECT timezone FROM scheduling_settings")
    return ZoneInfo(name or "UTC")


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


class SchedulingService:
    """Create with ``await SchedulingService.create(pool)`` (reads the clinic time zone) or
    directly with a ``tz``. ``clock`` is injectable so tests move time instead of sleeping;
    ``on_step`` is called between the steps of multi-step operations (tests simulate a crash
    there)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tz: ZoneInfo,
        *,
        hold_ttl: dt.timedelta = dt.timedelta(minutes=5),
        min_notice: dt.timedelta = dt.timedelta(minutes=30),
        cache_ttl: float = 30.0,
        clock: Clock = _utc_now,
        on_step: StepHook | None = None,
    ) -> None:
        self.pool = pool
        self.tz = tz
        self.hold_ttl = hold_ttl
        self.min_notice = min_notice
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._on_step = on_step
        self._reference: Reference | None = None
        self._loaded_at = 0.0
        self._reference_lock = asyncio.Lock()

    @classmethod
    async def create(cls, pool: asyncpg.Pool, **options: object) -> SchedulingService:
        return cls(pool, await load_timezone(pool), **options)  # type: ignore[arg-type]

    def now(self) -> dt.datetime:
        return self._clock()

    # -- reference data -------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget cached clinic data (after the loader changed it)."""
        self._reference = None

    async def reference(self) -> Reference:
        if self._reference is not None and time.monotonic() - self._loaded_at < self._cache_ttl:
            return self._reference
        async with self._reference_lock:
            if self._reference is None or time.monotonic() - self._loaded_at >= self._cache_ttl:
                self._reference = await load_reference(self.pool, self.now() - dt.timedelta(days=1))
                self._loaded_at = time.monotonic()
        return self._reference

    async def appointment_type(self, type_id: str) -> AppointmentType:
        ref = await self.reference()
        try:
            return ref.types[type_id]
        except KeyError:
            raise UnknownReference(f"unknown appointment type {type_id!r}") from None

    # -- slots ----------------------------------------------------------------------------------

    async def find_slots(self, query: SlotQuery, limit: int = 3) -> list[Slot]:
        """The next ``limit`` free slots for ``query``, earliest first."""
        ref = await self.reference()
        appointment_type = await self.appointment_type(query.type_id)
        now = self.now()
        start = max(now, query.earliest or now)
        providers = [p for p in appointment_type.provider_ids if query.provider_id in (None, p)]
        # Most searches are answered within two weeks: fetch that much busy time first.
        for span in (min(dt.timedelta(days=14), query.horizon), query.horizon):
            busy = await self._busy(providers, start, start + span + dt.timedelta(days=1), now)
            narrowed = SlotQuery(
                query.type_id, query.provider_id, query.days, query.weekdays, query.part_of_day,
                query.earliest, span,
            )
            slots = generate_slots(
                narrowed, appointment_type, ref.templates, ref.exceptions, busy, self.tz, now,
                limit=limit, min_notice=self.min_notice,
            )
            if len(slots) >= limit or span >= query.horizon:
                return slots
        return slots  # pragma: no cover - the loop always returns

    async def _busy(
        self, providers: Sequence[str], start: dt.datetime, end: dt.datetime, now: dt.datetime
    ) -> dict[str, list[Interval]]:
        rows = await self.pool.fetch(
            "SELECT provider_id, lower(during) AS s, upper(during) AS e FROM appointments"
            " WHERE provider_id = ANY($1::text[]) AND status IN ('held', 'booked')"
            " AND during && tstzrange($2, $3) AND (status = 'booked' OR hold_expires_at > $4)",
            list(providers), start, end, now,
        )
        busy: dict[str, list[Interval]] = {}
        for row in rows:
            busy.setdefault(row["provider_id"], []).append(Interval(row["s"], row["e"]))
        return busy

    async def _check_bookable(self, slot: Slot) -> None:
        """A phone booking must be a slot the policy would offer (ignoring who holds it: the
        constraint settles that). Staff may book anything that does not overlap."""
        appointment_type = await self.appointment_type(slot.type_id)
        # In UTC: Python subtracts same-zone aware datetimes as wall-clock times (wrong across DST).
        if slot.end.astimezone(dt.UTC) - slot.start.astimezone(dt.UTC) != appointment_type.duration:
            raise SlotUnavailable("slot length does not match the appointment type")
        ref = await self.reference()
        local_day = slot.start.astimezone(self.tz).date()
        candidates = generate_slots(
            SlotQuery(slot.type_id, slot.provider_id, days=frozenset({local_day}), earliest=slot.start,
                      horizon=dt.timedelta(days=1)),
            appointment_type, ref.templates, ref.exceptions, {}, self.tz, self.now(),
            limit=1, min_notice=dt.timedelta(0),
        )
        if not candidates or candidates[0].start != slot.start:
            raise SlotUnavailable("not a bookable slot")

    # -- holds and bookings ---------------------------------------------------------------------

    async def hold(
        self,
        slot: Slot,
        patient_id: int,
        *,
        idempotency_key: str | None = None,
        source: Source = Source.PHONE,
        call_id: str | None = None,
    ) -> Appointment:
        """Hold ``slot`` for ``hold_ttl``. Raises ``SlotUnavailable`` when it is taken. A request
        retried with the same ``idempotency_key`` returns the first hold."""
        if source is Source.PHONE:
            await self._check_bookable(slot)
        return await self._insert(slot, patient_id, AppointmentStatus.HELD, idempotency_key, source, call_id, "hold")

    async def book(
        self,
        slot: Slot,
        patient_id: int,
        *,
        idempotency_key: str | None = None,
        source: Source = Source.STAFF,
        call_id: str | None = None,
    ) -> Appointment:
        """Book directly (staff, imports): no hold step."""
        if source is Source.PHONE:
            await self._check_bookable(slot)
        return await self._insert(slot, patient_id, AppointmentStatus.BOOKED, idempotency_key, source, call_id, "book")

    async def _insert(
        self,
        slot: Slot,
        patient_id: int,
        status: AppointmentStatus,
        key: str | None,
        source: Source,
        call_id: str | None,
        operation: str,
    ) -> Appointment:
        fingerprint = _fingerprint(operation, slot.provider_id, slot.type_id, slot.start.isoformat(), patient_id)
        for attempt in range(2):
            now = self.now()
            expires = now + self.hold_ttl if status is AppointmentStatus.HELD else None
            try:
                row = await self.pool.fetchrow(_INSERT_SQL, patient_id, slot.provider_id, slot.location_id,
                                               slot.type_id, slot.start, slot.end, status.value, expires,
                                               source.value, call_id, now, key, operation, fingerprint)
            except asyncpg.ExclusionViolationError:
                if key is not None and (existing := await self._replay(key, operation, fingerprint)):
                    return existing
                if attempt == 0 and await self._sweep_range(slot, now):
                    continue  # an expired hold was in the way; it is gone now
                raise SlotUnavailable("the slot is taken") from None
            except asyncpg.UniqueViolationError:  # the same key raced us and won
                if key is not None and (existing := await self._replay(key, operation, fingerprint)):
                    return existing
                raise
            except asyncpg.ForeignKeyViolationError as exc:
                raise UnknownReference(f"unknown patient, provider, location or type: {exc.constraint_name}") from None
            if row is None:  # the key was already used: return what it produced
                existing = await self._replay(key, operation, fingerprint) if key else None
                if existing is None:
                    raise IdempotencyMismatch("idempotency key already used")
                return existing
            appointment = appointment_from_row(row)
            log.info("appointment_" + operation, appointment_id=appointment.id, provider=slot.provider_id,
                     source=source.value)
            return appointment
        raise SlotUnavailable("the slot is taken")  # pragma: no cover - loop returns or raises

    async def _replay(self, key: str, operation: str, fingerprint: str) -> Appointment | None:
        row = await self.pool.fetchrow(
            "SELECT operation, fingerprint, appointment_id FROM scheduling_requests WHERE key = $1", key
        )
        if row is None:
            return None
        if row["operation"] != operation or row["fingerprint"] != fingerprint:
            raise IdempotencyMismatch(f"idempotency key reused for a different {row['operation']} request")
        return await self.get(row["appointment_id"])

    async def _sweep_range(self, slot: Slot, now: dt.datetime) -> int:
        result = await self.pool.execute(
            "UPDATE appointments SET status = 'expired', updated_at = $4"
            " WHERE provider_id = $1 AND status = 'held' AND hold_expires_at <= $4"
            " AND during && tstzrange($2, $3)",
            slot.provider_id, slot.start, slot.end, now,
        )
        return int(result.split()[-1])

    async def confirm(self, appointment_id: int) -> Appointment:
        """Turn a live hold into a booking. Confirming a booking again returns it unchanged."""
        now = self.now()
        row = await self.pool.fetchrow(
            f"UPDATE appointments SET status = 'booked', hold_expires_at = NULL, updated_at = $2"
            f" WHERE id = $1 AND (status = 'booked' OR (status = 'held' AND hold_expires_at > $2))"
            f" RETURNING {APPOINTMENT_COLUMNS}",
            appointment_id, now,
        )
        if row is not None:
            return appointment_from_row(row)
        current = await self.get(appointment_id)
        if current is None:
            raise AppointmentNotFound(f"no appointment {appointment_id}")
        if current.status in (AppointmentStatus.HELD, AppointmentStatus.EXPIRED):
            raise HoldExpired(f"hold {appointment_id} expired")
        raise InvalidTransition(f"appointment {appointment_id} is {current.status.value}")

    async def cancel(self, appointment_id: int, reason: str = "") -> Appointment:
        """Cancel a hold or booking (idempotent: cancelling again returns it)."""
        row = await self.pool.fetchrow(
            f"UPDATE appointments SET status = 'cancelled', cancel_reason = $2, hold_expires_at = NULL,"
            f" updated_at = $3 WHERE id = $1 AND status IN ('held', 'booked') RETURNING {APPOINTMENT_COLUMNS}",
            appointment_id, reason, self.now(),
        )
        if row is not None:
            log.info("appointment_cancelled", appointment_id=appointment_id)
            return appointment_from_row(row)
        current = await self.get(appointment_id)
        if current is None:
            raise AppointmentNotFound(f"no appointment {appointment_id}")
        if current.status in (AppointmentStatus.CANCELLED, AppointmentStatus.EXPIRED):
            return current
        raise InvalidTransition(f"appointment {appointment_id} is {current.status.value}")

    async def mark_no_show(self, appointment_id: int) -> Appointment:
        row = await self.pool.fetchrow(
            f"UPDATE appointments SET status = 'no_show', updated_at = $2 WHERE id = $1"
            f" AND status IN ('booked', 'no_show') RETURNING {APPOINTMENT_COLUMNS}",
            appointment_id, self.now(),
        )
        if row is None:
            current = await self.get(appointment_id)
            if current is None:
                raise AppointmentNotFound(f"no appointment {appointment_id}")
            raise InvalidTransition(f"appointment {appointment_id} is {current.status.value}")
        return appointment_from_row(row)

    async def modify(
        self,
        appointment_id: int,
        new_slot: Slot,
        *,
        idempotency_key: str | None = None,
        source: Source = Source.PHONE,
        call_id: str | None = None,
    ) -> Appointment:
        """Move a booking to ``new_slot`` in one transaction: the old one is released and the new
        one booked, or (on any failure, including the process dying) nothing changes."""
        if source is Source.PHONE:
            await self._check_bookable(new_slot)
        fingerprint = _fingerprint("modify", appointment_id, new_slot.provider_id, new_slot.start.isoformat())
        if idempotency_key is not None and (existing := await self._replay(idempotency_key, "modify", fingerprint)):
            return existing
        now = self.now()
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    old = await conn.fetchrow(
                        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE id = $1 FOR UPDATE", appointment_id
                    )
                    if old is None:
                        raise AppointmentNotFound(f"no appointment {appointment_id}")
                    if old["status"] not in LIVE:
                        raise InvalidTransition(f"appointment {appointment_id} is {old['status']}")
                    await conn.execute(
                        "UPDATE appointments SET status = 'cancelled', cancel_reason = 'rescheduled',"
                        " hold_expires_at = NULL, updated_at = $2 WHERE id = $1",
                        appointment_id, now,
                    )
                    await self._step("released")
                    await conn.execute(
                        "UPDATE appointments SET status = 'expired', updated_at = $4"
                        " WHERE provider_id = $1 AND status = 'held' AND hold_expires_at <= $4"
                        " AND during && tstzrange($2, $3)",
                        new_slot.provider_id, new_slot.start, new_slot.end, now,
                    )
                    row = await conn.fetchrow(
                        f"INSERT INTO appointments (patient_id, provider_id, location_id, type_id, during, status,"
                        f" source, call_id, replaces_id, created_at, updated_at)"
                        f" VALUES ($1, $2, $3, $4, tstzrange($5, $6, '[)'), 'booked', $7, $8, $9, $10, $10)"
                        f" RETURNING {APPOINTMENT_COLUMNS}",
                        old["patient_id"], new_slot.provider_id, new_slot.location_id, new_slot.type_id,
                        new_slot.start, new_slot.end, source.value, call_id, appointment_id, now,
                    )
                    assert row is not None  # a plain INSERT ... RETURNING returns its row or raises
                    await self._step("booked")
                    if idempotency_key is not None:
                        await conn.execute(
                            "INSERT INTO scheduling_requests (key, operation, fingerprint, appointment_id, created_at)"
                            " VALUES ($1, 'modify', $2, $3, $4)",
                            idempotency_key, fingerprint, row["id"], now,
                        )
            except asyncpg.ExclusionViolationError:
                raise SlotUnavailable("the new slot is taken") from None
            except asyncpg.UniqueViolationError:
                if idempotency_key is not None and (
                    existing := await self._replay(idempotency_key, "modify", fingerprint)
                ):
                    return existing
                raise
        log.info("appointment_modified", appointment_id=row["id"], replaces=appointment_id)
        return appointment_from_row(row)

    async def _step(self, name: str) -> None:
        if self._on_step is not None:
            await self._on_step(name)

    # -- housekeeping and reads -----------------------------------------------------------------

    async def sweep_expired_holds(self) -> int:
        """Mark every hold past its expiry as expired; returns how many."""
        result = await self.pool.execute(
            "UPDATE appointments SET status = 'expired', updated_at = $1"
            " WHERE status = 'held' AND hold_expires_at <= $1",
            self.now(),
        )
        swept = int(result.split()[-1])
        if swept:
            log.info("holds_expired", count=swept)
        return swept

    async def run_sweeper(self, interval: float = 30.0) -> None:
        """Sweep expired holds forever (a task in the app's TaskGroup; cancel to stop)."""
        while True:
            try:
                await self.sweep_expired_holds()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("hold_sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(interval)

    async def get(self, appointment_id: int) -> Appointment | None:
        row = await self.pool.fetchrow(f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE id = $1", appointment_id)
        return None if row is None else appointment_from_row(row)

    async def list_appointments(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        provider_id: str | None = None,
        patient_id: int | None = None,
        statuses: Sequence[AppointmentStatus] = (AppointmentStatus.HELD, AppointmentStatus.BOOKED),
    ) -> list[Appointment]:
        rows = await self.pool.fetch(
            f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE during && tstzrange($1, $2)"
            f" AND ($3::text IS NULL OR provider_id = $3) AND ($4::bigint IS NULL OR patient_id = $4)"
            f" AND status = ANY($5::text[]) ORDER BY lower(during), provider_id",
            start, end, provider_id, patient_id, [s.value for s in statuses],
        )
        return [appointment_from_row(r) for r in rows]


# One statement: the appointment (unless the idempotency key is already used) and its key row.
_INSERT_SQL = f"""
WITH appt AS (
    INSERT INTO appointments (patient_id, provider_id, location_id, type_id, during, status,
                              hold_expires_at, source, call_id, created_at, updated_at)
    SELECT $1, $2, $3, $4, tstzrange($5, $6, '[)'), $7, $8, $9, $10, $11, $11
    WHERE $12::text IS NULL OR NOT EXISTS (SELECT 1 FROM scheduling_requests WHERE key = $12)
    RETURNING *
), req AS (
    INSERT INTO scheduling_requests (key, operation, fingerprint, appointment_id, created_at)
    SELECT $12, $13, $14, id, $11 FROM appt WHERE $12::text IS NOT NULL
)
SELECT {APPOINTMENT_COLUMNS} FROM appt
"""
