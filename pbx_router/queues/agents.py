"""Agent availability: staff presence + Asterisk device state + our own ring/talk/wrap-up tracking."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pbx_router.queues.model import AgentConfig
from pbx_router.queues.stats import AgentCounts

# Device states (ARI DeviceStateChanged / GET /deviceStates). UNKNOWN counts as free, as in
# app_queue: many channel drivers never report a state for an idle device.
DEVICE_FREE = frozenset({"NOT_INUSE", "UNKNOWN"})
DEVICE_UNREACHABLE = frozenset({"UNAVAILABLE", "INVALID"})
DEVICE_STATES = frozenset(
    {"UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD"}
)



@dataclass(slots=True)
class AgentState:
    config: AgentConfig
    order: int  # position in the YAML: the last tie-break, so choices are deterministic
    base_presence: str
    idle_since: float
    forced_presence: str | None = None  # from an active agent_presence override
    device: str = "UNKNOWN"
    ringing_for: str | None = None
    on_call_with: str | None = None
    on_call_queue: str | None = None
    answered_at: float = 0.0
    wrapup_until: float = 0.0
    cooldown_until: float = 0.0  # after a failed leg: do not hammer a broken phone
    calls_taken: dict[str, int] = field(default_factory=dict)
    failed_legs: int = 0
    unanswered_rings: int = 0

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    @property
    def presence(self) -> str:
        return self.forced_presence or self.base_presence

    def status(self, now: float) -> str:
        """available | ringing | on_call | wrapup | busy | paused | logged_out | unavailable."""
        if self.on_call_with is not None:
            return "on_call"
        if self.ringing_for is not None:
            return "ringing"
        if self.presence == "logged_out":
            return "logged_out"
        if self.presence == "paused":
            return "paused"
        if self.device in DEVICE_UNREACHABLE or now < self.cooldown_until:
            return "unavailable"
        if now < self.wrapup_until:
            return "wrapup"
        if self.device not in DEVICE_FREE:
            return "busy"  # on a call we did not place (direct call, another system)
        return "available"

    def to_dict(self) -> dict[str, Any]:
        return {
            "presence": self.base_presence,
            "idle_since": self.idle_since,
            "on_call_with": self.on_call_with,
            "on_call_queue": self.on_call_queue,
            "answered_at": self.answered_at,
            "wrapup_until": self.wrapup_until,
            "calls_taken": dict(self.calls_taken),
            "failed_legs": self.failed_legs,
            "unanswered_rings": self.unanswered_rings,
        }


class AgentPool:
    """Availability of every agent: presence + device state + our own ring/talk/wrap-up tracking."""

    def __init__(self, agents: Iterable[AgentConfig], now: float) -> None:
        self._agents: dict[str, AgentState] = {}
        for i, cfg in enumerate(agents):
            self._agents[cfg.endpoint] = AgentState(cfg, i, cfg.presence, idle_since=now)

    def __contains__(self, endpoint: object) -> bool:
        return endpoint in self._agents

    def get(self, endpoint: str) -> AgentState:
        return self._agents[endpoint]

    def all(self) -> list[AgentState]:
        return list(self._agents.values())

    def of_queue(self, queue: str) -> list[AgentState]:
        return [a for a in self._agents.values() if queue in a.config.queues]

    def available(self, queue: str, now: float) -> list[AgentState]:
        return [a for a in self.of_queue(queue) if a.status(now) == "available"]

    def counts(self, queue: str, now: float) -> AgentCounts:
        tally = {"available": 0, "busy": 0, "paused": 0, "logged_out": 0, "unavailable": 0}
        for a in self.of_queue(queue):
            status = a.status(now)
            key = "busy" if status in ("ringing", "on_call", "wrapup", "busy") else status
            tally[key] += 1
        return AgentCounts(**tally)

