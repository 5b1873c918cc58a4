"""The store's error tree: callers catch ``StoreError``; the subclasses say which part failed."""

from __future__ import annotations


class StoreError(Exception):
    """The database could not be opened, migrated or used."""


class EmbeddedPostgresError(StoreError):
    """The bundled PostgreSQL server could not be initialised, started or stopped."""


class MigrationError(StoreError):
    """A schema migration is malformed or failed to apply."""


class CallbackNotFoundError(StoreError, LookupError):
    """No callback request has that id."""


class CallbackConflictError(StoreError):
    """The callback request's state forbids the change (claimed by someone else, or done)."""
