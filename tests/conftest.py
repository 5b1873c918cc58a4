"""Shared fixtures: the Asterisk emulator, a real PostgreSQL, and the daemon wired to both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog

from pbx_router.app import App
from pbx_router.config import Config, parse_config
from pbx_router.store.testing import postgres_server, temporary_database
from pbx_router.testing import AsteriskEmulator

from helpers import eventually

ARI_USER = "pbx-router"
ARI_PASSWORD = "emulator-ari-password-0123"  # check-config refuses short or placeholder secrets


@pytest.fixture(autouse=True)
def _logging_configuration_restored() -> Iterator[None]:
    """A test that configures logging (the daemon's level, JSON) must not change what the next
    test's ``structlog.testing.capture_logs`` sees (e.g. info lines filtered out by level)."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One real PostgreSQL for the session: ``PBX_ROUTER_TEST_DATABASE_URL``, or embedded."""
    with postgres_server() as url:
        yield url


@pytest_asyncio.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database on the session's server for one test, dropped afterwards."""
    async with temporary_database(postgres_url) as url:
        yield url


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
    if "admin:" not in extra:
        text += "admin: {enabled: false}\n"
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
