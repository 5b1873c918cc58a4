"""``Store``: one asyncpg pool on our PostgreSQL (the embedded one unless a URL is configured),
migrated on open, plus the repositories built on it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pbx_router.log import get_logger
from pbx_router.store.callbacks import CallbackRepository
from pbx_router.store.calls import CallRepository
from pbx_router.store.embedded import EmbeddedPostgres
from pbx_router.store.errors import StoreError
from pbx_router.store.schema import apply_migrations

log = get_logger(__name__)

# Errors that mean "cannot talk to the server" as opposed to "the server said no".
# Final and unannotated, so the type checker knows each member and accepts
# ``except (*CONNECTION_ERRORS, asyncpg.PostgresError)``.
CONNECTION_ERRORS: Final = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def redact_url(url: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    host = netloc[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb as Python objects for every user of the pool.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


class Store:
    """Open with ``await Store.open(url_or_None, data_dir)``; close with ``await store.close()``."""

    def __init__(self, url: str, pool: asyncpg.Pool, embedded: EmbeddedPostgres | None) -> None:
        self.url = url
        self.pool = pool
        self.embedded = embedded  # the bundled server when we use it (started or attached)
        self.calls = CallRepository(pool)
        self.callbacks = CallbackRepository(pool)

    @classmethod
    async def open(
        cls,
        database_url: str | None,
        data_dir: Path,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        migrate: bool = True,
    ) -> Store:
        """Start the embedded server when ``database_url`` is None (data in
        ``<data_dir>/postgres``), connect a pool, apply migrations. Raises ``StoreError``."""
        embedded: EmbeddedPostgres | None = None
        if database_url is None:
            embedded = EmbeddedPostgres(Path(data_dir) / "postgres")
            url = await embedded.start()  # raises EmbeddedPostgresError, a StoreError
        else:
            url = database_url
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                init=_init_connection,
            )
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, ValueError) as exc:
            if embedded is not None:
                await embedded.stop()
            raise StoreError(f"cannot connect to {redact_url(url)}: {exc}") from exc
        store = cls(url, pool, embedded)
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
        log.info(
            "store_open",
            embedded=embedded is not None,
            url=redact_url(url) if embedded is None else "embedded",
        )
        return store

    async def migrate(self) -> list[str]:
        """Apply pending migrations (idempotent); returns the names applied now."""
        try:
            async with self.pool.acquire() as conn:
                applied = await apply_migrations(conn)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise StoreError(f"migrations failed: {exc}") from exc
        return [f"{m.version:04d}_{m.name}" for m in applied]

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when a pooled connection answers ``SELECT 1`` within ``timeout`` (readiness)."""
        try:
            async with asyncio.timeout(timeout):
                return bool(await self.pool.fetchval("SELECT 1") == 1)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            return False

    async def connect(self) -> asyncpg.Connection:
        """A dedicated connection outside the pool (the call recorder keeps one)."""
        conn: asyncpg.Connection = await asyncpg.connect(self.url, timeout=10.0)
        await _init_connection(conn)
        return conn

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool, then stop the embedded server if we started it."""
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel (3.11)
                await self.pool.close()
        except TimeoutError:
            log.warning("store_pool_close_timeout")
            self.pool.terminate()
        if self.embedded is not None:
            await self.embedded.stop()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Store(url={redact_url(self.url)!r}, embedded={self.embedded is not None})"
