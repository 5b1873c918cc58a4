"""PostgreSQL storage: the embedded server (default) or a configured one, versioned migrations,
the ``calls`` repository and the non-blocking call recorder with its on-disk spool."""

from pbx_router.store.callbacks import Callback, CallbackRepository
from pbx_router.store.calls import CallRecord, CallRepository
from pbx_router.store.embedded import EmbeddedPostgres
from pbx_router.store.errors import (
    CallbackConflictError,
    CallbackNotFoundError,
    EmbeddedPostgresError,
    MigrationError,
    StoreError,
)
from pbx_router.store.recorder import CallRecorder, RecorderStats
from pbx_router.store.store import Store

__all__ = [
    "CallRecord",
    "CallRecorder",
    "CallRepository",
    "Callback",
    "CallbackConflictError",
    "CallbackNotFoundError",
    "CallbackRepository",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "MigrationError",
    "RecorderStats",
    "Store",
    "StoreError",
]
