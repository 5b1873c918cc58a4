"""What the call layer knows about a call when it asks for a decision. Plain data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pbx_router.intents.matcher import MatchResult


@dataclass(frozen=True, slots=True)
class QueueFacts:
    """Live state of one daemon-owned queue (supplied by the queues service)."""

    agents_available: int = 0
    callers_waiting: int = 0
    longest_wait_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "agents_available": self.agents_available,
            "callers_waiting": self.callers_waiting,
            "longest_wait_s": self.longest_wait_s,
        }


@dataclass(frozen=True, slots=True)
class Override:
    """A staff override from the console, e.g. "send refills to the front desk until 3 pm".

    ``kind``: ``redirect`` (needs ``target``), ``closed``/``open`` (force a calendar), or any
    word a rule tests with ``when: {override: {kind: ...}}``.
    ``scope``: ``all``, ``intent:NAME``, ``rule:NAME``, ``target:NAME``, ``queue:NAME`` or
    ``calendar:NAME``.
    """

    kind: str
    scope: str = "all"
    target: str | None = None
    author: str = ""
    reason: str = ""
    expires_at: dt.datetime | None = None

    def active(self, now: dt.datetime) -> bool:
        if self.expires_at is None:
            return True
        try:
            return self.expires_at > now
        except (
            TypeError
        ):  # naive vs aware: treat the naive one as UTC rather than crash
            expires = (
                self.expires_at
                if self.expires_at.tzinfo
                else self.expires_at.replace(tzinfo=dt.UTC)
            )
            moment = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
            return expires > moment

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "scope": self.scope,
            "target": self.target,
            "author": self.author,
            "reason": self.reason,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class CallFacts:
    """Everything a rule may look at. ``now`` should be timezone-aware; a naive one is read
    as wall-clock time in the rules file's ``settings.timezone``."""

    transcript: str = ""
    match: MatchResult | None = None
    now: dt.datetime = field(default_factory=_utc_now)
    caller_number: str | None = None
    caller_name: str | None = None
    dialled: str | None = None
    known_patient: bool | None = None
    recent_calls: Sequence[dt.datetime] = ()
    queues: Mapping[str, QueueFacts] = field(default_factory=dict)
    overrides: Sequence[Override] = ()
    attempt: int = 1
    language: str | None = "en"
    extra: Mapping[str, Any] = field(default_factory=dict)
