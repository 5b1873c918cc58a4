"""A routing decision and its trace: plain data, JSON-serialisable with ``to_dict()``.

The trace lists every rule considered up to the winner, each condition with the value it saw
and whether it held. Rules ruled out by the intent index are not evaluated on the hot path;
their (single, failing) intent condition is reconstructed when the trace is first read, so a
1,000-rule file still decides in well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    """A routing target in Asterisk terms (see rules schema ``targets``)."""

    name: str
    kind: str  # queue | endpoint | dialplan | voicemail | message | schedule | callback
    params: Mapping[str, Any]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, **dict(self.params)}


@dataclass(frozen=True, slots=True)
class ConditionTrace:
    condition: str
    expected: Any
    saw: Any
    held: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "expected": self.expected,
            "saw": self.saw,
            "held": self.held,
        }


@dataclass(frozen=True, slots=True)
class RuleTrace:
    rule: str
    index: int
    matched: bool
    conditions: tuple[ConditionTrace, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "index": self.index,
            "matched": self.matched,
            "conditions": [c.to_dict() for c in self.conditions],
        }


@dataclass(slots=True)
class Decision:
    """Exactly one per call turn: what to do, where, how urgently, and why."""

    action: str
    target: Target | None
    priority: int
    rule: str
    message: str | None
    reason: str
    intent: str | None = None
    confidence: float = 0.0
    rules_version: str = ""
    notes: tuple[str, ...] = ()
    # routine | urgent | emergency (crisis too): the call layer never sends an emergency to
    # anything but a person, wherever the caller goes next (calls/targets.py).
    urgency: str = "routine"
    _trace_builder: Callable[[], tuple[RuleTrace, ...]] | None = field(
        default=None, repr=False, compare=False
    )
    _trace: tuple[RuleTrace, ...] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def target_name(self) -> str | None:
        return self.target.name if self.target else None

    @property
    def trace(self) -> tuple[RuleTrace, ...]:
        if self._trace is None:
            self._trace = self._trace_builder() if self._trace_builder else ()
            self._trace_builder = None
        return self._trace

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target.to_dict() if self.target else None,
            "priority": self.priority,
            "rule": self.rule,
            "message": self.message,
            "reason": self.reason,
            "intent": self.intent,
            "confidence": round(self.confidence, 3),
            "rules_version": self.rules_version,
            "notes": list(self.notes),
            "urgency": self.urgency,
            "trace": [t.to_dict() for t in self.trace],
        }
