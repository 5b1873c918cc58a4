"""Where an emergency or crisis caller can end up, checked when a rules file is loaded.

The call layer (``calls/targets.py``) never sends an emergency caller to a callback, message,
voicemail, schedule or hangup: when the person they were sent to is closed, has nobody logged in,
overflows or does not answer, they move along ``settings.emergency.chain`` and, after it, to the
daemon's dialplan fallback. This module makes the file say so too: a file whose emergency paths,
read literally, end somewhere that is not a person is rejected, so an admin reading the file sees
what the daemon will do.

* every entry of ``settings.emergency.chain`` must be a defined human target;
* without a chain, no queue that emergencies reach (through a rule, the emergency target, or a
  queue's overflow) may overflow to a callback, message or voicemail: name the chain (the people
  emergency callers are passed to instead; the queue's non-human overflow then serves routine
  callers only) or give the queue a human overflow.

Pure: reads the validated ``RulesFile`` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pbx_router.queues.model import OverflowSpec
from pbx_router.rules.engine import HUMAN_KINDS
from pbx_router.rules.schema import RulesFile, When

# Conditions an understood emergency intent always meets: a rule with only these (for that
# intent) catches every such call, so later rules are not emergency paths for it.
_ALWAYS_TRUE_FOR_EMERGENCY = frozenset({"intent", "understood", "urgency"})

Problem = tuple[tuple[Any, ...], str]


def emergency_path_problems(spec: RulesFile) -> list[Problem]:
    """(path in the file, message) for every way an emergency caller could end at no person."""
    settings = spec.settings.emergency
    problems: list[Problem] = []
    for i, name in enumerate(settings.chain or ()):
        target = spec.targets.get(name)
        if target is None:
            problems.append((("settings", "emergency", "chain", i), f"undefined target '{name}'"))
        elif target.kind not in HUMAN_KINDS:
            problems.append((
                ("settings", "emergency", "chain", i),
                f"'{name}' is a {target.kind} target: every step of the emergency chain must reach a person"
                " (queue, endpoint or dialplan)",
            ))
    if settings.chain:
        # Emergency callers leave every queue along the chain, never by a queue's own overflow.
        return problems
    seen: set[tuple[str, str]] = set()
    for origin, name in _emergency_starts(spec):
        for queue, label, spec_, via in _overflows_from(spec, name):
            if spec_.kind not in ("voicemail", "callback", "message") and not _non_human_target(spec, spec_):
                continue
            if (queue, label) in seen:
                continue
            seen.add((queue, label))
            what = _describe(spec, spec_)
            route = f"{origin} sends emergency callers to queue '{via[0]}'" + (
                "".join(f", which overflows to queue '{q}'" for q in via[1:]))
            problems.append((
                ("queues", queue, label),
                f"an emergency path ends in {what}: {route}, and its {label} goes there. Emergency and crisis"
                " callers must reach a person: add settings.emergency.chain (the human targets they are passed"
                " to when a queue is closed, empty or overflowing; this overflow then serves routine callers"
                " only) or give the queue a human overflow",
            ))
    return problems


def _emergency_starts(spec: RulesFile) -> Iterator[tuple[str, str]]:
    """(who sends them, target name) for every human target an emergency call can be sent to."""
    emergency = spec.settings.emergency.target
    yield "settings.emergency.target", emergency
    urgent = [name for name, intent in spec.intents.items() if intent.urgency == "emergency"]
    for intent in urgent:
        for i, rule in enumerate(spec.rules):
            if not _applies(rule.when, intent):
                continue
            target = spec.targets.get(rule.then.target or "")
            # A non-human target is replaced by the engine's safety net (the emergency target).
            if target is not None and target.kind in HUMAN_KINDS:
                yield f"rules[{i}] '{rule.name}'", str(rule.then.target)
            if set(rule.when.model_dump(exclude_none=True)) <= _ALWAYS_TRUE_FOR_EMERGENCY:
                break


def _applies(when: When, intent: str) -> bool:
    if when.intent is not None and intent not in when.intent:
        return False
    if when.understood is False:
        return False
    return when.urgency is None or "emergency" in when.urgency


def _overflows_from(spec: RulesFile, target_name: str) -> Iterator[tuple[str, str, OverflowSpec, list[str]]]:
    """(queue, overflow label, overflow, queues on the way) reachable from a target by overflows."""
    target = spec.targets.get(target_name)
    if target is None or target.queue is None:
        return
    stack: list[list[str]] = [[str(target.queue)]]
    visited: set[str] = set()
    while stack:
        via = stack.pop()
        queue = via[-1]
        if queue in visited or queue not in spec.queues:
            continue  # not daemon-owned: Asterisk's Queue() in the dialplan, a person
        visited.add(queue)
        config = spec.queues[queue]
        for label in ("overflow_on_time", "overflow_on_length"):
            overflow: OverflowSpec | None = getattr(config, label)
            if overflow is None:
                continue
            yield queue, label, overflow, via
            nxt = overflow.queue
            if overflow.target is not None:
                named = spec.targets.get(overflow.target)
                nxt = str(named.queue) if named is not None and named.queue is not None else None
            if nxt is not None:
                stack.append([*via, nxt])


def _non_human_target(spec: RulesFile, overflow: OverflowSpec) -> bool:
    if overflow.target is None:
        return False
    named = spec.targets.get(overflow.target)
    return named is not None and named.kind not in HUMAN_KINDS


def _describe(spec: RulesFile, overflow: OverflowSpec) -> str:
    if overflow.target is not None:
        named = spec.targets.get(overflow.target)
        return f"{named.kind if named else 'unknown'} target '{overflow.target}'"
    return f"a {overflow.kind}"
