"""A SIGTERM ends the daemon even when PostgreSQL has been unreachable since start: nothing that
waits for the database (restoring staff overrides) may keep the process alive."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pbx_router.testing import AsteriskEmulator


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_stops_the_daemon_while_the_database_is_unreachable(pbx: AsteriskEmulator,
                                                                         start_daemon: Any) -> None:
    daemon = await start_daemon(db_url=f"postgresql://nobody:not-the-password-0123@127.0.0.1:{closed_port()}/clinic")
    call = await pbx.place_call(caller_number="+15551239001", dialled="100")
    await call.wait_for(lambda c: c.fate == "continued", timeout=10)  # calls flow without a database
    daemon.app.request_stop()
    done, _ = await asyncio.wait({daemon.task}, timeout=15)
    daemon.stopped = True
    if not done:
        daemon.task.cancel()
        await asyncio.gather(daemon.task, return_exceptions=True)
    assert done, "the daemon did not exit after SIGTERM while the database was down"
    assert daemon.task.exception() is None
