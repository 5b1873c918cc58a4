"""Plain data of the scheduling domain. No I/O; every datetime here is timezone-aware."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field


class PartOfDay(enum.StrEnum):
    MORNING = "morning"  # before noon
    AFTERNOON = "afternoon"  # noon to 17:00
    EVENING = "evening"  # 17:00 and later

    @classmethod
    def of(cls, local_time: dt.time) -> PartOfDay:
        if local_time < dt.time(12):
            return cls.MORNING
        if local_time < dt.time(17):
            return cls.AFTERNOON
        return cls.EVENING


class AppointmentStatus(enum.StrEnum):
    HELD = "held"
    BOOKED = "booked"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    EXPIRED = "expired"  # a hold nobody confirmed in time
    COMPLETED = "completed"


class Source(enum.StrEnum):
    PHONE = "phone"
    STAFF = "staff"
    IMPORT = "import"


@dataclass(frozen=True, slots=True)
class Location:
    id: str
    name: str
    address: str = ""


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    aliases: tuple[str, ...] = ()
    location_id: str | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class AppointmentType:
    id: str
    name: str
    duration: dt.timedelta
    provider_ids: tuple[str, ...]
    step: dt.timedelta | None = None  # None: the duration
    keywords: tuple[str, ...] = ()
    phone_bookable: bool = True

    @property
    def slot_step(self) -> dt.timedelta:
        return self.step or self.duration


@dataclass(frozen=True, slots=True)
class WeeklyTemplate:
    """Hours one provider works every ``weekday`` (0 = Monday), in clinic wall-clock time."""

    provider_id: str
    weekday: int
    start: dt.time
    end: dt.time
    location_id: str | None = None
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None  # inclusive

    def applies_on(self, day: dt.date) -> bool:
        if day.weekday() != self.weekday:
            return False
        if self.valid_from is not None and day < self.valid_from:
            return False
        return self.valid_until is None or day <= self.valid_until


@dataclass(frozen=True, slots=True)
class AvailabilityException:
    """``unavailable`` (vacation, blocked time) or ``available`` (extra hours) over [start, end).
    ``provider_id`` None applies to every provider (e.g. the clinic is closed)."""

    start: dt.datetime
    end: dt.datetime
    kind: str  # "unavailable" | "available"
    provider_id: str | None = None
    location_id: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Interval:
    start: dt.datetime
    end: dt.datetime

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return self.start < end and start < self.end


@dataclass(frozen=True, slots=True)
class Slot:
    provider_id: str
    type_id: str
    start: dt.datetime
    end: dt.datetime
    location_id: str | None = None


@dataclass(frozen=True, slots=True)
class SlotQuery:
    """What the caller (or staff) asked for. ``days``: only these dates; ``weekdays``: only these
    weekdays (0 = Monday); ``earliest``: not before this moment (and never before now)."""

    type_id: str
    provider_id: str | None = None
    days: frozenset[dt.date] = frozenset()
    weekdays: frozenset[int] = frozenset()
    part_of_day: PartOfDay | None = None
    earliest: dt.datetime | None = None
    horizon: dt.timedelta = dt.timedelta(days=60)


@dataclass(frozen=True, slots=True)
class Appointment:
    id: int
    patient_id: int
    provider_id: str
    type_id: str
    start: dt.datetime
    end: dt.datetime
    status: AppointmentStatus
    source: Source
    location_id: str | None = None
    hold_expires_at: dt.datetime | None = None
    replaces_id: int | None = None
    cancel_reason: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Patient:
    """PHI throughout: ``repr`` shows only the ids."""

    id: int
    record_number: str
    first_name: str = field(repr=False)
    last_name: str = field(repr=False)
    date_of_birth: dt.date = field(repr=False)
    phones: tuple[str, ...] = field(default=(), repr=False)
    preferred_language: str = "en"
    usual_provider_id: str | None = None
