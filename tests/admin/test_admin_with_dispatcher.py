"""The seam with the real queue policy behind it: what the API changes, the dispatcher acts on in
its next step (this is how the daemon composes InMemoryBackend with its Dispatcher)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import aiohttp
import pytest_asyncio

from pbx_router.admin import AdminServer, InMemoryBackend
from pbx_router.queues.model import parse_queues_section
from pbx_router.queues.overrides import OverrideSet
from pbx_router.queues.policy import Dispatcher

from .conftest import TOKEN, Api, FakeClock, make_api


class DispatcherBackend(InMemoryBackend):
    def __init__(self, dispatcher: Dispatcher, clock: FakeClock) -> None:
        self.dispatcher = dispatcher
        super().__init__(queues=dispatcher.queues, agents={a.endpoint: a.config.name for a in dispatcher.pool.all()},
                         clock=clock, on_change=self._apply)

    def _apply(self, overrides: OverrideSet) -> None:
        self.dispatcher.set_overrides(overrides, self.clock().timestamp())

    def queues_view(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.dispatcher.snapshots(self.clock().timestamp()).values()]

    def agents_view(self) -> list[dict[str, Any]]:
        return self.dispatcher.agents_view(self.clock().timestamp())


@pytest_asyncio.fixture
async def dispatched_api(clock: FakeClock) -> AsyncIterator[tuple[Api, Dispatcher]]:
    section = parse_queues_section(resources.files("pbx_router.queues").joinpath("example.yaml").read_bytes())
    dispatcher = Dispatcher(section, clock().timestamp())
    backend = DispatcherBackend(dispatcher, clock)
    async with AdminServer(backend, port=0, token=TOKEN, clock=clock) as server, aiohttp.ClientSession() as session:
        yield make_api(server.url, session), dispatcher


async def test_overrides_and_presence_reach_the_dispatcher(dispatched_api: tuple[Api, Dispatcher]) -> None:
    api, dispatcher = dispatched_api
    closed = await api("POST", "/api/overrides", {"kind": "close_queue", "scope": "billing", "author": "Dana",
                                                   "reason": "month end", "ttl_minutes": 60})
    assert closed.status == 201
    states = {q["queue"]: q["state"] for q in (await api("GET", "/api/queues")).body["queues"]}
    assert states["billing"] == "closed" and states["frontdesk"] == "open"

    paused = await api("PUT", "/api/agents/PJSIP%2Fagent1/presence",
                       {"presence": "paused", "author": "Ann", "reason": "break", "ttl_minutes": 15})
    assert paused.status == 200
    assert paused.body["name"] == "Reception 1" and paused.body["queues"] == ["frontdesk", "scheduling", "billing"]
    agent1 = next(a for a in (await api("GET", "/api/agents")).body["agents"] if a["endpoint"] == "PJSIP/agent1")
    assert (agent1["presence"], agent1["presence_override"], agent1["status"]) == ("paused", True, "paused")
    assert dispatcher.pool.get("PJSIP/agent1").presence == "paused"
