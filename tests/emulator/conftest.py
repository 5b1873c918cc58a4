"""Drive the emulator with a plain aiohttp client, the way the daemon will see it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from pbx_router.testing import AsteriskEmulator

from tests.emulator.shape import check, check_event

USER, PASSWORD = "pbx-router", "secret"
AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
Event = dict[str, Any]


class AriTestClient:
    """REST calls + an events websocket that records every frame it receives."""

    def __init__(self, pbx: AsteriskEmulator, session: aiohttp.ClientSession) -> None:
        self.pbx = pbx
        self.session = session
        self.events: list[Event] = []
        self.raw_frames: list[str] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, app: str = "pbx-router", **query: str) -> None:
        self.ws = await self.session.ws_connect(
            f"{self.pbx.base_url}/ari/events", params={"app": app, **query},
            headers=AUTH)
        self._reader = asyncio.create_task(self._read(self.ws))
        await self.pbx.wait_for_websocket(app=app)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.raw_frames.append(message.data)
                try:
                    self.events.append(json.loads(message.data))
                except ValueError:
                    pass

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader

    async def call(self, method: str, path: str, **params: Any) -> tuple[int, Any]:
        body = params.pop("json", None)
        query = {k: str(v) for k, v in params.items()}
        async with self.session.request(method, f"{self.pbx.base_url}/ari{path}", params=query,
                                        json=body, headers=AUTH) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text and
                              r.content_type == "application/json" else text or None)

    async def ok(self, method: str, path: str, **params: Any) -> Any:
        status, body = await self.call(method, path, **params)
        assert status in (200, 201, 204), (method, path, status, body)
        return body

    async def wait_event(self, predicate: Callable[[Event], bool], timeout: float = 5.0,
                         after: int = 0) -> Event:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in self.events[after:]:
                if predicate(event):
                    return event
            if loop.time() > deadline:
                raise TimeoutError(f"no matching event; got {[e['type'] for e in self.events]}")
            await asyncio.sleep(0.01)

    def of_channel(self, channel_id: str) -> list[Event]:
        return [e for e in self.events
                if e.get("channel", e.get("peer", {})).get("id") == channel_id]


REST_MODELS: list[tuple[str, str, str]] = [
    # (method, path prefix/suffix test, model) for successful JSON replies
]


def rest_model(method: str, path: str, body: Any) -> str | None:
    parts = path.split("/")[2:]  # after /ari
    if not parts:
        return None
    head = parts[0]
    if head == "channels":
        if len(parts) >= 3 and parts[2] == "variable":
            return "Variable"
        if len(parts) >= 3 and parts[2] == "play":
            return "Playback"
        return "Channel" if isinstance(body, dict) else "List[Channel]"
    if head == "bridges":
        if len(parts) >= 3 and parts[2] == "play":
            return "Playback"
        return "Bridge" if isinstance(body, dict) else "List[Bridge]"
    if head == "playbacks":
        return "Playback"
    if head == "endpoints":
        return "Endpoint" if isinstance(body, dict) else "List[Endpoint]"
    if head == "applications":
        return "Application" if isinstance(body, dict) else "List[Application]"
    if head == "deviceStates":
        return "DeviceState" if isinstance(body, dict) else "List[DeviceState]"
    if head == "asterisk":
        return {"info": "AsteriskInfo", "ping": "AsteriskPing", "variable": "Variable"}.get(
            parts[1] if len(parts) > 1 else "")
    if head == "sounds":
        return "Sound" if isinstance(body, dict) else "List[Sound]"
    return None


def wire_problems(pbx: AsteriskEmulator, events: list[Event]) -> list[str]:
    problems: list[str] = []
    for event in events:
        problems += check_event(event)
    for record in pbx.requests:
        body = record.body
        if body is None or isinstance(body, str):
            continue
        if record.status >= 400:
            if not (isinstance(body, dict) and len(body) == 1
                    and isinstance(body.get("message", body.get("error")), str)):
                problems.append(f"{record.method} {record.path}: bad error body {body!r}")
            continue
        model = rest_model(record.method, record.path, body)
        if model is None:
            problems.append(f"{record.method} {record.path}: no model known for the reply")
            continue
        problems += check(model, body, f"{record.method} {record.path}")
    return problems


@pytest.fixture
async def pbx() -> AsyncIterator[AsteriskEmulator]:
    async with AsteriskEmulator(username=USER, password=PASSWORD) as emulator:
        # Short prompts keep the suite fast; durations are still honoured.
        emulator.sounds["hello-world"] = 0.3
        emulator.sounds["beep"] = 0.1
        yield emulator


@pytest.fixture
async def ari(pbx: AsteriskEmulator) -> AsyncIterator[AriTestClient]:
    async with aiohttp.ClientSession() as session:
        client = AriTestClient(pbx, session)
        await client.connect()
        yield client
        await client.close()
        problems = wire_problems(pbx, client.events)
        assert not problems, "\n".join(problems)
