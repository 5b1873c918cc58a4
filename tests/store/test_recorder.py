"""The call recorder against a real server: merging, outages, restarts, overload."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import asyncpg

from pbx_router.store import CallRecorder, EmbeddedPostgres, Store
from pbx_router.store.testing import temporary_database

from .helpers import T0, DatabaseDown, call, connect_to, database_down, running, until

ROUTE = {
    "action": "queue",
    "target": "front-desk",
    "rule": "default",
    "reason": "no match",
    "trace": [],
}


async def test_start_answer_end_become_one_complete_row(store: Store, tmp_path: Path) -> None:
    recorder = CallRecorder(store, tmp_path / "spool")
    start = call(1, extra={"codec": "ulaw"})
    async with running(recorder):
        recorder.submit(start)
        recorder.submit(dataclasses.replace(start, answered_at=T0 + timedelta(seconds=2), extra={}))
        recorder.submit(
            dataclasses.replace(
                start,
                ended_at=T0 + timedelta(seconds=60),
                outcome="queued",
                route=ROUTE,
                transcript="I need to book an appointment",
                intent="book",
                extra={"turns": 2},
            )
        )
        assert await recorder.flush(10)

    row = await store.calls.get("call-0001")
    assert row is not None
    assert row.answered_at == T0 + timedelta(seconds=2)  # not erased by the later None
    assert row.ended_at == T0 + timedelta(seconds=60)
    assert (row.outcome, row.intent, row.route) == ("queued", "book", ROUTE)
    assert row.transcript == "I need to book an appointment"
    assert row.extra == {"codec": "ulaw", "turns": 2}
    assert await store.calls.count() == 1
    assert recorder.stats.written == 3 and recorder.stats.pending == 0


async def test_late_and_duplicate_records_do_not_undo_newer_ones(
    store: Store, tmp_path: Path
) -> None:
    early = call(2, outcome="in_progress", updated_at=T0)
    late = call(
        2,
        outcome="transferred",
        ended_at=T0 + timedelta(minutes=5),
        updated_at=T0 + timedelta(minutes=5),
    )
    recorder = CallRecorder(store, tmp_path / "spool")
    async with running(recorder):
        for record in (late, early, late, early):  # arrival order scrambled, twice
            recorder.submit(record)
        assert await recorder.flush(10)
    row = await store.calls.get("call-0002")
    assert row is not None and row.outcome == "transferred" and row.ended_at == late.ended_at


async def test_database_stopped_mid_run_spools_then_replays_everything(
    private_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    async with temporary_database(private_postgres.url) as url:
        store = await Store.open(url, tmp_path)
        await store.close()  # migrated; the recorder works over its own connection
        spool_dir = tmp_path / "spool"
        recorder = CallRecorder(connect_to(url), spool_dir, backoff_initial=0.02, backoff_max=0.1)
        async with running(recorder):
            for n in range(1, 6):
                recorder.submit(call(n))
            assert await recorder.flush(10)

            await private_postgres.stop()
            for n in range(1, 6):  # those calls end while the database is away
                recorder.submit(call(n, ended_at=T0 + timedelta(hours=1), outcome="done"))
            for n in range(6, 26):
                recorder.submit(call(n, transcript=f"caller {n} speaking"))
            await until(lambda: recorder.stats.spooled == 25, what="25 records spooled")
            assert recorder.stats.pending == 25
            on_disk = sum(len(p.read_text().splitlines()) for p in spool_dir.glob("*.jsonl"))
            assert on_disk == 25
            assert not await recorder.flush(0.05)  # cannot reach the database: says so

            await private_postgres.start()
            assert await recorder.flush(20)

        stats = recorder.stats
        assert (stats.replayed, stats.dropped, stats.pending) == (25, 0, 0)
        assert list(spool_dir.glob("*.jsonl")) == []
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT call_id, outcome, ended_at, transcript FROM calls ORDER BY call_id"
            )
        finally:
            await conn.close()
        assert [r["call_id"] for r in rows] == [f"call-{n:04d}" for n in range(1, 26)]
        for r in rows[:5]:
            assert (r["outcome"], r["ended_at"], r["transcript"]) == (
                "done",
                T0 + timedelta(hours=1),
                None,
            )
        for n, r in enumerate(rows[5:], start=6):
            assert (r["outcome"], r["transcript"]) == (None, f"caller {n} speaking")


async def test_spool_survives_a_process_restart(
    database_url: str, store: Store, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    first = CallRecorder(database_down, spool_dir, backoff_initial=0.02, backoff_max=0.05)
    async with running(first):
        for n in range(1, 4):
            first.submit(call(n))
        await until(lambda: first.stats.spooled == 3, what="spooled")
    first.submit(call(4))  # arrives after the writer stopped: only in memory ...
    # ... and a new process never sees it. What reached the disk must all come back:
    second = CallRecorder(connect_to(database_url), spool_dir)
    assert second.stats.pending == 3
    async with running(second):
        assert await second.flush(10)
    assert [c.call_id for c in await store.calls.list(10)] == [
        "call-0003",
        "call-0002",
        "call-0001",
    ]
    assert second.stats.replayed == 3


async def test_cancelling_the_writer_spools_what_is_still_in_memory(
    database_url: str, store: Store, tmp_path: Path
) -> None:
    down = DatabaseDown()
    first = CallRecorder(down, tmp_path / "spool", backoff_initial=60)
    async with running(first):
        await until(lambda: down.attempts == 1, what="a first connection attempt")
        # the writer now sleeps out a long backoff; submits stay in memory until it wakes
        for n in range(1, 3):
            first.submit(call(n))
    assert first.stats.spooled == 2

    second = CallRecorder(connect_to(database_url), tmp_path / "spool")
    async with running(second):
        assert await second.flush(10)
    assert await store.calls.count() == 2


async def test_cancelling_a_connected_writer_writes_what_is_in_memory(
    store: Store, tmp_path: Path
) -> None:
    recorder = CallRecorder(store, tmp_path / "spool")
    async with running(recorder):
        recorder.submit(call(1))
        assert await recorder.flush(10)  # connected and idle now
        for n in range(2, 5):
            recorder.submit(call(n))
        # leaving the block cancels the writer before it took these from memory
    assert (recorder.stats.written, recorder.stats.spooled, recorder.stats.pending) == (4, 0, 0)
    assert await store.calls.count() == 4


async def test_full_memory_queue_spills_to_disk_instead_of_dropping(
    store: Store, tmp_path: Path
) -> None:
    recorder = CallRecorder(store, tmp_path / "spool", max_queue=2)
    for n in range(1, 6):  # the writer is not running yet: the queue fills up
        recorder.submit(call(n))
    assert (recorder.stats.spooled, recorder.stats.pending, recorder.stats.dropped) == (3, 5, 0)
    async with running(recorder):
        assert await recorder.flush(10)
    assert await store.calls.count() == 5


async def test_spool_over_its_bound_drops_the_oldest_and_counts(
    store: Store, tmp_path: Path
) -> None:
    recorder = CallRecorder(store, tmp_path / "spool", max_queue=0, max_spool_records=3)
    for n in range(1, 6):
        recorder.submit(call(n))
    assert (recorder.stats.dropped, recorder.stats.pending) == (2, 3)
    async with running(recorder):
        assert await recorder.flush(10)
    assert sorted(c.call_id for c in await store.calls.list(10)) == [
        "call-0003",
        "call-0004",
        "call-0005",
    ]


async def test_corrupt_spool_lines_are_skipped_and_counted(
    database_url: str, store: Store, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    writer = CallRecorder(database_down, spool_dir, max_queue=0)
    writer.submit(call(1))
    writer.submit(call(2))
    segment = sorted(spool_dir.glob("*.jsonl"))[-1]
    with segment.open("a") as handle:
        handle.write('{"call_id": "torn", "started_at": "2026-03-0')  # power cut mid-line

    recorder = CallRecorder(connect_to(database_url), spool_dir)
    async with running(recorder):
        assert await recorder.flush(10)
    assert recorder.stats.dropped == 1
    assert sorted(c.call_id for c in await store.calls.list(10)) == ["call-0001", "call-0002"]


async def test_text_postgres_cannot_store_does_not_block_the_rest(
    store: Store, tmp_path: Path
) -> None:
    recorder = CallRecorder(store, tmp_path / "spool")
    async with running(recorder):
        recorder.submit(
            call(1, transcript="nul\x00byte", extra={"k\x00": "v\x00", "obj": object()})
        )
        recorder.submit(call(2))
        assert await recorder.flush(10)
    row = await store.calls.get("call-0001")
    assert row is not None and row.transcript == "nulbyte" and row.extra["k"] == "v"
    assert await store.calls.count() == 2


async def test_records_wait_on_disk_until_the_schema_exists(
    database_url: str, tmp_path: Path
) -> None:
    # Reachable database, but nobody ran the migrations yet: writes fail, nothing is lost.
    recorder = CallRecorder(
        connect_to(database_url), tmp_path / "spool", backoff_initial=0.02, backoff_max=0.05
    )
    async with running(recorder):
        recorder.submit(call(1))
        await until(lambda: recorder.stats.spooled == 1, what="record spooled")
        assert recorder.stats.written == 0
        store = await Store.open(database_url, tmp_path)  # migrates
        try:
            assert await recorder.flush(10)
            assert (await store.calls.get("call-0001")) is not None
        finally:
            await store.close()
