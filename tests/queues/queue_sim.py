"""A fake call layer for the queue policy: a fake clock, scripted agents and callers.

It performs the dispatcher's actions the way the real call layer will (originate legs, hang them
up, bridge, play, move callers) and checks, after every batch, the invariants a caller or an agent
would notice if broken: no agent rung for two callers, no leg left ringing for a caller who is gone,
every caller in exactly one place.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pbx_router.queues.actions import (
    Action,
    Announce,
    Bridge,
    CancelRings,
    Overflow,
    Queued,
    RingAgents,
)
from pbx_router.queues.model import QueuesSection
from pbx_router.queues.policy import Dispatcher

T0 = 1_700_000_000.0  # epoch seconds: the dispatcher's clock is wall-clock


def section(
    queues: Mapping[str, Mapping[str, Any]] | None = None,
    agents: int | Mapping[str, Mapping[str, Any]] = 3,
    **queue: Any,
) -> QueuesSection:
    """``section(strategy="round_robin", agents=3)``: one queue ``q`` with agents a1..aN."""
    if queues is None:
        queues = {"q": {"announce_every_s": None, "retry_s": 0, **queue}}
    if isinstance(agents, int):
        agents = {f"a{i}": {"queues": list(queues)} for i in range(1, agents + 1)}
    return QueuesSection.model_validate({"queues": dict(queues), "agents": dict(agents)})


def ep(n: int) -> str:
    return f"PJSIP/a{n}"


@dataclass
class AgentScript:
    """How an agent's phone behaves when rung: answer after ``answer_after`` s and talk
    ``talk_s`` s; ``None`` never answers; ``fail`` ("busy"/"unreachable") fails the leg at once."""

    answer_after: float | None = 1.0
    talk_s: float = 30.0
    fail: str | None = None


@dataclass
class CallerScript:
    queue: str = "q"
    arrive_at: float = 0.0
    priority: int = 5
    patience_s: float | None = None  # hangs up after this long in the queue
    skills: dict[str, int] = field(default_factory=dict)


@dataclass
class Sim:
    dispatcher: Dispatcher
    agents: dict[str, AgentScript] = field(default_factory=dict)
    now: float = T0
    outcome: dict[str, str] = field(default_factory=dict)  # caller -> answered/abandoned/overflowed:<reason>
    answered_by: dict[str, str] = field(default_factory=dict)
    rings: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)
    announcements: list[Announce] = field(default_factory=list)
    bridges: list[Bridge] = field(default_factory=list)
    overflows: list[Overflow] = field(default_factory=list)
    live_legs: dict[str, str] = field(default_factory=dict)  # agent -> caller (what "Asterisk" has ringing)
    in_queue: set[str] = field(default_factory=set)
    talking: dict[str, str] = field(default_factory=dict)
    _events: list[tuple[float, int, str, tuple[Any, ...]]] = field(default_factory=list)
    _seq: Iterable[int] = field(default_factory=itertools.count)

    @classmethod
    def of(cls, sec: QueuesSection, agents: Mapping[str, AgentScript] | None = None) -> Sim:
        sim = cls(Dispatcher(sec, T0))
        for a in sim.dispatcher.pool.all():
            sim.agents[a.endpoint] = (agents or {}).get(a.endpoint, AgentScript())
        return sim

    # -- scheduling ------------------------------------------------------------------------
    def at(self, t: float, kind: str, *args: Any) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, args))  # type: ignore[call-overload]

    def caller(self, caller_id: str, script: CallerScript) -> None:
        self.at(T0 + script.arrive_at, "arrive", caller_id, script)

    def run(self, until: float = 10_000.0) -> None:
        end = T0 + until
        while True:
            deadline = self.dispatcher.next_deadline()
            next_event = self._events[0][0] if self._events else None
            candidates = [t for t in (deadline, next_event) if t is not None]
            if not candidates or min(candidates) > end:
                return
            t = max(min(candidates), self.now)
            self.now = t
            if next_event is not None and next_event <= t:
                _, _, kind, args = heapq.heappop(self._events)
                self.perform(self._deliver(kind, *args))
            else:
                self.perform(self.dispatcher.step(t))

    def _deliver(self, kind: str, *args: Any) -> list[Action]:
        d, now = self.dispatcher, self.now
        if kind == "arrive":
            caller_id, script = args
            if script.patience_s is not None:
                self.at(now + script.patience_s, "hangup_if_waiting", caller_id)
            return d.join(caller_id, script.queue, now, priority=script.priority, skills=script.skills)
        if kind == "hangup_if_waiting":
            (caller_id,) = args
            if caller_id in self.in_queue:
                self.in_queue.discard(caller_id)
                self.outcome[caller_id] = "abandoned"
                return d.caller_left(caller_id, now)
            return []
        if kind == "answer":
            caller_id, agent = args
            if self.live_legs.get(agent) != caller_id:
                return []  # the leg was hung up before the phone answered
            return d.agent_answered(caller_id, agent, now)
        if kind == "fail":
            caller_id, agent, outcome = args
            if self.live_legs.get(agent) != caller_id:
                return []
            del self.live_legs[agent]
            return d.agent_leg_failed(caller_id, agent, now, outcome)
        if kind == "end_call":
            (caller_id,) = args
            if caller_id not in self.talking:
                return []
            del self.talking[caller_id]
            return d.call_ended(caller_id, now)
        if kind == "call":  # an arbitrary dispatcher method, e.g. set_presence
            name, call_args = args
            return getattr(d, name)(*call_args, now)
        raise AssertionError(kind)

    # -- the call layer ---------------------------------------------------------------------
    def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Queued):
                assert action.caller_id not in self.in_queue
                self.in_queue.add(action.caller_id)
            elif isinstance(action, RingAgents):
                assert action.caller_id in self.in_queue, f"ringing for {action.caller_id} who is not waiting"
                self.rings.append((self.now, action.caller_id, action.agents))
                for agent in action.agents:
                    assert agent not in self.live_legs, f"{agent} rung for {action.caller_id} while ringing for {self.live_legs[agent]}"
                    assert agent not in self.talking.values(), f"{agent} rung while talking"
                    self.live_legs[agent] = action.caller_id
                    script = self.agents[agent]
                    if script.fail:
                        self.at(self.now + 0.05, "fail", action.caller_id, agent, script.fail)
                    elif script.answer_after is not None:
                        self.at(self.now + script.answer_after, "answer", action.caller_id, agent)
            elif isinstance(action, CancelRings):
                for agent in action.agents:
                    assert agent != action.except_agent
                    if self.live_legs.get(agent) == action.caller_id:
                        del self.live_legs[agent]
            elif isinstance(action, Bridge):
                assert self.live_legs.get(action.agent) == action.caller_id
                del self.live_legs[action.agent]
                self.in_queue.discard(action.caller_id)
                self.talking[action.caller_id] = action.agent
                self.outcome[action.caller_id] = "answered"
                self.answered_by[action.caller_id] = action.agent
                self.bridges.append(action)
                self.at(self.now + self.agents[action.agent].talk_s, "end_call", action.caller_id)
            elif isinstance(action, Announce):
                assert action.caller_id in self.in_queue
                self.announcements.append(action)
            elif isinstance(action, Overflow):
                self.in_queue.discard(action.caller_id)
                self.overflows.append(action)
                self.outcome[action.caller_id] = f"overflowed:{action.reason}"
        self.check()

    def check(self) -> None:
        d = self.dispatcher
        ringing = d.ringing()
        assert ringing == self.live_legs, f"dispatcher thinks {ringing}, phones ring {self.live_legs}"
        waiting = {c.caller_id for c in d.waiting()}
        assert waiting == self.in_queue
        assert set(d.talking()) == set(self.talking)
        for caller in ringing.values():
            assert caller in waiting
        for name in d.queues:
            order = [c.order_key for c in d.waiting(name)]
            assert order == sorted(order)

    def outcomes(self) -> Counter[str]:
        return Counter(v.split(":")[0] for v in self.outcome.values())
