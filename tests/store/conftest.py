"""PostgreSQL fixtures: one embedded server per session, a fresh database per test.

Reusable as-is from a root conftest; the work is in ``pbx_router.store.testing``. Set
``PBX_ROUTER_TEST_DATABASE_URL`` to run against an external server instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pbx_router.store import EmbeddedPostgres, Store
from pbx_router.store.testing import scratch_dir


@pytest.fixture(scope="session")
def postgres_server_url(postgres_url: str) -> str:
    """Admin DSN of the session's one server (tests/conftest.py), shared by all tests."""
    return postgres_url


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory an embedded server may live in (not under pytest's tmp_path, whose
    permissions a concurrent pytest session may reset while our server runs)."""
    with scratch_dir() as path:
        yield path


@pytest.fixture
async def store(database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated store on a fresh database."""
    opened = await Store.open(database_url, tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
async def private_postgres(data_dir: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A server of the test's own, for tests that stop and start it."""
    server = EmbeddedPostgres(data_dir / "postgres", unsafe_fast=True)
    await server.start()
    yield server
    await server.stop()  # a no-op when the test left it stopped


@pytest.fixture(autouse=True)
async def fail_on_unhandled_loop_errors() -> AsyncIterator[None]:
    """An exception nobody awaited (a crashed background task) fails the test."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    loop.set_exception_handler(previous)
    assert not errors, f"unhandled exceptions in the event loop: {errors}"
