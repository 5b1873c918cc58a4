"""The ``overrides`` table: every staff override ever made (the audit record), and the active
ones a restarted daemon loads back.

Ids are the domain's uuid hex strings; PostgreSQL stores them as ``uuid``. Writes are idempotent
(saving the same override twice, or cancelling twice, changes nothing the second time), so a
caller may retry after a timeout without doubling the record.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from pbx_router.log import get_logger
from pbx_router.queues.overrides import Override
from pbx_router.store.conn import DbConnection
from pbx_router.store.errors import StoreError
from pbx_router.store.store import CONNECTION_ERRORS

log = get_logger(__name__)
T = TypeVar("T")

_COLUMNS = (
    "id, kind, scope, target::text AS target, author, reason, created_at, expires_at,"
    " cancelled_at, cancelled_by, cancel_reason"
)


@dataclass(frozen=True, slots=True)
class OverrideRecord:
    """One row of the record: the override as made, and how it ended if it was cancelled."""

    override: Override
    cancelled_at: dt.datetime | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.override.to_dict(),
            "cancelled_at": self.cancelled_at.isoformat() if self.cancelled_at else None,
            "cancelled_by": self.cancelled_by,
            "cancel_reason": self.cancel_reason,
        }


def _uuid(override_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(override_id)
    except ValueError:
        raise ValueError(f"override id {override_id!r} is not a uuid") from None


def _override(row: asyncpg.Record) -> Override:
    """Raises ValueError/TypeError for a row the domain cannot accept."""
    target = None if row["target"] is None else json.loads(row["target"])
    if target is not None and not isinstance(target, str):
        raise ValueError(f"target must be a string, got {type(target).__name__}")
    return Override(
        kind=row["kind"],
        scope=row["scope"],
        target=target,
        author=row["author"],
        reason=row["reason"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        id=row["id"].hex,
    )


class OverrideRepository:
    """Reads and writes of ``overrides`` over the store's pool. Database failures raise
    ``StoreError`` (the admin API reports them as "could not record, nothing changed")."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save(self, override: Override) -> bool:
        """Record a new override; False if that id was recorded already (a retry)."""
        async def run(conn: DbConnection) -> bool:
            status = await conn.execute(
                "INSERT INTO overrides (id, kind, scope, target, author, reason, created_at, expires_at)"
                " VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                _uuid(override.id), override.kind, override.scope,
                None if override.target is None else json.dumps(override.target),
                override.author, override.reason, override.created_at, override.expires_at,
            )
            return bool(status.endswith(" 1"))

        return await self._run("save", run)

    async def cancel(self, override_id: str, author: str, reason: str, at: dt.datetime) -> bool:
        """End an override at ``at``; False if there is no such override still in force then."""
        async def run(conn: DbConnection) -> bool:
            row = await conn.fetchrow(
                "UPDATE overrides SET cancelled_at = $2, cancelled_by = $3, cancel_reason = $4"
                " WHERE id = $1 AND cancelled_at IS NULL AND expires_at > $2 RETURNING id",
                _uuid(override_id), at, author, reason,
            )
            return row is not None

        return await self._run("cancel", run)

    async def active(self, now: dt.datetime) -> list[Override]:
        """Overrides neither cancelled nor expired at ``now``, oldest first. Rows the domain
        rejects (edited by hand, or from a newer version) are skipped and logged."""
        async def run(conn: DbConnection) -> list[asyncpg.Record]:
            return list(await conn.fetch(
                f"SELECT {_COLUMNS} FROM overrides WHERE cancelled_at IS NULL AND expires_at > $1"
                " ORDER BY created_at, id",
                now,
            ))

        out: list[Override] = []
        for row in await self._run("active", run):
            try:
                out.append(_override(row))
            except (ValueError, TypeError) as exc:
                log.warning("override_row_skipped", override_id=str(row["id"]), problem=str(exc))
        return out

    async def history(self, limit: int = 100) -> list[OverrideRecord]:
        """The newest ``limit`` overrides ever made, newest first (unreadable rows skipped)."""
        async def run(conn: DbConnection) -> list[asyncpg.Record]:
            return list(await conn.fetch(
                f"SELECT {_COLUMNS} FROM overrides ORDER BY created_at DESC, id LIMIT $1", max(0, limit),
            ))

        out: list[OverrideRecord] = []
        for row in await self._run("history", run):
            try:
                override = _override(row)
            except (ValueError, TypeError) as exc:
                log.warning("override_row_skipped", override_id=str(row["id"]), problem=str(exc))
                continue
            out.append(OverrideRecord(override, row["cancelled_at"], row["cancelled_by"], row["cancel_reason"]))
        return out

    async def _run(self, what: str, query: Callable[[DbConnection], Awaitable[T]]) -> T:
        try:
            async with self._pool.acquire() as conn:
                return await query(conn)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise StoreError(f"overrides {what} failed: {type(exc).__name__}: {exc}") from exc
