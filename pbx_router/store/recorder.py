"""The call recorder: call code hands it records and never waits on the database.

``submit()`` is synchronous and O(1): the record goes into a bounded in-memory queue (or, if that
is full, straight into the on-disk spool: one small fsync'd write, only under overload). One
background task (``run()``) writes batches with an idempotent upsert over its own connection.

While the database is unreachable everything goes to the spool (fsync'd JSON lines) and the task
reconnects with exponential backoff; once back it replays the spool, oldest first, before writing
anything newer. Records are merged by ``updated_at`` (see ``calls.py``), so replays, duplicates and
late arrivals all end in the same row. Nothing is dropped except (1) the oldest spooled records
once the spool exceeds its bound and (2) a record PostgreSQL rejects as invalid data; both counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from pbx_router.log import get_logger
from pbx_router.store.calls import CallRecord, upsert_calls
from pbx_router.store.spool import Spool
from pbx_router.store.store import CONNECTION_ERRORS

if TYPE_CHECKING:
    from pbx_router.store.store import Store

log = get_logger(__name__)

ConnectFactory = Callable[[], Awaitable[asyncpg.Connection]]

# PostgreSQL refused these particular values: retrying the same record can never succeed.
_POISON = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class RecorderStats:
    written: int  # records that reached the database (direct and replayed)
    spooled: int  # records appended to the on-disk spool
    replayed: int  # records written to the database from the spool
    dropped: int  # records lost: spool over its bound, corrupt spool lines, rejected data
    pending: int  # records not yet in the database (memory + in flight + spool)
    connected: bool


class _Unavailable(Exception):
    """The database cannot be reached right now."""


class CallRecorder:
    def __init__(
        self,
        target: Store | ConnectFactory,
        spool_dir: Path,
        max_queue: int = 10_000,
        max_spool_records: int = 1_000_000,
        *,
        batch_size: int = 200,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        write_timeout: float = 10.0,
        shutdown_write_timeout: float = 1.0,
    ) -> None:
        connect = getattr(target, "connect", None)
        self._connect: ConnectFactory = connect if callable(connect) else target  # type: ignore[assignment]
        self.spool = Spool(spool_dir, max_spool_records)
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.write_timeout = write_timeout
        self.shutdown_write_timeout = shutdown_write_timeout
        self._queue: deque[CallRecord] = deque()
        self._inflight: list[CallRecord] = []
        self._conn: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._written = 0
        self._spooled = 0
        self._replayed = 0
        self._rejected = 0
        # (segment, records already written) so a retry after an outage mid-segment resumes.
        self._replay_progress: tuple[Path, int] | None = None
        self._last_stamp_us = 0
        self._outages = 0  # failed connect attempts since the last good connection
        if self.spool.pending == 0:
            self._idle.set()

    # -- the call side ------------------------------------------------------------------------

    def submit(self, record: CallRecord) -> None:
        """Queue a record for writing. Never waits on the database and never raises for a
        full queue: overflow is appended to the disk spool right here (one fsync'd write; only
        happens when the writer is far behind)."""
        if record.updated_at is None:
            record = dataclasses.replace(record, updated_at=self._stamp())
        self._idle.clear()
        if len(self._queue) < self.max_queue:
            self._queue.append(record)
        else:
            self._spool_now([record])
        self._wake.set()

    @property
    def stats(self) -> RecorderStats:
        return RecorderStats(
            written=self._written,
            spooled=self._spooled,
            replayed=self._replayed,
            dropped=self.spool.dropped + self._rejected,
            pending=len(self._queue) + len(self._inflight) + self.spool.pending,
            connected=self._conn is not None,
        )

    async def flush(self, timeout: float) -> bool:
        """Wait until every submitted record is in the database; False if that did not happen
        within ``timeout`` (records then stay queued or spooled; cancel ``run()`` to spool all)."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _stamp(self) -> datetime:
        # Strictly increasing whole microseconds (timestamptz precision), so "newer wins" holds
        # for two submissions of one call within the same clock tick.
        micros = max(time.time_ns() // 1000, self._last_stamp_us + 1)
        self._last_stamp_us = micros
        return _EPOCH + timedelta(microseconds=micros)

    # -- the writer task ----------------------------------------------------------------------

    async def run(self) -> None:
        """Write until cancelled. When cancelled, what is still in memory gets one short write
        attempt (``shutdown_write_timeout``) and is spooled if that fails."""
        backoff = self.backoff_initial
        try:
            while True:
                try:
                    if self._conn is None:
                        await self._open_connection()
                    if self.spool.pending:
                        await self._replay_oldest_segment()
                    elif self._queue:
                        await self._write_from_memory()
                    else:
                        self._idle.set()
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    backoff = self.backoff_initial  # progress: the next hiccup starts over
                except _Unavailable:
                    # Also after a failed write on a fresh connection (say, the table is missing):
                    # without the wait this would spin reconnecting.
                    self._drop_connection()
                    await self._wait_out_outage(backoff)
                    backoff = min(backoff * 2, self.backoff_max)
        except asyncio.CancelledError:
            await self._last_write()
            raise

    async def _last_write(self) -> None:
        """On the way out: one short attempt to write what is in memory, then spool the rest."""
        remaining = self._take_all_in_memory()
        if remaining and self._conn is not None:
            try:
                async with asyncio.timeout(self.shutdown_write_timeout):
                    await upsert_calls(self._conn, remaining)
            except BaseException:  # anything, even a second cancel: spool instead
                pass
            else:
                self._written += len(remaining)
                remaining = []
        self._spool_now(remaining)
        self._drop_connection()

    async def _open_connection(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 a cancel that arrives as the connect
        # attempt fails is swallowed by wait_for, and this loop would outlive its TaskGroup.
        try:
            async with asyncio.timeout(self.write_timeout):
                self._conn = await self._connect()
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            self._outages += 1
            # The first failure of an outage says what and why; later ones count attempts.
            log.warning("recorder_db_unavailable", error=type(exc).__name__, detail=str(exc)[:300],
                        attempt=self._outages, records_waiting=self.stats.pending,
                        note="calls are answered; records wait in the spool until the database is back")
            raise _Unavailable from exc
        if self._outages:
            log.info("recorder_db_back", failed_attempts=self._outages)
        self._outages = 0
        log.info("recorder_connected", pending=self.stats.pending)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.terminate()  # no await: also used while being cancelled
            self._conn = None

    async def _wait_out_outage(self, delay: float) -> None:
        """Sleep ``delay`` before the next connect attempt, meanwhile moving every record that
        arrives from memory to disk: an outage must not keep records only in RAM."""
        deadline = time.monotonic() + delay
        while True:
            batch = self._take_all_in_memory()
            if batch:
                await self._spool_later(batch)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return

    async def _write_from_memory(self) -> None:
        count = min(self.batch_size, len(self._queue))
        self._inflight = [self._queue.popleft() for _ in range(count)]
        try:
            await self._write(self._inflight)
        except _Unavailable:
            # Keep order: this batch and everything after it go to disk now.
            await self._spool_later(self._take_all_in_memory())
            raise
        self._inflight = []

    async def _replay_oldest_segment(self) -> None:
        try:
            batch = await asyncio.to_thread(self.spool.take_oldest)
        except OSError as exc:
            log.error("recorder_spool_unreadable", error=str(exc))
            raise _Unavailable from exc  # retried after a backoff, like an outage
        if batch is None:
            return
        resuming = self._replay_progress is not None and self._replay_progress[0] == batch.path
        done = self._replay_progress[1] if resuming and self._replay_progress else 0
        records: list[CallRecord] = []
        for data in batch.records:
            try:
                records.append(CallRecord.from_json(data))
            except (ValueError, TypeError):
                if not resuming:  # counted once, not on every retry of this segment
                    self._rejected += 1
        self._replay_progress = (batch.path, done)
        try:
            while done < len(records):
                chunk = records[done : done + self.batch_size]
                await self._write(chunk)
                done += len(chunk)
                self._replayed += len(chunk)
                self._replay_progress = (batch.path, done)
        except BaseException:
            self.spool.release(batch.path)
            raise
        await asyncio.to_thread(self.spool.remove, batch.path)
        self._replay_progress = None
        log.info("recorder_replayed_segment", records=len(records), left=self.spool.pending)

    async def _write(self, records: list[CallRecord]) -> None:
        """Upsert ``records``; raises ``_Unavailable`` when the database cannot be used."""
        conn = self._conn
        if conn is None:
            raise _Unavailable
        try:
            async with asyncio.timeout(self.write_timeout):
                await upsert_calls(conn, records)
        except _POISON:
            await self._write_one_by_one(conn, records)
            return
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            log.warning("recorder_write_failed", error=type(exc).__name__, records=len(records))
            raise _Unavailable from exc
        self._written += len(records)

    async def _write_one_by_one(self, conn: asyncpg.Connection, records: list[CallRecord]) -> None:
        for record in records:
            try:
                async with asyncio.timeout(self.write_timeout):
                    await upsert_calls(conn, [record])
            except _POISON as exc:
                self._rejected += 1
                log.error("recorder_record_rejected", call_id=record.call_id, error=str(exc))
                continue
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                raise _Unavailable from exc
            self._written += 1

    # -- spooling -----------------------------------------------------------------------------

    def _take_all_in_memory(self) -> list[CallRecord]:
        batch = self._inflight + list(self._queue)
        self._inflight = []
        self._queue.clear()
        return batch

    async def _spool_later(self, records: list[CallRecord]) -> None:
        if not records:
            return
        payload = [record.to_json() for record in records]
        self._inflight = records  # if cancelled mid-write, run() spools them again (harmless)
        try:
            await asyncio.to_thread(self.spool.append, payload)
        except OSError as exc:
            # Database away and disk failing: nothing left to fall back to. Count and carry on.
            self._rejected += len(records)
            log.error("recorder_spool_failed", error=str(exc), records=len(records))
        else:
            self._spooled += len(records)
        self._inflight = []

    def _spool_now(self, records: list[CallRecord]) -> None:
        """Synchronous spooling, for overflow and for shutdown (no awaiting there)."""
        if not records:
            return
        try:
            self.spool.append([record.to_json() for record in records])
        except OSError as exc:
            # The disk itself failed: nothing left to fall back to. Count, say so, carry on.
            self._rejected += len(records)
            log.error("recorder_spool_failed", error=str(exc), records=len(records))
            return
        self._spooled += len(records)
