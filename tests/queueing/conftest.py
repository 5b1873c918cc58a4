"""Daemon-owned queues end to end: the daemon under test with a small rules file whose calls all
go to queues, scripted agent phones in the emulator, and callers that press a key to be routed
(no speech: fast and deterministic)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pbx_router.calls.queueing import QueueService
from pbx_router.testing import AgentBehaviour, AsteriskEmulator, SimulatedCall

from helpers import eventually

# Keypad: 1 = routine (priority 5), 2 = urgent (priority 1), 3 = the second queue.
BASE_RULES: dict[str, Any] = {
    "version": 1,
    # Emergencies leave q1 for a person (the fallback context), never by q1's own overflow.
    "settings": {"timezone": "UTC", "emergency": {"target": "q1", "chain": ["q1", "person"]}},
    "intents": {
        "emergency": {"urgency": "emergency", "digit": "9", "keywords": {"chest pain": 1.0}},
        "routine": {"digit": "1", "keywords": {"question": 1.0}},
        "urgent": {"digit": "2", "keywords": {"urgent": 1.0}},
        "other": {"digit": "3", "keywords": {"billing": 1.0}},
    },
    "targets": {
        "q1": {"queue": "q1"},
        "q2": {"queue": "q2"},
        "person": {"dialplan": {"context": "pbx-router-fallback"}},
    },
    "rules": [
        {"name": "urgent", "when": {"intent": "urgent"}, "then": {"target": "q1", "priority": 1}},
        {"name": "other", "when": {"intent": "other"}, "then": {"target": "q2"}},
        {"name": "everyone", "then": {"target": "q1"}},
    ],
}
QUEUE_DEFAULTS: dict[str, Any] = {"ring_timeout_s": 1.0, "retry_s": 0.2, "announce_every_s": None, "wrapup_s": 0}


def rules_yaml(queues: Mapping[str, Mapping[str, Any]], agents: Mapping[str, Mapping[str, Any]]) -> str:
    doc = dict(BASE_RULES)
    doc["queues"] = {name: {**QUEUE_DEFAULTS, **q} for name, q in queues.items()}
    if "q2" not in doc["queues"]:
        doc["queues"]["q2"] = dict(QUEUE_DEFAULTS)
    doc["agents"] = {name: dict(a) for name, a in agents.items()}
    return yaml.safe_dump(doc, sort_keys=False)


def agents_for(n: int, queues: list[str] | None = None, **extra: Any) -> dict[str, dict[str, Any]]:
    return {f"agent{i}": {"endpoint": f"PJSIP/agent{i}", "queues": queues or ["q1"], **extra} for i in range(1, n + 1)}


class QueueBed:
    """One test's world: emulator + daemon + helpers that read like what a caller hears."""

    def __init__(self, pbx: AsteriskEmulator, start_daemon: Any, tmp_path: Path) -> None:
        self.pbx = pbx
        self._start = start_daemon
        self.tmp_path = tmp_path
        self.daemon: Any = None
        self._n = 0

    async def start(
        self, queues: Mapping[str, Mapping[str, Any]], agents: Mapping[str, Mapping[str, Any]],
        behaviours: Mapping[str, AgentBehaviour] | None = None, *, db: bool = True,
    ) -> Any:
        for name, a in agents.items():
            endpoint = a.get("endpoint", f"PJSIP/{name}")
            if endpoint not in self.pbx.endpoints:
                self.pbx.add_endpoint(endpoint, (behaviours or {}).get(endpoint, AgentBehaviour.answer_after(0.0)))
        path = self.tmp_path / "rules.yaml"
        path.write_text(rules_yaml(queues, agents))
        extra = f"rules: {path}\nspeech: {{enabled: false}}\n"
        self.daemon = await (self._start(extra) if db else self._start(extra, db_url=None))
        await eventually(lambda: self.service is not None, what="queue service built")
        return self.daemon

    @property
    def service(self) -> QueueService:
        return self.daemon.app.brain.queue_service  # type: ignore[no-any-return]

    async def call(self, key: str = "1", *, at: float = 0.05, number: str | None = None, **kw: Any) -> SimulatedCall:
        self._n += 1
        return await self.pbx.place_call(caller_number=number or f"+1555700{self._n:04d}", dialled="100",
                                         dtmf=[(at, key)], **kw)

    def holding(self, queue: str = "q1") -> list[str]:
        bridge = self.pbx.bridges.get(f"queue-{queue}")
        return list(bridge.channels) if bridge is not None else []

    async def queued(self, call: SimulatedCall, queue: str = "q1", timeout: float = 10) -> None:
        await eventually(lambda: call.channel_id in self.holding(queue), timeout=timeout,
                         what=f"caller in holding bridge queue-{queue}")

    def agent_of(self, call: SimulatedCall) -> str | None:
        """The agent endpoint the caller is talking to, if any."""
        chan = self.pbx.channels.get(call.channel_id)
        bridge = self.pbx.bridges.get(chan.bridge_id) if chan is not None and chan.bridge_id else None
        if bridge is None or bridge.bridge_type == "holding":
            return None
        for peer in call.bridged_with:
            chan = self.pbx.channels.get(peer)
            if chan is not None and chan.endpoint:
                return str(chan.endpoint)
        return None

    async def answered(self, call: SimulatedCall, timeout: float = 10) -> str:
        """Wait until the caller talks to an agent (a holding bridge with other callers does not
        count, although the emulator calls that "bridged" too); the agent's endpoint."""
        return await eventually(lambda: self.agent_of(call), timeout=timeout, what="caller talking to an agent")

    def ringing(self, endpoint: str) -> int:
        return len([c for c in self.pbx.endpoint(endpoint).channels if c.alive])

    def snapshot(self, queue: str = "q1") -> dict[str, Any]:
        return next(s for s in self.service.queues_view() if s["queue"] == queue)

    async def settled(self, timeout: float = 10) -> None:
        """No call left in the daemon, nothing of ours left in Asterisk."""
        await eventually(lambda: not self.daemon.supervisor.calls, timeout=timeout, what="all calls ended")
        await eventually(lambda: not any(c.startswith("pbxr-") for c in self.pbx.channels), timeout=timeout,
                         what="no agent legs left")
        await eventually(lambda: not any(b.startswith("pbxr-") for b in self.pbx.bridges), timeout=timeout,
                         what="no mixing bridges left")


BedFactory = Callable[[], Awaitable[QueueBed]]


@pytest.fixture
def bed(pbx: AsteriskEmulator, start_daemon: Any, tmp_path: Path) -> QueueBed:
    pbx.sounds["hello-world"] = 0.05
    for ctx in ("router-queue", "clinic-voicemail", "clinic-after-hours"):
        pbx.add_context(ctx)
    return QueueBed(pbx, start_daemon, tmp_path)
