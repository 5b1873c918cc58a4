"""Shared fixtures: the Asterisk emulator, a real PostgreSQL, and the daemon wired to both."""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import urlsplit, urlunsplit
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from pbx_router.app import App
from pbx_router.config import Config, parse_config
from pbx_router.testing import AsteriskEmulator

from helpers import eventually

ARI_USER = "pbx-router"
ARI_PASSWORD = "secret"


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real PostgreSQL for the session: external by URL, or embedded (started here)."""
    external = os.environ.get("PBX_ROUTER_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from pbx_router.store.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg-session"))
    url = pg.start_blocking()
    try:
        yield url
    finally:
        pg.stop_blocking()


@pytest_asyncio.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database on the session's server for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    # Best effort: the database is throwaway, and a daemon under test may still be closing its
    # connections (FORCE ends them, which can race with our own admin connection).
    try:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
    except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
        pass


@pytest_asyncio.fixture
async def pbx() -> AsyncIterator[AsteriskEmulator]:
    async with AsteriskEmulator(username=ARI_USER, password=ARI_PASSWORD) as emu:
        emu.sounds["hello-world"] = 0.5
        for ctx in ("pbx-router-fallback", "clinic-frontdesk"):
            emu.add_context(ctx)
        yield emu


DEFAULT_ROUTE = "{type: dialplan, context: clinic-frontdesk, extension: s, priority: 1}"


def daemon_config(
    pbx: AsteriskEmulator, data_dir: Path, database_url: str | None, extra: str = "", default_route: str = DEFAULT_ROUTE
) -> Config:
    text = f"""
ari:
  url: {pbx.base_url}
  username: {ARI_USER}
  password: {ARI_PASSWORD}
  reconnect_min: 0.05
  reconnect_max: 0.5
database:
  url: {database_url or ''}
data_dir: {data_dir}
calls:
  greeting: [sound:hello-world]
  default_route: {default_route}
  fallback: {{context: pbx-router-fallback}}
shutdown:
  drain_timeout: 3
{extra}
"""
    return parse_config(text, "test-config.yaml", env={})


@dataclass
class Daemon:
    app: App
    task: asyncio.Task[None]
    config: Config
    stopped: bool = field(default=False)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.app.request_stop()
        await asyncio.wait_for(asyncio.shield(self.task), timeout=30)

    @property
    def supervisor(self) -> Any:
        return self.app.supervisor


DaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest_asyncio.fixture
async def start_daemon(
    pbx: AsteriskEmulator, database_url: str, tmp_path: Path
) -> AsyncIterator[DaemonFactory]:
    daemons: list[Daemon] = []

    async def start(
        extra: str = "", *, default_route: str = DEFAULT_ROUTE, db_url: str | None = database_url,
        wait_ready: bool = True,
    ) -> Daemon:
        cfg = daemon_config(pbx, tmp_path / f"data{len(daemons)}", db_url, extra, default_route)
        app = App(cfg, install_signals=False)
        task = asyncio.create_task(app.run(), name="daemon-under-test")
        d = Daemon(app, task, cfg)
        daemons.append(d)
        if wait_ready:
            await eventually(lambda: task.done() or (app.stream is not None and app.stream.ready.is_set()),
                             timeout=30, what="daemon ready")
            if task.done():
                task.result()
        return d

    yield start
    for d in daemons:
        await d.stop()
