"""Appointment scheduling: pure policy (slots, verification, speech helpers) and the asyncpg
services built on it. Domain modules (model, policy, verification, speech) import no adapter."""

from pbx_router.scheduling.errors import (
    AppointmentNotFound,
    HoldExpired,
    IdempotencyMismatch,
    InvalidTransition,
    SchedulingError,
    SlotUnavailable,
    UnknownReference,
)
from pbx_router.scheduling.model import (
    Appointment,
    AppointmentStatus,
    AppointmentType,
    AvailabilityException,
    Interval,
    Location,
    PartOfDay,
    Patient,
    Provider,
    Slot,
    SlotQuery,
    Source,
    WeeklyTemplate,
)

__all__ = [
    "Appointment",
    "AppointmentNotFound",
    "AppointmentStatus",
    "AppointmentType",
    "AvailabilityException",
    "HoldExpired",
    "IdempotencyMismatch",
    "Interval",
    "InvalidTransition",
    "Location",
    "PartOfDay",
    "Patient",
    "Provider",
    "SchedulingError",
    "Slot",
    "SlotQuery",
    "SlotUnavailable",
    "Source",
    "UnknownReference",
    "WeeklyTemplate",
]
