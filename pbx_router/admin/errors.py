"""What the admin API can say went wrong, independent of HTTP (the server maps each to a status).

A backend raises these; the server also treats a plain ``ValueError`` as a bad request, so the
domain's validation errors need no wrapping. (A stray ``KeyError`` is a bug: it is a 500.)
"""

from __future__ import annotations


class AdminError(Exception):
    """Base of the admin adapter's errors. ``str(exc)`` is shown to the admin as is."""

    status = 500


class InvalidRequestError(AdminError, ValueError):
    """The request names something impossible (bad field, unknown queue, expiry too far)."""

    status = 400


class AuthError(AdminError):
    """Missing or wrong bearer token."""

    status = 401


class NotFoundError(AdminError, LookupError):
    """No such override, agent or route."""

    status = 404


class ConflictError(AdminError):
    """The thing exists but its state forbids this (a callback someone else claimed, or done)."""

    status = 409


class RejectedError(AdminError):
    """Understood but refused as things stand (e.g. the new rules file does not validate)."""

    status = 422


class UnavailableError(AdminError):
    """The daemon cannot do it right now (database down, rules not configured)."""

    status = 503


class AdminConfigError(AdminError):
    """The server itself is configured unsafely (empty token, public bind) and will not start."""
