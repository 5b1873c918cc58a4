"""The admin adapter: an aiohttp JSON API (token auth, loopback only by default) over the
:class:`AdminBackend` seam, its in-memory implementation, and the blocking client the CLI uses.
It imports no call-handling code; ``app.py`` gives it a backend over the live daemon."""

from pbx_router.admin.backend import AdminBackend, Clock, utc_now
from pbx_router.admin.errors import (
    AdminConfigError,
    AdminError,
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RejectedError,
    UnavailableError,
)
from pbx_router.admin.memory import InMemoryBackend, OverrideRecorder
from pbx_router.admin.server import AdminServer

__all__ = [
    "AdminBackend",
    "AdminConfigError",
    "AdminError",
    "AdminServer",
    "AuthError",
    "ConflictError",
    "Clock",
    "InMemoryBackend",
    "InvalidRequestError",
    "NotFoundError",
    "OverrideRecorder",
    "RejectedError",
    "UnavailableError",
    "utc_now",
]
