"""The scheduling service's error tree: callers catch ``SchedulingError``."""

from __future__ import annotations


class SchedulingError(Exception):
    """A scheduling request could not be carried out."""


class SlotUnavailable(SchedulingError):
    """The slot is taken (another live appointment overlaps it) or not bookable."""


class HoldExpired(SchedulingError):
    """The hold ran out before it was confirmed; the slot may be someone else's now."""


class AppointmentNotFound(SchedulingError):
    """No appointment has that id."""


class InvalidTransition(SchedulingError):
    """The appointment's status does not allow this (e.g. confirming a cancelled one)."""


class IdempotencyMismatch(SchedulingError):
    """An idempotency key was reused for a different request."""


class UnknownReference(SchedulingError):
    """An appointment type, provider or patient that does not exist."""
