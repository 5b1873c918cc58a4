"""Ring strategies: ring-all, longest-idle, round-robin, fewest-calls, skills-with-priority.

Small classes behind one Protocol; the dispatcher hands each the agents that are free and not yet
tried for this caller in this round, and rings what comes back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from pbx_router.queues.agents import AgentState
from pbx_router.queues.model import QueueConfig
from pbx_router.queues.state import QueuedCaller


class RingStrategy(Protocol):
    """Picks whom to ring for one caller among agents that are free and not yet tried this round.

    ``candidates`` come in YAML order. Returning several agents rings them together.
    """

    name: str
    rings_many: bool

    def select(self, caller: QueuedCaller, candidates: Sequence[AgentState], now: float) -> list[AgentState]: ...


class RingAll:
    name = "ring_all"
    rings_many = True

    def select(self, caller: QueuedCaller, candidates: Sequence[AgentState], now: float) -> list[AgentState]:
        return list(candidates)


class LongestIdle:
    """The agent whose last call ended longest ago (never-called agents: since they were loaded)."""

    name = "longest_idle"
    rings_many = False

    def select(self, caller: QueuedCaller, candidates: Sequence[AgentState], now: float) -> list[AgentState]:
        return [min(candidates, key=lambda a: (a.idle_since, a.config.priority, a.order))] if candidates else []


class FewestCalls:
    """The agent who has taken the fewest calls from this queue."""

    name = "fewest_calls"
    rings_many = False

    def select(self, caller: QueuedCaller, candidates: Sequence[AgentState], now: float) -> list[AgentState]:
        if not candidates:
            return []
        return [min(candidates, key=lambda a: (a.calls_taken.get(caller.queue, 0), a.idle_since, a.order))]


class RoundRobin:
    """The next agent after the last one rung, in YAML order, wrapping around ("rrmemory")."""

    name = "round_robin"
    rings_many = False

    def __init__(self, order: Sequence[str]) -> None:
        self._order = {endpoint: i for i, endpoint in enumerate(order)}
        self.last: str | None = None

    def select(self, caller: QueuedCaller, candidates: Sequence[AgentState], now: float) -> list[AgentState]:
        if not candidates:
            return []
        last = self._order.get(self.last, -1) if self.last is not None else -1
        size = max(len(self._order), 1)
        chosen = min(candidates, key=lambda a: (self._order.get(a.endpoint, 0) - last - 1) % size)
        self.last = chosen.endpoint
        return [chosen]


class SkillsWithPriority:
    """Only agents holding every needed skill (queue's ``required_skills`` merged with the
    caller's) at the needed level; the best priority first, then the strongest skills, then the
    longest idle."""

    name = "skills"
    rings_many = False

    def __init__(self, required: Mapping[str, int]) -> None:
        self.required = dict(required)

    def needs(self, caller: QueuedCaller) -> dict[str, int]:
        needs = dict(self.required)
        for skill, level in caller.skills.items():
            needs[skill] = max(level, needs.get(skill, 0))
        return needs

    def qualifies(self, agent: AgentState, needs: Mapping[str, int]) -> bool:
        return all(agent.config.skills.get(s, -1) >= lvl for s, lvl in needs.items())

    def select(self, caller: QueuedCaller, candidates: Sequence[AgentState], now: float) -> list[AgentState]:
        needs = self.needs(caller)
        fit = [a for a in candidates if self.qualifies(a, needs)]
        if not fit:
            return []
        best = min(
            fit,
            key=lambda a: (a.config.priority, -sum(a.config.skills.get(s, 0) for s in needs), a.idle_since, a.order),
        )
        return [best]


def make_strategy(config: QueueConfig, agent_order: Sequence[str]) -> RingStrategy:
    if config.strategy == "ring_all":
        return RingAll()
    if config.strategy == "longest_idle":
        return LongestIdle()
    if config.strategy == "fewest_calls":
        return FewestCalls()
    if config.strategy == "round_robin":
        return RoundRobin(agent_order)
    return SkillsWithPriority(config.required_skills)

