"""Compile rules into small closures once per file version; ``decide`` walks them in order.

First matching rule wins; the mandatory unconditional last rule guarantees one decision.
After the choice, two things may change it, both recorded in ``Decision.notes``:
  * an active staff ``redirect`` override whose scope covers the call;
  * the emergency safety net: an emergency never ends in self-service, and always carries
    the emergency instruction and a human / on-call target.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pbx_router.intents.matcher import MatchResult
from pbx_router.log import get_logger
from pbx_router.rules.calendar import Calendar, CalendarState
from pbx_router.rules.decision import ConditionTrace, Decision, RuleTrace, Target
from pbx_router.rules.facts import CallFacts, Override
from pbx_router.rules.schema import (
    DEFAULT_ACTION,
    WEEKDAYS,
    Rule,
    RulesFile,
    When,
    parse_hhmm,
)

if TYPE_CHECKING:
    from pbx_router.rules.loader import RuleSet

log = get_logger(__name__)

HUMAN_KINDS = frozenset({"queue", "endpoint", "dialplan"})
SELF_SERVICE_ACTIONS = frozenset(
    {"schedule", "message", "voicemail", "callback", "hangup", "reprompt", "keypad"}
)

Check = Callable[["_Ctx"], tuple[Any, bool]]


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    label: str
    expected: Any
    check: Check


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int
    name: str
    intents: frozenset[str] | None
    conditions: tuple[CompiledCondition, ...]
    action: str
    target: Target | None
    priority: int
    message: str | None
    reason: str | None

    @property
    def unconditional(self) -> bool:
        return not self.conditions


class _Ctx:
    """Per-decision facts, derived once; calendar states computed lazily and cached."""

    __slots__ = (
        "_states",
        "calendars",
        "confidence",
        "facts",
        "intent",
        "match",
        "now",
        "overrides",
        "tz",
        "understood",
        "urgency",
    )

    def __init__(self, rs: RuleSet, facts: CallFacts, request: str | None = None) -> None:
        self.facts = facts
        self.tz: ZoneInfo = rs.timezone
        now = (
            facts.now if isinstance(facts.now, dt.datetime) else dt.datetime.now(dt.UTC)
        )
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=self.tz)
        match = facts.match if isinstance(facts.match, MatchResult) else None
        self.match = match
        self.understood = bool(match and match.understood)
        self.intent = match.intent if match else None
        self.confidence = match.confidence if match else 0.0
        self.urgency = match.urgency if (match and self.understood) else "routine"
        if request is not None and match is not None:
            # One of two requests in the turn, decided as if it had been the only one.
            score = next((s for s in match.intents if s.intent == request), None)
            if score is not None:
                self.intent, self.confidence, self.urgency = request, score.confidence, score.urgency
        self.calendars = rs.calendars
        self.overrides: list[Override] = [
            o
            for o in (facts.overrides or ())
            if isinstance(o, Override) and o.active(self.now)
        ]
        self._states: dict[str, CalendarState] = {}

    def calendar_state(self, name: str) -> CalendarState:
        state = self._states.get(name)
        if state is None:
            forced = next(
                (
                    o
                    for o in self.overrides
                    if o.kind in ("open", "closed")
                    and o.scope in ("all", f"calendar:{name}")
                ),
                None,
            )
            if forced is not None:
                state = CalendarState(
                    forced.kind == "open",
                    f"{forced.kind} by override ({forced.reason or forced.author or 'staff'})",
                )
            else:
                state = self.calendars[name].state(self.now)
            self._states[name] = state
        return state


# -- condition builders -----------------------------------------------------------------------


def _intent_cond(names: frozenset[str], expected: list[str]) -> CompiledCondition:
    def check(ctx: _Ctx) -> tuple[Any, bool]:
        saw = {"intent": ctx.intent, "confidence": round(ctx.confidence, 3)}
        return saw, ctx.understood and ctx.intent in names

    return CompiledCondition("intent", expected, check)


def _compile_when(
    when: When, rs_calendars: dict[str, Calendar], lists: dict[str, list[str]]
) -> list[CompiledCondition]:
    conds: list[CompiledCondition] = []
    if when.intent is not None:
        conds.append(_intent_cond(frozenset(when.intent), list(when.intent)))
    if when.understood is not None:
        want = when.understood
        conds.append(
            CompiledCondition(
                "understood", want, lambda c: (c.understood, c.understood == want)
            )
        )
    if when.min_confidence is not None:
        floor = when.min_confidence
        conds.append(
            CompiledCondition(
                "min_confidence",
                floor,
                lambda c: (round(c.confidence, 3), c.confidence >= floor),
            )
        )
    if when.confidence_below is not None:
        ceiling = when.confidence_below
        conds.append(
            CompiledCondition(
                "confidence_below",
                ceiling,
                lambda c: (round(c.confidence, 3), c.confidence < ceiling),
            )
        )
    if when.urgency is not None:
        urgencies = frozenset(when.urgency)
        conds.append(
            CompiledCondition(
                "urgency",
                list(when.urgency),
                lambda c: (c.urgency, c.urgency in urgencies),
            )
        )
    if when.attempt is not None:
        attempt = when.attempt
        conds.append(
            CompiledCondition(
                "attempt",
                attempt,
                lambda c: (c.facts.attempt, c.facts.attempt == attempt),
            )
        )
    if when.attempt_at_least is not None:
        least = when.attempt_at_least
        conds.append(
            CompiledCondition(
                "attempt_at_least",
                least,
                lambda c: (c.facts.attempt, c.facts.attempt >= least),
            )
        )
    if when.open is not None:
        name = when.open
        conds.append(CompiledCondition("open", name, lambda c: _state(c, name, True)))
    if when.closed is not None:
        cname = when.closed
        conds.append(
            CompiledCondition("closed", cname, lambda c: _state(c, cname, False))
        )
    if when.window is not None:
        conds.append(_window_cond(when, rs_calendars))
    if when.known_patient is not None:
        kp = when.known_patient
        conds.append(
            CompiledCondition(
                "known_patient",
                kp,
                lambda c: (c.facts.known_patient, c.facts.known_patient is kp),
            )
        )
    if when.calls_within is not None:
        conds.append(
            _calls_within_cond(when.calls_within.days, when.calls_within.at_least)
        )
    if when.repeat_caller_today is not None:
        conds.append(_repeat_today_cond(when.repeat_caller_today))
    if when.caller_matches is not None:
        conds.append(
            _caller_cond(
                "caller_matches",
                list(when.caller_matches),
                list(when.caller_matches),
                True,
            )
        )
    if when.caller_in is not None:
        conds.append(
            _caller_cond(
                "caller_in", when.caller_in, lists.get(when.caller_in, []), True
            )
        )
    if when.caller_not_in is not None:
        conds.append(
            _caller_cond(
                "caller_not_in",
                when.caller_not_in,
                lists.get(when.caller_not_in, []),
                False,
            )
        )
    if when.language is not None:
        langs = frozenset(x.lower() for x in when.language)
        conds.append(
            CompiledCondition(
                "language", list(when.language), lambda c: _language(c, langs)
            )
        )
    if when.dialled is not None:
        dialled = frozenset(when.dialled)
        conds.append(
            CompiledCondition(
                "dialled",
                list(when.dialled),
                lambda c: (c.facts.dialled, c.facts.dialled in dialled),
            )
        )
    for q in when.queue or ():
        conds.append(_queue_cond(q.model_dump(exclude_none=True)))
    if when.override is not None:
        kind, scope = when.override.kind, when.override.scope
        conds.append(
            CompiledCondition(
                "override",
                when.override.model_dump(exclude_none=True),
                lambda c: _override(c, kind, scope),
            )
        )
    return conds


def _state(ctx: _Ctx, name: str, want_open: bool) -> tuple[Any, bool]:
    state = ctx.calendar_state(name)
    return state.why, state.open == want_open


def _window_cond(when: When, calendars: dict[str, Calendar]) -> CompiledCondition:
    window = when.window
    assert window is not None
    tz = (
        ZoneInfo(window.timezone)
        if window.timezone
        else (calendars[window.calendar].tz if window.calendar in calendars else None)
    )
    days = frozenset(WEEKDAYS.index(d) for d in window.days)
    start, end = parse_hhmm(window.start), parse_hhmm(window.end)

    def check(ctx: _Ctx) -> tuple[Any, bool]:
        local = ctx.now.astimezone(tz or ctx.tz)
        minute = local.hour * 60 + local.minute
        inside = (
            start <= minute < end if start <= end else (minute >= start or minute < end)
        )
        return (
            f"{WEEKDAYS[local.weekday()]} {local:%H:%M} {local.tzname()}",
            local.weekday() in days and inside,
        )

    return CompiledCondition(
        "window", window.model_dump(by_alias=True, exclude_none=True), check
    )


def _earlier_calls(ctx: _Ctx) -> list[dt.datetime]:
    out = []
    for when in ctx.facts.recent_calls or ():
        if not isinstance(when, dt.datetime):
            continue
        aware = when if when.tzinfo else when.replace(tzinfo=ctx.tz)
        if aware < ctx.now:
            out.append(aware)
    return out


def _calls_within_cond(days: float, at_least: int) -> CompiledCondition:
    span = dt.timedelta(days=days)

    def check(ctx: _Ctx) -> tuple[Any, bool]:
        count = sum(1 for when in _earlier_calls(ctx) if ctx.now - when <= span)
        return count, count >= at_least

    return CompiledCondition(
        "calls_within", {"days": days, "at_least": at_least}, check
    )


def _repeat_today_cond(want: bool) -> CompiledCondition:
    def check(ctx: _Ctx) -> tuple[Any, bool]:
        today = ctx.now.astimezone(ctx.tz).date()
        count = sum(
            1 for when in _earlier_calls(ctx) if when.astimezone(ctx.tz).date() == today
        )
        return count, (count > 0) == want

    return CompiledCondition("repeat_caller_today", want, check)


def _caller_cond(
    label: str, expected: Any, patterns: list[str], want_in: bool
) -> CompiledCondition:
    exact = frozenset(p for p in patterns if not any(ch in p for ch in "*?["))
    globs = [p for p in patterns if p not in exact]

    def check(ctx: _Ctx) -> tuple[Any, bool]:
        number = ctx.facts.caller_number
        # The number itself is PHI: the trace shows only whether it matched.
        if not number:
            return None, not want_in
        hit = number in exact or any(fnmatch.fnmatchcase(number, g) for g in globs)
        return ("listed" if hit else "not listed"), hit == want_in

    return CompiledCondition(label, expected, check)


def _language(ctx: _Ctx, langs: frozenset[str]) -> tuple[Any, bool]:
    lang = (ctx.facts.language or "").lower()
    return ctx.facts.language, lang in langs or lang.split("-")[0] in langs


def _queue_cond(spec: dict[str, Any]) -> CompiledCondition:
    name = spec["name"]
    bounds = [
        (k.rsplit("_at_", 1)[0], k.endswith("_at_least"), v)
        for k, v in spec.items()
        if k != "name"
    ]

    def check(ctx: _Ctx) -> tuple[Any, bool]:
        facts = (ctx.facts.queues or {}).get(name)
        if facts is None:
            return None, False
        held = True
        for field_name, is_min, bound in bounds:
            value = getattr(facts, field_name)
            held = held and (value >= bound if is_min else value <= bound)
        return facts.to_dict(), held

    return CompiledCondition(f"queue:{name}", spec, check)


def _override(ctx: _Ctx, kind: str, scope: str | None) -> tuple[Any, bool]:
    hits = [
        o
        for o in ctx.overrides
        if o.kind == kind and (scope is None or o.scope == scope)
    ]
    return [f"{o.kind}@{o.scope}" for o in hits], bool(hits)


# -- compile ----------------------------------------------------------------------------------


def build_target(name: str, spec: Any) -> Target:
    kind = spec.kind
    raw = getattr(spec, kind)
    if isinstance(raw, str):
        params: dict[str, Any] = {kind: raw}
    else:
        params = raw.model_dump()
    return Target(name, kind, params, spec.description)


def compile_rules(
    spec: RulesFile, calendars: dict[str, Calendar], targets: dict[str, Target]
) -> list[CompiledRule]:
    compiled = []
    for index, rule in enumerate(spec.rules):
        compiled.append(_compile_rule(index, rule, calendars, targets, spec.lists))
    return compiled


def _compile_rule(
    index: int,
    rule: Rule,
    calendars: dict[str, Calendar],
    targets: dict[str, Target],
    lists: dict[str, list[str]],
) -> CompiledRule:
    target = targets.get(rule.then.target) if rule.then.target else None
    action = rule.then.action or (DEFAULT_ACTION[target.kind] if target else "hangup")
    return CompiledRule(
        index=index,
        name=rule.name,
        intents=frozenset(rule.when.intent) if rule.when.intent is not None else None,
        conditions=tuple(_compile_when(rule.when, calendars, lists)),
        action=action,
        target=target,
        priority=rule.then.priority,
        message=rule.then.message,
        reason=rule.then.reason,
    )


def index_by_intent(
    rules: Sequence[CompiledRule], intents: Sequence[str]
) -> dict[str | None, tuple[int, ...]]:
    """For each possible understood intent (None = not understood): the rules worth evaluating."""
    index: dict[str | None, tuple[int, ...]] = {}
    for key in [None, *intents]:
        index[key] = tuple(
            r.index
            for r in rules
            if r.intents is None or (key is not None and key in r.intents)
        )
    return index


# -- decide -----------------------------------------------------------------------------------


def decide(rs: RuleSet, facts: CallFacts) -> Decision:
    """Exactly one decision for any facts; never raises (an internal error takes the fallback)."""
    try:
        return _decide(rs, facts)
    except Exception as exc:  # noqa: BLE001 - the phones must keep working whatever a rule or fact does
        log.error(
            "decide_failed",
            error=type(exc).__name__,
            detail=str(exc)[:200],
            rules_version=rs.version,
        )
        return _last_resort(
            rs, f"internal error ({type(exc).__name__}); fallback rule used"
        )


def _decide(rs: RuleSet, facts: CallFacts) -> Decision:
    match = facts.match if isinstance(facts.match, MatchResult) else None
    if (
        match is not None
        and match.understood
        and len(match.requests) > 1
        and match.urgency != "emergency"
    ):
        return _decide_requests(rs, facts, match)
    return _decide_one(rs, facts, _Ctx(rs, facts))


def _decide_requests(rs: RuleSet, facts: CallFacts, match: MatchResult) -> Decision:
    """Two requests in one turn: the rules decide which is served first. Each is decided as if
    alone; the one whose deciding rule comes first in the file wins (file order is the admin's
    priority), and the decision says what the other request was."""
    index = {rule.name: rule.index for rule in rs.rules}
    options = [
        (index.get(d.rule, len(rs.rules)), pos, d)
        for pos, d in enumerate(_decide_one(rs, facts, _Ctx(rs, facts, r)) for r in match.requests)
    ]
    options.sort(key=lambda o: (o[0], o[1]))
    chosen = options[0][2]
    others = [d.intent for _, _, d in options[1:] if d.intent]
    note = (
        f"two requests ({', '.join(match.requests)}): rule '{chosen.rule}' comes first in the file;"
        f" also asked for {', '.join(others)}"
    )
    return dataclasses.replace(chosen, notes=(*chosen.notes, note))


def _decide_one(rs: RuleSet, facts: CallFacts, ctx: _Ctx) -> Decision:
    key = ctx.intent if ctx.understood else None
    candidates = rs.by_intent.get(key, rs.by_intent[None])
    evaluated: list[tuple[int, tuple[tuple[Any, bool], ...], bool]] = []
    chosen: CompiledRule | None = None
    for index in candidates:
        rule = rs.rules[index]
        results: list[tuple[Any, bool]] = []
        ok = True
        for cond in rule.conditions:
            saw, held = cond.check(ctx)
            results.append((saw, held))
            if not held:
                ok = False
                break  # later conditions are not evaluated (and not shown) once one fails
        evaluated.append((index, tuple(results), ok))
        if ok:
            chosen = rule
            break
    if chosen is None:  # unreachable for a validated file; kept so decide() cannot fail
        chosen = rs.rules[-1]
    notes: list[str] = []
    action, target, priority, message = (
        chosen.action,
        chosen.target,
        chosen.priority,
        chosen.message,
    )
    held_parts = [
        f"{c.label}={_short(r[0])}"
        for c, r in zip(chosen.conditions, evaluated[-1][1] if evaluated else (), strict=False)
    ]
    reason = chosen.reason or (
        f"rule '{chosen.name}' matched: " + ", ".join(held_parts)
        if held_parts
        else f"rule '{chosen.name}' (fallback): no earlier rule matched"
    )

    # Staff redirects: a human decision made today beats the file, except it may not move an
    # emergency anywhere but to a human.
    if target is not None:
        for o in ctx.overrides:
            if o.kind != "redirect" or not o.target:
                continue
            scopes = {
                "all",
                f"intent:{ctx.intent}",
                f"rule:{chosen.name}",
                f"target:{target.name}",
            }
            if target.kind == "queue":
                scopes.add(f"queue:{target.params.get('queue')}")
            if o.scope not in scopes:
                continue
            new = rs.targets.get(o.target)
            if new is None:
                notes.append(f"override to unknown target '{o.target}' ignored")
                continue
            if ctx.urgency == "emergency" and new.kind not in HUMAN_KINDS:
                notes.append(f"override to '{new.name}' ignored for an emergency")
                continue
            notes.append(
                f"redirected by override ({o.scope}) from '{target.name}' to '{new.name}'"
                + (f": {o.reason}" if o.reason else "")
            )
            target, action = new, DEFAULT_ACTION[new.kind]
            break

    if ctx.urgency == "emergency":
        emergency = rs.settings.emergency
        if (
            action in SELF_SERVICE_ACTIONS
            or target is None
            or target.kind not in HUMAN_KINDS
        ):
            safe = rs.targets[emergency.target]
            notes.append(
                f"safety net: emergency sent to '{safe.name}' instead of {action} '{target.name if target else '-'}'"
            )
            target, action, priority = (
                safe,
                DEFAULT_ACTION[safe.kind],
                min(priority, emergency.priority),
            )
            reason = f"emergency ({ctx.intent}): routed to on-call '{safe.name}' by the safety net"
        if message is None and emergency.message:
            message = emergency.message
    elif (
        ctx.match is not None
        and ctx.match.emergency_suspected
        and (action in SELF_SERVICE_ACTIONS or target is None or target.kind not in HUMAN_KINDS)
    ):
        # Possibly an emergency, heard or understood too poorly to be sure: never self-service,
        # never another "please repeat that": a person hears the caller out.
        safe = rs.targets[rs.settings.emergency.target]
        notes.append(
            f"possible emergency ({ctx.match.suspicion}): sent to '{safe.name}' instead of"
            f" {action} '{target.name if target else '-'}'"
        )
        target, action = safe, DEFAULT_ACTION[safe.kind]
        priority = min(priority, rs.settings.emergency.priority + 1)
        reason = f"possible emergency: a person ('{safe.name}') hears the caller out"

    builder = _trace_builder(rs, ctx, evaluated)
    return Decision(
        action=action,
        target=target,
        priority=priority,
        rule=chosen.name,
        message=message,
        reason=reason,
        intent=ctx.intent,
        confidence=ctx.confidence,
        rules_version=rs.version,
        notes=tuple(notes),
        urgency=ctx.urgency,
        _trace_builder=builder,
    )


def _short(value: Any) -> str:
    if isinstance(value, dict) and "intent" in value:
        return f"{value['intent']}({value['confidence']})"
    return str(value)


def _trace_builder(
    rs: RuleSet,
    ctx: _Ctx,
    evaluated: list[tuple[int, tuple[tuple[Any, bool], ...], bool]],
) -> Callable[[], tuple[RuleTrace, ...]]:
    intent_saw = {"intent": ctx.intent, "confidence": round(ctx.confidence, 3)}

    def build() -> tuple[RuleTrace, ...]:
        done = {index: (results, ok) for index, results, ok in evaluated}
        last = evaluated[-1][0] if evaluated else len(rs.rules) - 1
        out = []
        for rule in rs.rules[: last + 1]:
            if rule.index in done:
                results, ok = done[rule.index]
                conds = tuple(
                    ConditionTrace(c.label, c.expected, saw, held)
                    # Not strict: a failing condition ends the rule, so results may be shorter.
                    for c, (saw, held) in zip(rule.conditions, results, strict=False)
                )
                out.append(RuleTrace(rule.name, rule.index, ok, conds))
            else:  # skipped by the intent index: its intent condition is what failed
                first = rule.conditions[0]
                out.append(
                    RuleTrace(
                        rule.name,
                        rule.index,
                        False,
                        (
                            ConditionTrace(
                                first.label, first.expected, intent_saw, False
                            ),
                        ),
                    )
                )
        return tuple(out)

    return build


def _last_resort(rs: RuleSet, note: str) -> Decision:
    rule = rs.rules[-1]
    target = rule.target or rs.targets.get(rs.settings.emergency.target)
    action = (
        rule.action
        if rule.target
        else (DEFAULT_ACTION[target.kind] if target else "hangup")
    )
    return Decision(
        action=action,
        target=target,
        priority=rule.priority,
        rule=rule.name,
        message=rule.message,
        reason=note,
        rules_version=rs.version,
        notes=(note,),
    )
