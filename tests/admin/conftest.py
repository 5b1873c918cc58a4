"""Fixtures for the admin API: a fake clock, an in-memory backend, a server on 127.0.0.1:0, and
a small JSON client (aiohttp) that returns (status, body, headers)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from pbx_router.admin import AdminServer, InMemoryBackend
from pbx_router.queues.overrides import OverrideSet

TOKEN = "test-token-0123456789abcdef"
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
QUEUES = ("frontdesk", "billing")
AGENTS = {"PJSIP/agent1": "Ann", "PJSIP/agent2": "Bob"}
TARGETS = ("frontdesk", "nurse_line", "voicemail")


class FakeClock:
    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


Api = Callable[..., Awaitable[Answer]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[OverrideSet]:
    return []


@pytest.fixture
def backend(clock: FakeClock, changes: list[OverrideSet]) -> InMemoryBackend:
    return InMemoryBackend(queues=QUEUES, agents=AGENTS, targets=TARGETS, clock=clock, on_change=changes.append)


@pytest_asyncio.fixture
async def server(backend: InMemoryBackend, clock: FakeClock) -> AsyncIterator[AdminServer]:
    async with AdminServer(backend, port=0, token=TOKEN, clock=clock) as srv:
        yield srv


def make_api(base_url: str, session: aiohttp.ClientSession) -> Api:
    async def call(method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
                   raw: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with session.request(method, URL(base_url + path, encoded=True), data=data, headers=sent) as resp:
            text = await resp.text()
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = text
            return Answer(resp.status, parsed, dict(resp.headers))

    return call


@pytest_asyncio.fixture
async def api(server: AdminServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield make_api(server.url, session)
