"""Per-queue counters and the live snapshot shown at ``GET /api/queues`` and fed to rules.

Accounting identity, kept by the dispatcher and checked by the tests:
``offered == answered + abandoned + overflowed + waiting`` (a caller refused at the door because
the queue was full or closed counts as offered and overflowed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pbx_router.rules.facts import QueueFacts


@dataclass(slots=True)
class QueueCounters:
    """Since the daemon started (or since the restored snapshot)."""

    offered: int = 0
    answered: int = 0
    answered_within_sl: int = 0
    abandoned: int = 0
    overflowed: Counter[str] = field(default_factory=Counter)  # by reason
    failed_legs: int = 0  # agent legs that failed (busy, unreachable): skipped and counted
    unanswered_rings: int = 0  # ring timeouts / no-answer legs
    wait_answered_s: float = 0.0  # total wait of answered callers, for the average
    wait_abandoned_s: float = 0.0

    @property
    def overflowed_total(self) -> int:
        return sum(self.overflowed.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "answered": self.answered,
            "answered_within_sl": self.answered_within_sl,
            "abandoned": self.abandoned,
            "overflowed": self.overflowed_total,
            "overflowed_by_reason": dict(sorted(self.overflowed.items())),
            "failed_legs": self.failed_legs,
            "unanswered_rings": self.unanswered_rings,
            "wait_answered_s": round(self.wait_answered_s, 3),
            "wait_abandoned_s": round(self.wait_abandoned_s, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueCounters:
        def num(key: str) -> int:
            value = data.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"counter {key!r} must be a non-negative integer")
            return value

        by_reason = data.get("overflowed_by_reason", {})
        if not isinstance(by_reason, dict) or not all(isinstance(v, int) and v >= 0 for v in by_reason.values()):
            raise ValueError("overflowed_by_reason must map reasons to counts")
        return cls(
            offered=num("offered"),
            answered=num("answered"),
            answered_within_sl=num("answered_within_sl"),
            abandoned=num("abandoned"),
            overflowed=Counter({str(k): v for k, v in by_reason.items()}),
            failed_legs=num("failed_legs"),
            unanswered_rings=num("unanswered_rings"),
            wait_answered_s=float(data.get("wait_answered_s", 0.0)),
            wait_abandoned_s=float(data.get("wait_abandoned_s", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class AgentCounts:
    """How the agents of one queue stand right now."""

    available: int = 0
    busy: int = 0  # ringing, talking, in wrap-up, or in use on another call
    paused: int = 0
    logged_out: int = 0
    unavailable: int = 0  # logged in, but the device is unreachable/invalid or cooling down

    @property
    def staffed(self) -> int:
        """Logged in, not paused and reachable: those who will take calls, now or soon (paused
        agents do not staff a queue, as in app_queue's leavewhenempty)."""
        return self.available + self.busy


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    queue: str
    waiting: int
    longest_wait_s: float
    agents: AgentCounts
    counters: QueueCounters
    service_level_s: float
    state: str = "open"  # open | closed | redirected (staff overrides)
    expected_wait_s: float | None = None  # for a caller joining now

    @property
    def service_level_pct(self) -> float | None:
        if not self.counters.answered:
            return None
        return 100.0 * self.counters.answered_within_sl / self.counters.answered

    def facts(self) -> QueueFacts:
        """What rule conditions see (``when: {queue: {name: ..., callers_waiting_at_least: ...}}``)."""
        return QueueFacts(
            agents_available=self.agents.available,
            callers_waiting=self.waiting,
            longest_wait_s=self.longest_wait_s,
        )

    def to_dict(self) -> dict[str, Any]:
        pct = self.service_level_pct
        return {
            "queue": self.queue,
            "state": self.state,
            "waiting": self.waiting,
            "longest_wait_s": round(self.longest_wait_s, 1),
            "expected_wait_s": None if self.expected_wait_s is None else round(self.expected_wait_s, 1),
            "agents": {
                "available": self.agents.available,
                "busy": self.agents.busy,
                "paused": self.agents.paused,
                "logged_out": self.agents.logged_out,
                "unavailable": self.agents.unavailable,
            },
            **self.counters.to_dict(),
            "service_level_s": self.service_level_s,
            "service_level_pct": None if pct is None else round(pct, 1),
        }
