"""PostgreSQL for tests (ours and anyone's): a throwaway server and fresh databases on it.

    async with temporary_postgres(tmp_path) as url:      # a fresh, empty database
        store = await Store.open(url, tmp_path)

For pytest, start one server per session with ``postgres_server()`` (synchronous, so a plain
session fixture can hold it) and give each test ``temporary_database(server_url)``.

Server directories live in ``scratch_dir()``s, not in pytest's ``tmp_path``: when tests run as
root the server runs as an unprivileged user, and every pytest session (ours or a concurrent one)
resets pytest-of-root (under the temp dir) to 0700, locking that user out of a running server's files.

``PBX_ROUTER_TEST_DATABASE_URL`` (a DSN whose role may CREATE DATABASE) replaces the embedded
server: every fresh database is then created on that server, and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pbx_router.store.embedded import EmbeddedPostgres

TEST_DATABASE_URL_ENV = "PBX_ROUTER_TEST_DATABASE_URL"
_RUN_ID = uuid.uuid4().hex[:8]  # databases of one test run share a prefix


def with_database(url: str, name: str) -> str:
    """The same DSN pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def scratch_dir(prefix: str = "pbx-router-test-") -> Iterator[Path]:
    """A private directory under the system temp dir, removed afterwards (see module doc)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(base_dir: Path | None = None) -> Iterator[str]:
    """DSN of a server tests may create databases on: the external one named by
    ``PBX_ROUTER_TEST_DATABASE_URL``, else a fast (fsync off) embedded one in ``base_dir``
    (default: a scratch directory)."""
    external = os.environ.get(TEST_DATABASE_URL_ENV)
    if external:
        yield external
        return
    with contextlib.ExitStack() as stack:
        if base_dir is None:
            base_dir = stack.enter_context(scratch_dir())
        server = EmbeddedPostgres(Path(base_dir) / "postgres", unsafe_fast=True)
        url = server.start_blocking()
        stack.callback(server.stop_blocking)
        yield url


@contextlib.asynccontextmanager
async def temporary_database(server_url: str) -> AsyncIterator[str]:
    """Create an empty database on ``server_url``, yield its DSN, drop it afterwards."""
    name = f"pbx_test_{_RUN_ID}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        # template0: nothing a previous test or admin left in template1 leaks in.
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await admin.close()
    try:
        yield with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def temporary_postgres(base_dir: Path | None = None) -> AsyncIterator[str]:
    """A fresh empty database on a server of its own (or on the external test server).
    ``base_dir`` holds the server; default a scratch directory."""
    external = os.environ.get(TEST_DATABASE_URL_ENV)
    if external:
        async with temporary_database(external) as url:
            yield url
        return
    with contextlib.ExitStack() as stack:
        if base_dir is None:
            base_dir = stack.enter_context(scratch_dir())
        server = EmbeddedPostgres(Path(base_dir) / "postgres", unsafe_fast=True)
        url = await server.start()
        try:
            async with temporary_database(url) as db_url:
                yield db_url
        finally:
            await server.stop()
