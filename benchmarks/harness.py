"""What the daemon benchmarks share: the emulated Asterisk in a child process (so its work does
not count against the daemon), the daemon itself built exactly as ``pbx-router run`` builds it,
and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
from collections.abc import AsyncIterator, Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

USER, PASSWORD = "pbx-router", "bench-emulator-ari-password"


async def spawn_emulator(target: Callable[..., None], *args: Any) -> tuple[Any, Connection, str]:
    """Start ``target(conn, *args)`` in a child process; it must send its emulator's base URL first."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    base_url = await receive(parent)
    return proc, parent, base_url


async def receive(conn: Connection) -> Any:
    """The child's next message, without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, conn.recv)


@contextlib.asynccontextmanager
async def running_daemon(config_yaml: str) -> AsyncIterator[Any]:
    """The daemon, started and attached (websocket ready); stopped on exit."""
    from pbx_router import log
    from pbx_router.app import App
    from pbx_router.config import parse_config

    log.configure("error", json=True)
    app = App(parse_config(config_yaml, "bench.yaml", env={}), install_signals=False)
    task = asyncio.create_task(app.run())
    try:
        while not (app.stream and app.stream.ready.is_set()):
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        yield app
    finally:
        app.request_stop()
        await asyncio.wait_for(task, 60)


def pct(values: Iterable[float], p: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(p / 100 * len(v)))], 3) if v else float("nan")
