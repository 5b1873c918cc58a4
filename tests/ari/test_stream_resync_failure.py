"""A resync that fails (Asterisk's REST side not answering yet right after a reconnect) is tried
again: the daemon does not stay "not ready" with its calls never reconciled."""

from __future__ import annotations

import asyncio
from typing import Any

from pbx_router.ari import AriClient, AriUnavailable, Backoff, EventStream
from pbx_router.testing import AsteriskEmulator

from helpers import eventually


async def test_a_failed_resync_is_retried_until_the_stream_is_ready(pbx: AsteriskEmulator) -> None:
    attempts = 0

    async def resync() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:  # e.g. GET /channels timing out while Asterisk is still starting
            raise AriUnavailable("cannot reach Asterisk", method="GET", path="/channels")

    async with AriClient(pbx.base_url, "pbx-router", pbx.password, "pbx-router", request_timeout=2) as ari:
        stream = EventStream(ari, lambda e: None, on_connected=resync, backoff=Backoff(0.05, 0.2))
        task: asyncio.Task[Any] = asyncio.create_task(stream.run())
        try:
            await eventually(lambda: stream.ready.is_set(), timeout=5, what="ready after a failed resync")
            assert attempts == 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
