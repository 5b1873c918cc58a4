"""The admin adapter: an aiohttp JSON API (token auth, loopback only by default) over the
:class:`AdminBackend` seam, the override core both backends share, its in-memory implementation,
and the blocking client the CLI uses. It imports no call-handling code; ``app.py`` gives it a
backend over the live daemon."""

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
from pbx_router.admin.memory import InMemoryBackend
from pbx_router.admin.overrides import Names, OverrideBackend, OverrideRecorder
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
    "Names",
    "NotFoundError",
    "OverrideBackend",
    "OverrideRecorder",
    "RejectedError",
    "UnavailableError",
    "utc_now",
]
