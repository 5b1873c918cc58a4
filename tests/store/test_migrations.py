"""Schema migrations on a real server: once, idempotent, safe when two processes race."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from pbx_router.store import MigrationError, Store
from pbx_router.store.schema import Migration, apply_migrations, load_migrations


async def test_open_applies_migrations_once_and_again_is_a_no_op(
    database_url: str, tmp_path: Path
) -> None:
    store = await Store.open(database_url, tmp_path)
    try:
        rows = await store.pool.fetch(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        )
        assert [(r["version"], r["name"]) for r in rows] == [
            (m.version, m.name) for m in load_migrations()
        ]
        assert rows[0]["name"] == "calls"
        assert await store.migrate() == []
        assert await store.pool.fetchval("SELECT count(*) FROM schema_migrations") == len(rows)
    finally:
        await store.close()

    reopened = await Store.open(database_url, tmp_path)  # a restart: nothing re-applied
    try:
        assert await reopened.migrate() == []
        assert await reopened.calls.count() == 0
    finally:
        await reopened.close()


async def test_two_processes_migrating_at_once_apply_each_migration_once(
    database_url: str, tmp_path: Path
) -> None:
    first = await Store.open(database_url, tmp_path, migrate=False)
    second = await Store.open(database_url, tmp_path, migrate=False)
    try:
        shipped = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
        applied = await asyncio.gather(first.migrate(), second.migrate())
        assert sorted(applied, key=len) == [[], shipped]
        assert await first.pool.fetchval("SELECT count(*) FROM schema_migrations") == len(shipped)
        assert await first.pool.fetchval("SELECT to_regclass('calls') IS NOT NULL")
    finally:
        await first.close()
        await second.close()


async def test_a_failing_migration_leaves_no_trace_and_says_which(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        good = Migration(1, "good", "CREATE TABLE good (id int)")
        bad = Migration(
            2, "bad", "CREATE TABLE half_made (id int); SELECT no_such_column FROM good"
        )
        with pytest.raises(MigrationError, match="0002_bad"):
            await apply_migrations(conn, [good, bad])
        assert await conn.fetchval("SELECT to_regclass('good') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('half_made') IS NULL")
        assert await conn.fetchval("SELECT array_agg(version) FROM schema_migrations") == [1]
        # the lock was released: a corrected run proceeds at once
        fixed = Migration(2, "bad", "CREATE TABLE half_made (id int)")
        assert [m.version for m in await apply_migrations(conn, [good, fixed])] == [2]
    finally:
        await conn.close()


def test_shipped_migrations_start_with_calls_and_are_ordered() -> None:
    migrations = load_migrations()
    assert (migrations[0].version, migrations[0].name) == (1, "calls")
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
