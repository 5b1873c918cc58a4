"""Queue and agent policy for daemon-owned queues: who waits in what order, which agents ring,
and what happens on every event. Pure: no I/O, no event loop, no clock reads.

The call layer drives one :class:`Dispatcher`:

* it feeds events (``join``, ``caller_left``, ``agent_answered``, ``agent_leg_failed``,
  ``call_ended``, ``set_presence``, ``set_device_state``, ``set_overrides``), each of which
  returns the actions to perform now;
* it calls ``step(now)`` at ``next_deadline()`` (ring timeouts, maximum waits, announcements,
  wrap-up ends, retries, override expiries) and performs what comes back.

Actions are explicit and idempotent to perform: :class:`Queued`, :class:`RingAgents`,
:class:`CancelRings`, :class:`Bridge`, :class:`Announce`, :class:`Overflow`. Agents are named by
their endpoint (``PJSIP/agent1``), callers by an id the call layer chooses (the channel id).

Time: ``now`` is float seconds on **one** clock for the whole dispatcher. Use wall-clock epoch
seconds (``time.time()``) because arrival times are persisted and must still mean something after
a daemon restart; all policy uses differences, and ``restore(shift=...)`` can move a snapshot.

Priorities: lower is more urgent (the rules file gives emergencies 1); equal priorities are
served in arrival order. Agent ``priority``: lower is preferred.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pbx_router.log import get_logger
from pbx_router.queues.actions import (
    Action,
    Announce,
    Bridge,
    CancelRings,
    Overflow,
    OverflowReason,
    Queued,
    RingAgents,
)
from pbx_router.queues.agents import DEVICE_STATES, AgentPool, AgentState
from pbx_router.queues.announce import announcement_media
from pbx_router.queues.model import PRESENCES, OverflowSpec, QueuesSection
from pbx_router.queues.overrides import OPEN, OverrideSet, QueueDirective, at
from pbx_router.queues.state import HANDLE_SAMPLES, QueuedCaller, QueueState
from pbx_router.queues.stats import QueueCounters, QueueSnapshot
from pbx_router.queues.strategies import (
    RingStrategy,
    RoundRobin,
    SkillsWithPriority,
    make_strategy,
)
from pbx_router.rules.facts import QueueFacts

__all__ = [
    "DEFAULT_PRIORITY",
    "Action",
    "AgentPool",
    "AgentState",
    "Announce",
    "Bridge",
    "CancelRings",
    "Dispatcher",
    "Overflow",
    "QueueState",
    "Queued",
    "QueuedCaller",
    "RingAgents",
    "RingStrategy",
]

log = get_logger(__name__)

DEFAULT_PRIORITY = 5
SNAPSHOT_VERSION = 1
LegOutcome = Literal["busy", "unreachable", "congestion", "rejected", "error", "no_answer"]




@dataclass(slots=True)
class _Waiting:
    """Run-time state of one waiting caller beyond its place in line."""

    caller: QueuedCaller
    legs: dict[str, float] = field(default_factory=dict)  # agent endpoint -> ring deadline
    tried: set[str] = field(default_factory=set)  # agents rung without answer in this round
    next_attempt_at: float = 0.0
    last_leg_end: float = 0.0  # a new round starts retry_s after the last leg of the old one
    next_announce_at: float | None = None
    # Leaves as soon as nobody staffs the queue, whatever the queue's own leave_when_empty says:
    # set for emergency callers, who must never wait for agents who are not there.
    leave_when_empty: bool = False


class Dispatcher:
    """All daemon-owned queues and their shared agent pool. One per daemon, driven by one task."""

    def __init__(self, section: QueuesSection, now: float, overrides: OverrideSet | None = None) -> None:
        self.section = section
        self.queues: dict[str, QueueState] = {name: QueueState(cfg) for name, cfg in section.queues.items()}
        self.pool = AgentPool(section.agents.values(), now)
        self.counters: dict[str, QueueCounters] = {name: QueueCounters() for name in section.queues}
        self.strategies: dict[str, RingStrategy] = {
            name: make_strategy(cfg, [a.endpoint for a in section.agents_of(name)])
            for name, cfg in section.queues.items()
        }
        self.overrides = overrides or OverrideSet()
        self.ignored_events = 0  # events about unknown callers/agents: dropped and counted
        self._waiting: dict[str, _Waiting] = {}
        self._ringing: dict[str, str] = {}  # agent -> caller, mirrors AgentState.ringing_for
        self._talking: dict[str, str] = {}  # caller -> agent
        self._seq = itertools.count()
        self._now = now

    # -- queries -----------------------------------------------------------------------------

    def waiting(self, queue: str | None = None) -> list[QueuedCaller]:
        """Callers waiting, in service order (one queue, or all queues interleaved)."""
        if queue is not None:
            return self.queues[queue].ordered()
        return sorted((w.caller for w in self._waiting.values()), key=lambda c: c.order_key)

    def ringing(self) -> dict[str, str]:
        """agent -> caller for every leg currently ringing."""
        return dict(self._ringing)

    def talking(self) -> dict[str, str]:
        """caller -> agent for every bridged conversation."""
        return dict(self._talking)

    def legs_of(self, caller_id: str) -> tuple[str, ...]:
        w = self._waiting.get(caller_id)
        return tuple(w.legs) if w else ()

    def directive(self, queue: str, now: float) -> QueueDirective:
        return self.overrides.queue_directive(queue, at(now)) if self.overrides.items else OPEN

    def snapshot(self, queue: str, now: float) -> QueueSnapshot:
        q = self.queues[queue]
        counts = self.pool.counts(queue, now)
        return QueueSnapshot(
            queue=queue,
            waiting=len(q),
            longest_wait_s=q.longest_wait(now),
            agents=counts,
            counters=self.counters[queue],
            service_level_s=q.config.service_level_s,
            state=self.directive(queue, now).state,
            expected_wait_s=q.expected_wait(len(q) + 1, counts.staffed, counts.available),
        )

    def snapshots(self, now: float) -> dict[str, QueueSnapshot]:
        return {name: self.snapshot(name, now) for name in self.queues}

    def facts(self, now: float) -> dict[str, QueueFacts]:
        """``CallFacts.queues`` for the rules engine."""
        return {name: snap.facts() for name, snap in self.snapshots(now).items()}

    def calls_view(self, now: float) -> list[dict[str, Any]]:
        """Live queue calls for ``GET /api/calls`` (ids only: no numbers or names here)."""
        out: list[dict[str, Any]] = []
        for name, q in self.queues.items():
            for pos, c in enumerate(q.ordered(), 1):
                w = self._waiting[c.caller_id]
                out.append({
                    "caller_id": c.caller_id, "queue": name, "state": "ringing" if w.legs else "waiting",
                    "position": pos, "priority": c.priority, "waited_s": round(now - c.joined_at, 1),
                    "ringing": sorted(w.legs),
                })
        for caller_id, agent in self._talking.items():
            a = self.pool.get(agent)
            out.append({
                "caller_id": caller_id, "queue": a.on_call_queue, "state": "talking", "agent": agent,
                "talking_s": round(now - a.answered_at, 1),
            })
        return out

    def agents_view(self, now: float) -> list[dict[str, Any]]:
        return [
            {
                "endpoint": a.endpoint, "name": a.config.name, "queues": list(a.config.queues),
                "presence": a.presence, "presence_override": a.forced_presence is not None,
                "device": a.device, "status": a.status(now), "calls_taken": dict(a.calls_taken),
                "failed_legs": a.failed_legs, "unanswered_rings": a.unanswered_rings,
            }
            for a in self.pool.all()
        ]

    def next_deadline(self) -> float | None:
        """When ``step`` next has something to do on its own (None: only events will tell)."""
        times: list[float] = []
        now = self._now
        for w in self._waiting.values():
            cfg = self.queues[w.caller.queue].config
            times.extend(w.legs.values())
            if cfg.max_wait_s is not None:
                times.append(w.caller.joined_at + cfg.max_wait_s)
            if w.next_attempt_at > now:
                times.append(w.next_attempt_at)
            if w.next_announce_at is not None:
                times.append(w.next_announce_at)
        if self._waiting:
            for a in self.pool.all():
                times.extend(t for t in (a.wrapup_until, a.cooldown_until) if t > now)
        moment = at(now)
        times.extend(o.expires_at.timestamp() for o in self.overrides.items if o.expires_at > moment)
        times.extend(o.created_at.timestamp() for o in self.overrides.items if o.created_at > moment)
        return min(times) if times else None

    # -- events ------------------------------------------------------------------------------

    def join(
        self,
        caller_id: str,
        queue: str,
        now: float,
        *,
        priority: int = DEFAULT_PRIORITY,
        skills: Mapping[str, int] | None = None,
        joined_at: float | None = None,
        leave_when_empty: bool = False,
    ) -> list[Action]:
        """A caller is routed to ``queue``. ``joined_at`` keeps the arrival time of a caller moved
        here by an overflow (it then keeps its place among callers of the same priority).
        ``leave_when_empty``: this caller overflows (reason ``no_agents``) whenever no agent
        staffs the queue, even if the queue itself would keep callers waiting."""
        self._now = max(self._now, now)
        arrived = now if joined_at is None else joined_at
        q = self.queues.get(queue)
        if q is None:
            log.warning("queue.join_unknown_queue", queue=queue)
            return [Overflow(caller_id, queue, None, "unknown_queue", priority, arrived)]
        if caller_id in self._waiting or caller_id in self._talking:
            # A repeated join is a call-layer slip; the caller keeps its place.
            log.warning("queue.join_duplicate", queue=queue)
            self.ignored_events += 1
            return []
        counters = self.counters[queue]
        counters.offered += 1
        directive = self.directive(queue, now)
        if directive.state != "open":
            target = directive.target or (q.config.overflow_on_time if directive.state == "closed" else None)
            counters.overflowed[directive.state] += 1
            return [Overflow(caller_id, queue, target, directive.state, priority, arrived)]
        if (q.config.leave_when_empty or leave_when_empty) and self.pool.counts(queue, now).staffed == 0:
            counters.overflowed["no_agents"] += 1
            return [Overflow(caller_id, queue, q.config.overflow_on_time, "no_agents", priority, arrived)]
        if q.is_full():
            counters.overflowed["max_len"] += 1
            return [Overflow(caller_id, queue, q.config.overflow_on_length, "max_len", priority, arrived)]
        caller = QueuedCaller(caller_id, queue, int(priority), arrived, next(self._seq), dict(skills or {}))
        position = q.add(caller)
        announce_at = now if q.config.announce_every_s else None
        self._waiting[caller_id] = _Waiting(caller, next_announce_at=announce_at, leave_when_empty=leave_when_empty)
        queued = Queued(caller_id, queue, q.config.bridge_id, q.config.moh_class, position)
        return [queued, *self.step(now)]

    def caller_left(self, caller_id: str, now: float) -> list[Action]:
        """The caller hung up: while waiting that is an abandonment (ringing legs are cancelled);
        while talking it ends the call."""
        self._now = max(self._now, now)
        if caller_id in self._talking:
            return self.call_ended(caller_id, now)
        w = self._waiting.get(caller_id)
        if w is None:
            self.ignored_events += 1
            return []
        actions = self._release_caller(w, "caller_left")
        counters = self.counters[w.caller.queue]
        counters.abandoned += 1
        counters.wait_abandoned_s += max(0.0, now - w.caller.joined_at)
        return actions + self.step(now)

    def agent_answered(self, caller_id: str, agent: str, now: float) -> list[Action]:
        """An agent leg answered. Returns Bridge first, then cancels of the other legs.

        A late answer (the caller left, or another agent won) gets that leg hung up instead."""
        self._now = max(self._now, now)
        w = self._waiting.get(caller_id)
        if w is None or agent not in w.legs or self._ringing.get(agent) != caller_id:
            self.ignored_events += 1
            if agent in self.pool and self._ringing.get(agent) == caller_id:
                self._clear_leg(agent)
            return [CancelRings(caller_id, (agent,), "late_answer")]
        others = tuple(a for a in w.legs if a != agent)
        for other in others:
            self._clear_leg(other)
        self._clear_leg(agent)
        del self._waiting[caller_id]
        queue = w.caller.queue
        self.queues[queue].remove(caller_id)
        state = self.pool.get(agent)
        state.on_call_with, state.on_call_queue, state.answered_at = caller_id, queue, now
        state.calls_taken[queue] = state.calls_taken.get(queue, 0) + 1
        self._talking[caller_id] = agent
        waited = max(0.0, now - w.caller.joined_at)
        counters = self.counters[queue]
        counters.answered += 1
        counters.wait_answered_s += waited
        if waited <= self.queues[queue].config.service_level_s:
            counters.answered_within_sl += 1
        actions: list[Action] = [Bridge(caller_id, agent, queue, waited)]
        if others:
            actions.append(CancelRings(caller_id, others, "answered_elsewhere", except_agent=agent))
        return actions + self.step(now)

    def agent_leg_failed(self, caller_id: str, agent: str, now: float, outcome: LegOutcome = "busy") -> list[Action]:
        """An agent leg ended without an answer. Failures (busy, unreachable, ...) are counted and
        the agent is skipped for ``retry_s``; ``no_answer`` just moves on to the next agent."""
        self._now = max(self._now, now)
        w = self._waiting.get(caller_id)
        if w is None or agent not in w.legs:
            self.ignored_events += 1
            return []
        self._clear_leg(agent)
        del w.legs[agent]
        w.tried.add(agent)
        w.last_leg_end = now
        state = self.pool.get(agent)
        counters = self.counters[w.caller.queue]
        if outcome == "no_answer":
            state.unanswered_rings += 1
            counters.unanswered_rings += 1
        else:
            state.failed_legs += 1
            counters.failed_legs += 1
            state.cooldown_until = now + self.queues[w.caller.queue].config.retry_s
            log.info("queue.agent_leg_failed", queue=w.caller.queue, agent=agent, outcome=outcome)
        return self.step(now)

    def call_ended(self, caller_id: str, now: float) -> list[Action]:
        """The bridged conversation is over (either side hung up): the agent goes to wrap-up."""
        self._now = max(self._now, now)
        agent = self._talking.pop(caller_id, None)
        if agent is None:
            self.ignored_events += 1
            return []
        state = self.pool.get(agent)
        queue = state.on_call_queue or ""
        q = self.queues.get(queue)
        # ``is not None``: a QueueState with nobody waiting is falsy (it has __len__).
        wrapup = q.config.wrapup_s if q is not None else 0.0
        if q is not None:
            q.record_handle(max(0.0, now - state.answered_at) + wrapup)
        state.on_call_with = state.on_call_queue = None
        state.wrapup_until = now + wrapup
        state.idle_since = now
        return self.step(now)

    def set_presence(self, agent: str, presence: str, now: float) -> list[Action]:
        """Staff presence (logged_in / paused / logged_out). Pausing a ringing agent cancels the leg."""
        self._now = max(self._now, now)
        if agent not in self.pool or presence not in PRESENCES:
            self.ignored_events += 1
            return []
        self.pool.get(agent).base_presence = presence
        return self.step(now)

    def set_device_state(self, agent: str, state: str, now: float) -> list[Action]:
        """From ARI DeviceStateChanged / GET /deviceStates/{name}."""
        self._now = max(self._now, now)
        if agent not in self.pool or state not in DEVICE_STATES:
            self.ignored_events += 1
            return []
        self.pool.get(agent).device = state
        return self.step(now)

    def set_overrides(self, overrides: OverrideSet, now: float) -> list[Action]:
        """New staff overrides; they act in this very step."""
        self._now = max(self._now, now)
        self.overrides = overrides
        return self.step(now)

    # -- the clock ---------------------------------------------------------------------------

    def step(self, now: float) -> list[Action]:
        """Everything due at ``now``: override effects, ring timeouts, overflows, new rings and
        announcements. Safe to call at any time, as often as you like."""
        self._now = max(self._now, now)
        actions: list[Action] = []
        self._apply_presence_overrides(now, actions)
        self._expire_rings(now, actions)
        self._overflow_due(now, actions)
        self._assign(now, actions)
        self._announce(now, actions)
        return actions

    def _apply_presence_overrides(self, now: float, actions: list[Action]) -> None:
        forced = self.overrides.presences(at(now)) if self.overrides.items else {}
        for a in self.pool.all():
            a.forced_presence = forced.get(a.endpoint)
            if a.ringing_for is not None and a.presence != "logged_in":
                caller_id = a.ringing_for
                self._clear_leg(a.endpoint)
                w = self._waiting.get(caller_id)
                if w is not None:
                    w.legs.pop(a.endpoint, None)
                actions.append(CancelRings(caller_id, (a.endpoint,), "agent_" + a.presence))

    def _expire_rings(self, now: float, actions: list[Action]) -> None:
        for w in list(self._waiting.values()):
            expired = tuple(agent for agent, deadline in w.legs.items() if deadline <= now)
            if not expired:
                continue
            counters = self.counters[w.caller.queue]
            w.last_leg_end = now
            for agent in expired:
                del w.legs[agent]
                self._clear_leg(agent)
                w.tried.add(agent)
                self.pool.get(agent).unanswered_rings += 1
                counters.unanswered_rings += 1
            actions.append(CancelRings(w.caller.caller_id, expired, "ring_timeout"))

    def _overflow_due(self, now: float, actions: list[Action]) -> None:
        for name, q in self.queues.items():
            if not len(q):
                continue
            cfg = q.config
            directive = self.directive(name, now)
            nobody = self.pool.counts(name, now).staffed == 0
            for caller in q.ordered():
                reason: OverflowReason
                target: OverflowSpec | None
                w = self._waiting[caller.caller_id]
                if directive.state != "open":
                    reason = directive.state
                    target = directive.target or (cfg.overflow_on_time if directive.state == "closed" else None)
                elif cfg.max_wait_s is not None and now - caller.joined_at >= cfg.max_wait_s:
                    reason, target = "max_wait", cfg.overflow_on_time
                elif nobody and (cfg.leave_when_empty or w.leave_when_empty):
                    reason, target = "no_agents", cfg.overflow_on_time
                else:
                    continue
                actions.extend(self._release_caller(w, reason))
                self.counters[name].overflowed[reason] += 1
                actions.append(Overflow(caller.caller_id, name, target, reason, caller.priority, caller.joined_at))

    def _assign(self, now: float, actions: list[Action]) -> None:
        # Urgent callers first across all queues: an agent in two queues serves the more urgent
        # (then the earlier) caller. Each caller takes what its strategy allows from what is left.
        for caller in self.waiting():
            w = self._waiting[caller.caller_id]
            cfg = self.queues[caller.queue].config
            strategy = self.strategies[caller.queue]
            if w.next_attempt_at > now or (w.legs and not strategy.rings_many):
                continue
            free = [a for a in self.pool.available(caller.queue, now) if a.endpoint not in w.legs]
            if isinstance(strategy, SkillsWithPriority):
                needs = strategy.needs(caller)
                free = [a for a in free if strategy.qualifies(a, needs)]
            fresh = [a for a in free if a.endpoint not in w.tried]
            if not fresh and free and not w.legs:
                # Everyone free was tried this round: start a new round retry_s after it ended.
                w.tried.clear()
                w.next_attempt_at = w.last_leg_end + cfg.retry_s
                if w.next_attempt_at > now:
                    continue
                fresh = free
            chosen = strategy.select(caller, fresh, now) if fresh else []
            if not chosen:
                continue
            deadline = now + cfg.ring_timeout_s
            for a in chosen:
                a.ringing_for = caller.caller_id
                self._ringing[a.endpoint] = caller.caller_id
                w.legs[a.endpoint] = deadline
            actions.append(
                RingAgents(caller.caller_id, caller.queue, tuple(a.endpoint for a in chosen), cfg.ring_timeout_s)
            )

    def _announce(self, now: float, actions: list[Action]) -> None:
        for name, q in self.queues.items():
            cfg = q.config
            if not cfg.announce_every_s or not len(q):
                continue
            counts = self.pool.counts(name, now)
            for position, caller in enumerate(q.ordered(), 1):
                w = self._waiting[caller.caller_id]
                if w.next_announce_at is None or w.next_announce_at > now:
                    continue
                w.next_announce_at = now + cfg.announce_every_s
                if w.legs and now - caller.joined_at < cfg.announce_every_s:
                    continue  # an agent is ringing right after joining: no need to talk over it
                expected = q.expected_wait(position, counts.staffed, counts.available)
                media = announcement_media(
                    position, expected, say_position=cfg.announce_position, say_holdtime=cfg.announce_holdtime,
                )
                if media:
                    actions.append(Announce(caller.caller_id, name, position, expected, media))

    # -- internals ---------------------------------------------------------------------------

    def _clear_leg(self, agent: str) -> None:
        self._ringing.pop(agent, None)
        if agent in self.pool:
            self.pool.get(agent).ringing_for = None

    def _release_caller(self, w: _Waiting, reason: str) -> list[Action]:
        """Take a waiting caller out of line, cancelling its legs."""
        legs = tuple(w.legs)
        for agent in legs:
            self._clear_leg(agent)
        w.legs.clear()
        self._waiting.pop(w.caller.caller_id, None)
        self.queues[w.caller.queue].remove(w.caller.caller_id)
        return [CancelRings(w.caller.caller_id, legs, reason)] if legs else []

    # -- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe) to store; ``restore`` rebuilds membership and order from it.

        Ringing legs are not kept: after a restart the call layer hangs up agent legs it no longer
        owns and the callers are rung again. Conversations in progress are kept (agents stay busy).
        """
        return {
            "version": SNAPSHOT_VERSION,
            "queues": {
                name: {
                    **q.to_dict(),
                    "round_robin_last": getattr(self.strategies[name], "last", None),
                    "counters": self.counters[name].to_dict(),
                }
                for name, q in self.queues.items()
            },
            "agents": {a.endpoint: a.to_dict() for a in self.pool.all()},
        }

    def restore(self, data: Mapping[str, Any], now: float, *, shift: float = 0.0) -> list[str]:
        """Load a ``to_dict`` snapshot into this (fresh) dispatcher. Returns problems: entries that
        could not be restored (unknown queue/agent, malformed) are skipped and described there.
        ``shift`` is added to every stored time (to move a snapshot onto another clock)."""
        if not isinstance(data, Mapping) or data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"not a queue snapshot of version {SNAPSHOT_VERSION}")
        if self._waiting or self._talking:
            raise ValueError("restore into a fresh dispatcher only")
        self._now = max(self._now, now)
        problems: list[str] = []
        queues = data.get("queues", {})
        if not isinstance(queues, Mapping):
            raise ValueError("snapshot 'queues' must be an object")  # noqa: TRY004 - one error type for bad input
        for name, qdata in queues.items():
            if name not in self.queues:
                problems.append(f"queue {name!r} no longer configured: its callers were not restored")
                continue
            if not isinstance(qdata, Mapping):
                problems.append(f"queue {name!r}: malformed")
                continue
            entries = []
            for raw in qdata.get("callers", []):
                try:
                    entries.append((
                        str(raw["caller_id"]), int(raw["priority"]), float(raw["joined_at"]) + shift,
                        {str(k): int(v) for k, v in dict(raw.get("skills") or {}).items()},
                    ))
                except (KeyError, TypeError, ValueError):
                    problems.append(f"queue {name!r}: malformed caller entry skipped")
            problems.extend(self._add_restored(name, entries, now, count=False))
            for t in qdata.get("handle_times", [])[-HANDLE_SAMPLES:]:
                if isinstance(t, int | float):
                    self.queues[name].record_handle(float(t))
            strategy = self.strategies[name]
            if isinstance(strategy, RoundRobin) and isinstance(qdata.get("round_robin_last"), str):
                strategy.last = qdata["round_robin_last"]
            try:
                self.counters[name] = QueueCounters.from_dict(dict(qdata.get("counters") or {}))
            except (TypeError, ValueError) as exc:
                problems.append(f"queue {name!r}: counters reset ({exc})")
        agents = data.get("agents", {})
        for endpoint, adata in (agents.items() if isinstance(agents, Mapping) else ()):
            if endpoint not in self.pool or not isinstance(adata, Mapping):
                problems.append(f"agent {endpoint!r} no longer configured or malformed")
                continue
            a = self.pool.get(endpoint)
            try:
                if adata.get("presence") in PRESENCES:
                    a.base_presence = adata["presence"]
                a.idle_since = float(adata.get("idle_since", now)) + shift
                a.wrapup_until = float(adata.get("wrapup_until", 0.0)) + shift
                a.calls_taken = {str(k): int(v) for k, v in dict(adata.get("calls_taken") or {}).items()}
                a.failed_legs = int(adata.get("failed_legs", 0))
                a.unanswered_rings = int(adata.get("unanswered_rings", 0))
                talking = adata.get("on_call_with")
                if isinstance(talking, str) and talking not in self._waiting and talking not in self._talking:
                    a.on_call_with = talking
                    a.on_call_queue = adata.get("on_call_queue") if adata.get("on_call_queue") in self.queues else None
                    a.answered_at = float(adata.get("answered_at", now)) + shift
                    self._talking[talking] = endpoint
            except (TypeError, ValueError):
                problems.append(f"agent {endpoint!r}: malformed state skipped")
        return problems

    def restore_callers(
        self, queue: str, entries: Iterable[tuple[str, int, float]], now: float,
        *, leave_when_empty: Iterable[str] = (),
    ) -> tuple[list[Action], list[str]]:
        """Rebuild one queue from what the call layer reads back from Asterisk's holding bridge
        and the database: (caller id, priority, joined_at). Order follows priority then joined_at
        (input order breaks ties). ``leave_when_empty``: caller ids that joined with that flag.
        Returns (actions due now, problems)."""
        self._now = max(self._now, now)
        if queue not in self.queues:
            return [], [f"queue {queue!r} not configured: {len(list(entries))} caller(s) not restored"]
        rows: list[tuple[str, int, float, dict[str, int]]] = [(c, p, j, {}) for c, p, j in entries]
        problems = self._add_restored(queue, rows, now, count=True)
        for caller_id in leave_when_empty:
            w = self._waiting.get(caller_id)
            if w is not None and w.caller.queue == queue:
                w.leave_when_empty = True
        return self.step(now), problems

    def _add_restored(
        self, queue: str, entries: Sequence[tuple[str, int, float, dict[str, int]]], now: float, *, count: bool
    ) -> list[str]:
        # ``count``: callers read back from Asterisk were offered before this process's counters
        # began; count them so offered == answered + abandoned + overflowed + waiting holds.
        problems: list[str] = []
        q = self.queues[queue]
        for caller_id, priority, joined_at, skills in entries:
            if caller_id in self._waiting or caller_id in self._talking:
                problems.append(f"caller {caller_id} listed twice: kept the first")
                continue
            caller = QueuedCaller(caller_id, queue, priority, joined_at, next(self._seq), skills)
            q.add(caller)
            if count:
                self.counters[queue].offered += 1
            self._waiting[caller_id] = _Waiting(caller, next_announce_at=now if q.config.announce_every_s else None)
        return problems
