"""Versioned SQL migrations: ``migrations/NNNN_name.sql`` applied in order, one transaction each,
recorded in ``schema_migrations``. A session advisory lock makes two processes starting at once
take turns: the second finds everything applied and does nothing."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from pbx_router.log import get_logger
from pbx_router.store.conn import DbConnection
from pbx_router.store.errors import MigrationError

log = get_logger(__name__)

# Arbitrary but fixed: every pbx-router process must use the same key.
ADVISORY_LOCK_KEY = 0x7062_7872_6D69_67  # "pbxrmig"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(
    package: str = "pbx_router.store", folder: str = "migrations"
) -> list[Migration]:
    """The migration files shipped in the package, sorted by version."""
    found: dict[int, Migration] = {}
    directory = resources.files(package).joinpath(folder)
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file name {entry.name!r} is not NNNN_name.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migrations with version {version:04d}")
        found[version] = Migration(version, match["name"], entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def apply_migrations(
    conn: DbConnection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply what is missing; returns the migrations applied now (empty when up to date)."""
    pending_all = load_migrations() if migrations is None else migrations
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {row["version"]: row["checksum"] for row in rows}
        for migration in pending_all:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    # Editing an applied migration never re-runs it; say so loudly but keep the
                    # phones up rather than refuse to start.
                    log.error(
                        "migration_changed_after_apply",
                        version=migration.version,
                        name=migration.name,
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            log.info("migration_applied", version=migration.version, name=migration.name)
            applied_now.append(migration)
    finally:
        # A broken connection has dropped the lock already; do not mask the original error.
        if not conn.is_closed():
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("migration_unlock_failed")
    return applied_now
