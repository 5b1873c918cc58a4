"""Stored PHI is private and purged: 0700/0600 on disk, and records, transcripts and spooled
records older than the retention period are deleted (real PostgreSQL, real files)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from pbx_router.store import CallRecord, Store
from pbx_router.store.calls import upsert_calls
from pbx_router.store.retention import RetentionJob
from pbx_router.store.spool import Spool

from .helpers import DatabaseDown, call
from helpers import eventually

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _aged(record: CallRecord, days: float) -> CallRecord:
    return dataclasses.replace(record, started_at=NOW - timedelta(days=days), transcript="I need my refill")


async def test_records_older_than_the_retention_are_purged_and_newer_ones_kept(store: Store, tmp_path: Path) -> None:
    async with store.pool.acquire() as conn:
        await upsert_calls(conn, [_aged(call(n), 400 + n) for n in range(5)]
                           + [_aged(call(10 + n), 30 + n) for n in range(3)])
        await conn.executemany(
            "INSERT INTO verification_failures (number, failed_at) VALUES ($1, $2)",
            [("+15550001111", NOW - timedelta(days=500)), ("+15550002222", NOW - timedelta(days=2))],
        )
    spool = Spool(tmp_path / "spool")

    async def opened() -> Store:
        return store

    job = RetentionJob(opened, spool, days=365, batch_size=2, clock=NOW.timestamp)
    with structlog.testing.capture_logs() as logs:
        result = await job.purge_once()

    assert (result.calls, result.verification_failures, result.complete) == (5, 1, True)
    left = await store.pool.fetch("SELECT call_id, transcript FROM calls ORDER BY call_id")
    assert [r["call_id"] for r in left] == ["call-0010", "call-0011", "call-0012"]
    assert await store.pool.fetchval("SELECT array_agg(number) FROM verification_failures") == ["+15550002222"]
    purged = [e for e in logs if e["event"] == "retention_purged"]
    assert purged and purged[0]["calls"] == 5 and purged[0]["days"] == 365
    assert "I need my refill" not in repr(logs) and "+1555000" not in repr(logs)  # counts only

    again = await job.purge_once()  # nothing left to do
    assert (again.calls, again.verification_failures) == (0, 0)


async def test_a_big_backlog_is_purged_in_bounded_runs(store: Store, tmp_path: Path) -> None:
    async with store.pool.acquire() as conn:
        await upsert_calls(conn, [_aged(call(n), 800) for n in range(7)])

    async def opened() -> Store:
        return store

    job = RetentionJob(opened, Spool(tmp_path / "spool"), days=365, batch_size=2, max_batches=2,
                       clock=NOW.timestamp)
    first = await job.purge_once()
    assert (first.calls, first.complete) == (4, False)  # 2 batches of 2, then the rest next run
    second = await job.purge_once()
    assert (second.calls, second.complete) == (3, True)
    assert await store.pool.fetchval("SELECT count(*) FROM calls") == 0


async def test_old_spool_segments_are_purged_even_while_the_database_is_away(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_records=1000)  # 10 records per segment
    spool.append([{"n": n, "caller_number": "+15550009999"} for n in range(25)])
    segments = sorted((tmp_path / "spool").glob("*.jsonl"))
    old = (NOW - timedelta(days=400)).timestamp()
    for path in segments[:2]:
        os.utime(path, (old, old))
    down = DatabaseDown()

    async def unreachable() -> Store:
        await down()
        raise AssertionError("unreachable")

    job = RetentionJob(unreachable, spool, days=365, clock=NOW.timestamp)
    with structlog.testing.capture_logs() as logs:
        result = await job.purge_once()

    assert (result.spool_segments, result.spool_records) == (2, 20)
    assert result.calls is None and not result.complete  # retried sooner than the full interval
    assert sorted((tmp_path / "spool").glob("*.jsonl")) == segments[2:]
    assert spool.pending == 5 and spool.purged == 20 and spool.dropped == 0
    assert [e["event"] for e in logs] == ["retention_database_unavailable", "retention_purged"]
    assert down.attempts == 1


async def test_spool_and_data_directory_are_private_even_if_they_were_not(tmp_path: Path) -> None:
    os.umask(old_umask := os.umask(0o022))  # read the umask without changing it
    try:
        loose = tmp_path / "spool"
        loose.mkdir(mode=0o755)
        os.chmod(loose, 0o755)
        legacy = loose / "000000000001.jsonl"
        legacy.write_text(json.dumps({"caller_number": "+15550009999"}) + "\n")
        os.chmod(legacy, 0o644)
        with structlog.testing.capture_logs() as logs:
            spool = Spool(loose)
        spool.append([{"transcript": "my chest hurts"}])
        assert _mode(loose) == 0o700
        assert {p.name: _mode(p) for p in loose.iterdir()} == {"000000000001.jsonl": 0o600, "000000000002.jsonl": 0o600}
        events = {e["event"]: e for e in logs}
        assert events["permissions_tightened"]["was"] == "0755"
        assert events["spool_permissions_tightened"]["files"] == 1

        fresh = tmp_path / "fresh" / "spool"
        Spool(fresh).append([{"n": 1}])
        assert _mode(fresh) == 0o700 and _mode(next(fresh.iterdir())) == 0o600
    finally:
        os.umask(old_umask)


async def test_a_purged_segment_is_not_the_one_being_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records=1000)
    spool.append([{"n": n} for n in range(15)])
    old = (NOW - timedelta(days=400)).timestamp()
    for path in tmp_path.glob("*.jsonl"):
        os.utime(path, (old, old))
    batch = spool.take_oldest()
    assert batch is not None
    assert spool.purge_older_than(NOW.timestamp() - 365 * 86400) == (1, 5)
    assert batch.path.exists()  # in flight: the next run gets it
    spool.remove(batch.path)
    spool.append([{"n": 99}])  # the purged active segment is not written to again
    assert spool.pending == 1


async def test_the_daemon_tightens_its_data_directory_and_purges_at_start(
    start_daemon: Any, database_url: str, tmp_path: Path
) -> None:
    # given: last year's call in the database, and a data directory an admin left open
    async with await Store.open(database_url, tmp_path / "setup") as setup:
        async with setup.pool.acquire() as conn:
            old = dataclasses.replace(call(1), started_at=datetime.now(UTC) - timedelta(days=40))
            await upsert_calls(conn, [old, dataclasses.replace(call(2), started_at=datetime.now(UTC))])
    data_dir = tmp_path / "data0"  # the directory start_daemon gives its first daemon
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)

    # when: the daemon starts with a 30-day retention
    daemon = await start_daemon("retention: {days: 30, interval_hours: 24}")

    # then: the directory is private, and the purge ran once at start
    assert _mode(data_dir) == 0o700 and _mode(data_dir / "spool") == 0o700
    await eventually(lambda: daemon.app.retention.runs >= 1, timeout=30, what="first purge")
    assert daemon.app.retention.last.calls == 1
    async with await Store.open(database_url, tmp_path / "check") as check:
        assert [r.call_id for r in await check.calls.list()] == ["call-0002"]
