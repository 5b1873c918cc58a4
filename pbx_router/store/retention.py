"""Retention: call records, transcripts and spooled records older than ``retention.days`` are
deleted, by a periodic job in the daemon.

What is purged: ``calls`` rows by ``started_at`` (the row holds the caller's number, name,
transcript, decision trace and any callback request), ``callbacks`` by ``called_at`` (whatever
their status), ``verification_failures`` by ``failed_at`` (caller numbers), and spool segments by
their last write. Appointments and the patient directory
are the clinic's scheduling records, not call data, and are left alone.

Bounded: rows go in batches (``batch_size`` per statement, each under its own timeout, so no
long lock), at most ``max_batches`` per table per run; what is left waits for the next run,
which then comes after ``retry_interval`` instead of the full interval. File work runs off the
event loop. Every run logs counts only (``retention_purged``), never what was deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg

from pbx_router.log import get_logger
from pbx_router.store.errors import StoreError
from pbx_router.store.spool import Spool
from pbx_router.store.store import CONNECTION_ERRORS

log = get_logger(__name__)

# (table, timestamp column): the key is ctid so a batch is one index range scan plus deletes.
_TABLES = (("calls", "started_at"), ("callbacks", "called_at"), ("verification_failures", "failed_at"))


class _Pool(Protocol):
    async def execute(self, query: str, *args: object, timeout: float | None = None) -> str: ...


class _HasPool(Protocol):
    @property
    def pool(self) -> asyncpg.Pool: ...


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    calls: int | None  # None: the database could not be reached this run
    callbacks: int | None
    verification_failures: int | None
    spool_segments: int
    spool_records: int
    complete: bool  # False: a bound was hit or the database was away; more to do soon


async def purge_database(
    pool: _Pool, cutoff: datetime, *, batch_size: int = 1000, max_batches: int = 500,
    statement_timeout: float = 30.0,
) -> tuple[dict[str, int], bool]:
    """Delete rows older than ``cutoff``; returns ({table: rows}, whether everything went)."""
    counts: dict[str, int] = {}
    complete = True
    for table, column in _TABLES:
        deleted = 0
        try:
            for _ in range(max_batches):
                status = await pool.execute(
                    f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 (fixed names above)
                    f"SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2))",
                    cutoff, batch_size, timeout=statement_timeout,
                )
                rows = int(status.rsplit(" ", 1)[-1])
                deleted += rows
                if rows < batch_size:
                    break
            else:
                complete = False
        except asyncpg.UndefinedTableError:
            continue  # a database migrated by an older version: nothing of that kind stored
        counts[table] = deleted
    return counts, complete


class RetentionJob:
    """Runs ``purge_once`` at start and then every ``interval`` seconds until cancelled."""

    def __init__(
        self,
        store: Callable[[], Awaitable[_HasPool]],
        spool: Spool,
        days: int,
        *,
        interval: float = 24 * 3600.0,
        retry_interval: float = 300.0,
        batch_size: int = 1000,
        max_batches: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if days < 1:
            raise ValueError("retention days must be at least 1")
        self._store = store
        self.spool = spool
        self.days = days
        self.interval = interval
        self.retry_interval = min(retry_interval, interval)
        self.batch_size = batch_size
        self.max_batches = max_batches
        self._clock = clock
        self.runs = 0
        self.last: PurgeResult | None = None

    async def run(self) -> None:
        while True:
            result = await self.purge_once()
            await asyncio.sleep(self.interval if result.complete else self.retry_interval)

    async def purge_once(self) -> PurgeResult:
        now = self._clock()
        cutoff = datetime.fromtimestamp(now, UTC) - timedelta(days=self.days)
        segments, records = await asyncio.to_thread(self.spool.purge_older_than, cutoff.timestamp())
        counts: dict[str, int] = {}
        complete = False
        try:
            store = await self._store()
            counts, complete = await purge_database(
                store.pool, cutoff, batch_size=self.batch_size, max_batches=self.max_batches
            )
        except (*CONNECTION_ERRORS, ConnectionError, StoreError, asyncpg.PostgresError) as exc:
            # Retried after retry_interval; the error's type only (its text may quote data).
            log.warning("retention_database_unavailable", error=type(exc).__name__)
        result = PurgeResult(
            cutoff=cutoff, calls=counts.get("calls"), callbacks=counts.get("callbacks"),
            verification_failures=counts.get("verification_failures"),
            spool_segments=segments, spool_records=records, complete=complete,
        )
        self.runs += 1
        self.last = result
        log.info(
            "retention_purged", days=self.days, cutoff=cutoff.isoformat(timespec="seconds"),
            calls=result.calls, callbacks=result.callbacks, verification_failures=result.verification_failures,
            spool_segments=segments, spool_records=records, complete=complete,
        )
        return result
