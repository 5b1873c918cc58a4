"""Scheduling fixtures: a real PostgreSQL (embedded, or ``PBX_ROUTER_TEST_DATABASE_URL``), a fresh
migrated database per test, the example clinic loaded, and a clock tests move by hand."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pbx_router.scheduling.data import import_clinic_data, load_clinic_file
from pbx_router.scheduling.patients import PatientDirectory
from pbx_router.scheduling.service import SchedulingService
from pbx_router.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "clinic-data.yaml"


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


@pytest.fixture(scope="session")
def scheduling_server_url(postgres_url: str) -> str:
    """The session's one server (tests/conftest.py)."""
    return postgres_url


@pytest.fixture
def db_url(database_url: str) -> str:
    """A fresh database on it (tests/conftest.py's ``database_url``)."""
    return database_url


@pytest.fixture
async def store(db_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(db_url, tmp_path, max_size=20)
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> FakeClock:
    # A Monday in the example clinic's zone, before business hours.
    return FakeClock(dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC))


@pytest.fixture
async def clinic(store: Store) -> Store:
    data = await asyncio.to_thread(load_clinic_file, EXAMPLE)
    await import_clinic_data(store.pool, data)
    return store


@pytest.fixture
async def service(clinic: Store, clock: FakeClock) -> SchedulingService:
    return await SchedulingService.create(clinic.pool, clock=clock, min_notice=dt.timedelta(0))


@pytest.fixture
async def directory(clinic: Store, service: SchedulingService, clock: FakeClock) -> PatientDirectory:
    return PatientDirectory(clinic.pool, service.tz, clock=clock)


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
