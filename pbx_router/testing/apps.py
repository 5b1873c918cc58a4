"""Stasis applications and their event websockets: who gets which event, and in what order."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pbx_router.log import get_logger

log = get_logger(__name__)

SOCKET_QUEUE_LIMIT = 10_000


class EventSocket:
    """One events websocket. A single writer task sends frames in the order they were queued."""

    def __init__(self, ws: web.WebSocketResponse, apps: list[str]) -> None:
        self.ws = ws
        self.apps = apps
        self.silenced = False  # replaced by a newer socket: stays open, receives nothing
        self.dropped = 0
        self._queue: asyncio.Queue[str] = asyncio.Queue(SOCKET_QUEUE_LIMIT)
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name="emulator-ws-writer")

    def push(self, text: str) -> bool:
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def _write(self) -> None:
        while True:
            text = await self._queue.get()
            try:
                if not self.ws.closed:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:  # peer went away mid-send
                log.debug("emulator_ws_send_failed", error=str(exc))
            finally:
                self._queue.task_done()

    async def flush(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if not self.ws.closed:
            await self.ws.close()


@dataclass
class StasisApp:
    name: str
    socket: EventSocket | None = None
    channel_ids: list[str] = field(default_factory=list)
    bridge_ids: list[str] = field(default_factory=list)
    endpoint_ids: list[str] = field(default_factory=list)
    device_names: list[str] = field(default_factory=list)
    subscribe_all: bool = False
    missed: int = 0  # events raised while no socket was connected ("missed message")

    @property
    def active(self) -> bool:
        return self.socket is not None

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "channel_ids": list(self.channel_ids),
                "bridge_ids": list(self.bridge_ids), "endpoint_ids": list(self.endpoint_ids),
                "device_names": list(self.device_names), "events_allowed": [],
                "events_disallowed": []}

    def subscribes_endpoint(self, endpoint: str | None) -> bool:
        if endpoint is None:
            return False
        tech = endpoint.split("/", 1)[0]
        return endpoint in self.endpoint_ids or tech in self.endpoint_ids

    def send(self, event: dict[str, Any]) -> bool:
        if self.socket is None:
            self.missed += 1
            return False
        return self.socket.push(json.dumps(event, separators=(",", ":")))
