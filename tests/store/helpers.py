"""Small shared helpers for the store tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from pbx_router.store import CallRecord, CallRecorder

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(recorder: CallRecorder) -> AsyncIterator[asyncio.Task[None]]:
    """Run the recorder's writer for the duration of the block, then cancel it."""
    task = asyncio.create_task(recorder.run(), name="recorder")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def call(n: int, **changes: object) -> CallRecord:
    """The start-of-call record of test call number ``n``."""
    record = CallRecord(
        call_id=f"call-{n:04d}",
        channel_id=f"1700000000.{n}",
        caller_number=f"+1555000{n:04d}",
        caller_name=f"Caller {n}",
        dialled="100",
        started_at=T0 + timedelta(minutes=n),
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def connect_to(url: str) -> Callable[[], Awaitable[asyncpg.Connection]]:
    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(url, timeout=2)

    return connect


class DatabaseDown:
    """A connect factory for a database that is unreachable; counts the attempts."""

    def __init__(self) -> None:
        self.attempts = 0

    async def __call__(self) -> asyncpg.Connection:
        self.attempts += 1
        raise ConnectionRefusedError("database is down (test)")


database_down = DatabaseDown()
