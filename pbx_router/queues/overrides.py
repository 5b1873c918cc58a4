"""Staff overrides: data and evaluation (the admin API and CLI that create them live elsewhere).

An override is a decision a person made today that beats the YAML until it expires: close a queue,
send a queue's or an intent's calls elsewhere, put the whole line into after-hours mode, set an
agent's presence. Every one has an author, a reason and an expiry (forgotten overrides must not
route calls for ever) and is JSON round-trippable so it can be stored and audited.

Precedence: when several active overrides speak about the same thing (e.g. ``close_queue`` then
``open_queue`` for the same queue), the most recently created one wins. Scope ``all`` covers every
queue/intent for the queue and intent kinds.

Times are timezone-aware datetimes; ``at(epoch_seconds)`` converts the float clock the dispatcher
uses.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from pbx_router.queues.model import PRESENCES, OverflowSpec
from pbx_router.rules.facts import Override as RuleOverride

OverrideKind = Literal[
    "close_queue", "open_queue", "redirect_queue", "redirect_intent", "after_hours", "agent_presence"
]
OVERRIDE_KINDS: tuple[str, ...] = get_args(OverrideKind)
_QUEUE_KINDS = frozenset({"close_queue", "open_queue", "redirect_queue"})
_NEEDS_TARGET = frozenset({"redirect_queue", "redirect_intent", "agent_presence"})
MAX_TEXT = 500


def at(epoch_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC)


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")  # noqa: TRY004 - one error type for bad input
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


@dataclass(frozen=True, slots=True)
class Override:
    """One staff override.

    ``scope``: a queue name (queue kinds), an intent name (``redirect_intent``), an agent endpoint
    (``agent_presence``), or ``all``. ``target``: for redirects the name of a rules-file target;
    for ``close_queue`` an optional target for the callers (else the queue's ``overflow_on_time``,
    else back to the rules); for ``agent_presence`` the presence (logged_in/paused/logged_out).
    """

    kind: OverrideKind
    scope: str
    author: str
    reason: str
    created_at: dt.datetime
    expires_at: dt.datetime
    target: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if self.kind not in OVERRIDE_KINDS:
            raise ValueError(f"unknown override kind {self.kind!r} (one of {', '.join(OVERRIDE_KINDS)})")
        for name in ("scope", "author", "reason"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"override {name} must be a non-empty string")
            if len(value) > MAX_TEXT:
                raise ValueError(f"override {name} longer than {MAX_TEXT} characters")
        _aware(self.created_at, "created_at")
        _aware(self.expires_at, "expires_at")
        if self.expires_at <= self.created_at:
            raise ValueError("an override must expire after it was created")
        if self.kind in _NEEDS_TARGET and not self.target:
            raise ValueError(f"{self.kind} needs a target")
        if self.kind == "agent_presence":
            if self.target not in PRESENCES:
                raise ValueError(f"agent_presence target must be one of {', '.join(PRESENCES)}")
            if self.scope == "all":
                raise ValueError("agent_presence names one agent endpoint, not 'all'")
        if self.kind == "after_hours" and self.scope != "all":
            raise ValueError("after_hours applies to the whole line: scope must be 'all'")

    def active(self, now: dt.datetime) -> bool:
        return self.created_at <= now < self.expires_at

    def covers(self, kind_family: frozenset[str], scope: str) -> bool:
        return self.kind in kind_family and self.scope in (scope, "all")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "scope": self.scope,
            "target": self.target,
            "author": self.author,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Override:
        """Raise ValueError with the field name on malformed input."""
        if not isinstance(data, Mapping):
            raise ValueError("an override must be a JSON object")  # noqa: TRY004 - one error type for bad input
        unknown = set(data) - {"id", "kind", "scope", "target", "author", "reason", "created_at", "expires_at"}
        if unknown:
            raise ValueError(f"unknown override fields: {sorted(unknown)}")
        missing = [k for k in ("kind", "scope", "author", "reason", "created_at", "expires_at") if k not in data]
        if missing:
            raise ValueError(f"override missing fields {missing}")
        target = data.get("target")
        if target is not None and not isinstance(target, str):
            raise ValueError("override target must be a string")
        override = cls(
            kind=data["kind"],
            scope=data["scope"],
            author=data["author"],
            reason=data["reason"],
            created_at=dt.datetime.fromisoformat(str(data["created_at"])),
            expires_at=dt.datetime.fromisoformat(str(data["expires_at"])),
            target=target,
        )
        return override if data.get("id") is None else replace(override, id=str(data["id"]))

    def for_rules(self) -> RuleOverride | None:
        """The rules engine's view (``when: {override: ...}`` and its redirect handling).

        * ``redirect_queue``/``redirect_intent`` -> ``redirect`` scoped ``queue:X``/``intent:X``/``all``
        * ``after_hours`` -> ``closed`` scoped ``all`` (every calendar reads closed)
        * ``close_queue``/``open_queue`` -> same kind, scope ``queue:X``, for rule conditions
        * ``agent_presence`` -> nothing (it acts on the agent pool, not on routing)
        """
        kind: str
        if self.kind in ("redirect_queue", "redirect_intent"):
            prefix = "queue" if self.kind == "redirect_queue" else "intent"
            kind, scope = "redirect", ("all" if self.scope == "all" else f"{prefix}:{self.scope}")
        elif self.kind == "after_hours":
            kind, scope = "closed", "all"
        elif self.kind in ("close_queue", "open_queue"):
            kind, scope = self.kind, ("all" if self.scope == "all" else f"queue:{self.scope}")
        else:
            return None
        target = self.target if kind != "closed" else None
        return RuleOverride(
            kind=kind, scope=scope, target=target, author=self.author, reason=self.reason, expires_at=self.expires_at,
        )


@dataclass(frozen=True, slots=True)
class QueueDirective:
    """What overrides say about one queue right now."""

    state: Literal["open", "closed", "redirected"]
    target: OverflowSpec | None = None  # None with "closed": use the queue's own overflow / the rules
    override: Override | None = None

    @property
    def admits(self) -> bool:
        return self.state == "open"


OPEN = QueueDirective("open")


@dataclass(frozen=True, slots=True)
class OverrideSet:
    """An immutable collection; every change returns a new set (share it between tasks freely)."""

    items: tuple[Override, ...] = ()

    def add(self, override: Override) -> OverrideSet:
        if any(o.id == override.id for o in self.items):
            raise ValueError(f"override {override.id} already exists")
        return OverrideSet((*self.items, override))

    def cancel(self, override_id: str, now: dt.datetime) -> OverrideSet:
        """End an override now, keeping it in the record (expires_at moves to ``now``)."""
        out: list[Override] = []
        found = False
        for o in self.items:
            if o.id == override_id:
                found = True
                if o.active(now):
                    o = replace(o, expires_at=max(now, o.created_at + dt.timedelta(microseconds=1)))
            out.append(o)
        if not found:
            raise KeyError(override_id)
        return OverrideSet(tuple(out))

    def prune(self, now: dt.datetime, keep_for: dt.timedelta = dt.timedelta(days=1)) -> OverrideSet:
        """Drop overrides that expired more than ``keep_for`` ago (they stay in the store's record)."""
        return OverrideSet(tuple(o for o in self.items if o.expires_at + keep_for > now))

    def active(self, now: dt.datetime) -> list[Override]:
        """Active overrides, newest first."""
        live = [o for o in self.items if o.active(now)]
        live.sort(key=lambda o: o.created_at, reverse=True)
        return live

    def _latest(self, now: dt.datetime, family: frozenset[str], scope: str) -> Override | None:
        return next((o for o in self.active(now) if o.covers(family, scope)), None)

    def queue_directive(self, queue: str, now: dt.datetime) -> QueueDirective:
        latest = self._latest(now, _QUEUE_KINDS, queue)
        if latest is None or latest.kind == "open_queue":
            return OPEN
        target = OverflowSpec(target=latest.target) if latest.target else None
        return QueueDirective("closed" if latest.kind == "close_queue" else "redirected", target, latest)

    def intent_redirect(self, intent: str, now: dt.datetime) -> Override | None:
        return self._latest(now, frozenset({"redirect_intent"}), intent)

    def after_hours(self, now: dt.datetime) -> Override | None:
        return self._latest(now, frozenset({"after_hours"}), "all")

    def agent_presence(self, endpoint: str, now: dt.datetime) -> str | None:
        latest = self._latest(now, frozenset({"agent_presence"}), endpoint)
        return latest.target if latest is not None else None

    def presences(self, now: dt.datetime) -> dict[str, str]:
        """endpoint -> presence for every agent an active override speaks about."""
        out: dict[str, str] = {}
        for o in self.active(now):  # newest first: keep the first seen
            if o.kind == "agent_presence" and o.target is not None:
                out.setdefault(o.scope, o.target)
        return out

    def for_rules(self, now: dt.datetime) -> list[RuleOverride]:
        """Active overrides in the rules engine's terms (``CallFacts.overrides``), newest first."""
        return [r for o in self.active(now) if (r := o.for_rules()) is not None]

    def to_list(self) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self.items]

    @classmethod
    def from_list(cls, data: Iterable[Mapping[str, Any]]) -> tuple[OverrideSet, list[str]]:
        """Rebuild from stored JSON; malformed entries are skipped and described, not fatal."""
        items: list[Override] = []
        problems: list[str] = []
        for i, raw in enumerate(data):
            try:
                items.append(Override.from_dict(raw))
            except (ValueError, TypeError) as exc:
                problems.append(f"override #{i}: {exc}")
        return cls(tuple(items)), problems
