"""Test-side handle on one emulated channel (a caller, or an agent leg)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbx_router.testing.audio import CallerAudio

if TYPE_CHECKING:
    from pbx_router.testing.model import Fate
    from pbx_router.testing.pbx import Pbx

POLL_SECONDS = 0.01


@dataclass
class PlaybackRecord:
    playback_id: str
    media_uri: str
    started_at: float  # event-loop time
    stopped_at: float | None
    state: str


@dataclass(eq=False)
class SimulatedCall:
    _pbx: Pbx
    channel_id: str
    name: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)  # as sent to the app
    answered: bool = False
    playbacks: list[PlaybackRecord] = field(default_factory=list)
    fate: Fate = "in_stasis"
    continued_to: tuple[str, str, int] | None = None
    dtmf_plan: list[tuple[float, str]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.channel_id in self._pbx.channels

    @property
    def bridged_with(self) -> set[str]:
        channel = self._pbx.channels.get(self.channel_id)
        if channel is None or channel.bridge_id is None:
            return set()
        bridge = self._pbx.bridges.get(channel.bridge_id)
        return set() if bridge is None else {c for c in bridge.channels if c != self.channel_id}

    @property
    def event_types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def wait_for(self, predicate: Callable[[SimulatedCall], bool],
                       timeout: float = 5.0) -> None:
        """Poll until ``predicate(self)`` holds; TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            if loop.time() >= deadline:
                raise TimeoutError(f"{self.name or self.channel_id}: condition not met in "
                                   f"{timeout}s (fate={self.fate}, events={self.event_types})")
            await asyncio.sleep(POLL_SECONDS)

    async def hangup(self) -> None:
        """The far end hangs up (caller BYE, or agent BYE on an agent leg)."""
        channel = self._pbx.channels.get(self.channel_id)
        if channel is not None:
            self._pbx.remote_hangup(channel)
            await self._pbx.flush()

    async def say(self, audio: bytes | Path | str, after: float = 0.0) -> None:
        """The caller speaks (again): ``audio`` (a WAV file, or raw 8 kHz s16le) starts ``after``
        seconds from now, heard by whoever listens (snoop, bridge) as the first words were."""
        prepared = await asyncio.to_thread(CallerAudio.load, audio)
        channel = self._pbx.channels.get(self.channel_id)
        if channel is not None:
            self._pbx.caller_says(channel, prepared, after)

    async def send_dtmf(self, digit: str) -> None:
        channel = self._pbx.channels.get(self.channel_id)
        if channel is not None:
            for d in digit:
                self._pbx.caller_dtmf(channel, d)
            await self._pbx.flush()
