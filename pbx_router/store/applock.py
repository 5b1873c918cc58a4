"""The "one active daemon per Asterisk app" lock: a session-level PostgreSQL advisory lock held
on a dedicated connection for as long as the daemon is the active one.

Session-level (``pg_try_advisory_lock``), not transaction-level: the lock lives exactly as long
as the connection. When the active daemon dies, even by ``kill -9``, the kernel closes its socket,
the server ends the session and the lock is free for a standby at once; nothing has to expire.

The key is derived from the ARI URL and the Stasis app name, so daemons on one database that
serve different Asterisk apps do not exclude each other. Two daemons that reach the same Asterisk
through different URLs (``127.0.0.1`` and a host name) get different keys: configure them alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pbx_router.log import get_logger
from pbx_router.store.store import CONNECTION_ERRORS

log = get_logger(__name__)

ConnectionFactory = Callable[[], Awaitable[asyncpg.Connection]]

# A lock attempt or liveness check that takes longer than this counts as "database unreachable":
# the caller must be able to decide quickly whether to serve calls.
LOCK_ATTEMPT_TIMEOUT_S = 3.0


def lock_key(ari_url: str, app: str) -> int:
    """A stable signed 64-bit advisory lock key for this Asterisk app (bigint's range)."""
    parts = urlsplit(ari_url.strip())
    # Credentials and a trailing slash do not make another Asterisk; case in the host does not either.
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    normal = urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path.rstrip("/"), "", ""))
    digest = hashlib.sha256(f"pbx-router/ari-app\0{normal}\0{app}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as PostgreSQL sees it (for the standby's log line)."""

    pid: int | None
    application_name: str | None
    client_addr: str | None


class AppLock:
    """``await lock.try_acquire()`` -> True when this process now holds the lock (or already did),
    False when another session holds it, None when the database cannot tell (down, unreachable,
    too slow; ``last_error`` says why). ``await lock.check()`` -> whether the lock is still ours
    (its session alive). Never raises for a database problem."""

    def __init__(self, connect: ConnectionFactory, key: int, *, label: str | None = None) -> None:
        self._connect = connect
        self.key = key
        # Shown to a standby (pg_stat_activity.application_name): which daemon is the active one.
        self.label = label or f"pbx-router {socket.gethostname()} pid {os.getpid()}"
        self._conn: asyncpg.Connection | None = None
        # Opening the connection may start the embedded server (seconds, on a thread): an attempt
        # that times out leaves it running for the next attempt instead of abandoning it halfway.
        self._connecting: asyncio.Task[asyncpg.Connection] | None = None
        self.held = False
        self.last_error = ""

    async def try_acquire(self) -> bool | None:
        if self.held and await self.check():
            return True
        try:
            async with asyncio.timeout(LOCK_ATTEMPT_TIMEOUT_S):
                if self._conn is None or self._conn.is_closed():
                    if self._connecting is None:
                        self._connecting = asyncio.get_running_loop().create_task(
                            self._open(), name="app-lock-connect")
                    try:
                        self._conn = await asyncio.shield(self._connecting)
                    finally:
                        if self._connecting.done():
                            self._connecting = None
                self.held = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, ConnectionError, ValueError) as exc:
            self.last_error = str(exc) or type(exc).__name__
            if not isinstance(exc, TimeoutError) or self._connecting is None:
                await self._drop()
            return None
        return self.held

    async def _open(self) -> asyncpg.Connection:
        conn = await self._connect()
        try:
            await conn.execute("SELECT set_config('application_name', $1, false)", self.label[:63])
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def check(self) -> bool:
        """Is the session that holds the lock still alive? A dead or silent connection means the
        server has released it (or will, once it notices): it is not ours any more."""
        if not self.held:
            return False
        conn = self._conn
        try:
            if conn is None or conn.is_closed():
                raise ConnectionError("lock connection closed")
            async with asyncio.timeout(LOCK_ATTEMPT_TIMEOUT_S):
                await conn.fetchval("SELECT 1")
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, ConnectionError) as exc:
            log.warning("app_lock_connection_lost", error=str(exc) or type(exc).__name__)
            await self._drop()
            return False
        return True

    async def holder(self) -> Holder | None:
        """The session holding our key, if the database answers (best effort, for logs)."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return None
        try:
            async with asyncio.timeout(LOCK_ATTEMPT_TIMEOUT_S):
                row = await conn.fetchrow(
                    """SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr
                         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                        WHERE l.locktype = 'advisory' AND l.granted
                          AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 AND l.objsubid = 1""",
                    self.key)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            return None
        if row is None:
            return None
        return Holder(row["pid"], row["application_name"] or None, row["client_addr"])

    async def release(self) -> None:
        """Give the lock up (closing the session releases it even if the unlock is not heard)."""
        conn, held = self._conn, self.held
        self.held = False
        if conn is not None and held and not conn.is_closed():
            with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
                async with asyncio.timeout(LOCK_ATTEMPT_TIMEOUT_S):
                    await conn.fetchval("SELECT pg_advisory_unlock($1)", self.key)
        await self._drop()

    async def close(self) -> None:
        """Release, and abandon a connection attempt still under way (shutdown)."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            await asyncio.wait({connecting}, timeout=1.0)
            if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
                connecting.result().terminate()
        await self.release()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.held = False
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(1.0):
                    await conn.close()
            except (*CONNECTION_ERRORS, asyncpg.PostgresError):
                conn.terminate()
