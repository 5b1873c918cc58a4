"""Load a rules file: YAML (with positions) -> pydantic -> cross-reference checks -> RuleSet.

Every problem is collected and reported at once as ``FILE:LINE:COL: message``; nothing is
half-loaded. Warnings (unreachable rules, unused targets) never block loading.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from pbx_router.intents.matcher import IntentMatcher
from pbx_router.intents.screen import EmergencyScreen
from pbx_router.intents.semantic import SemanticModel, base_corpus, build_semantic_model, builtin_intents
from pbx_router.intents.spec import IntentSpec
from pbx_router.log import get_logger
from pbx_router.queues.model import QueuesSection
from pbx_router.rules.calendar import Calendar
from pbx_router.rules.decision import Target
from pbx_router.rules.emergency import emergency_path_problems
from pbx_router.rules.engine import (
    HUMAN_KINDS,
    CompiledRule,
    build_target,
    compile_rules,
    index_by_intent,
)
from pbx_router.rules.schema import (
    DEFAULT_ACTION,
    TARGETLESS_ACTIONS,
    RulesFile,
    Settings,
)
from pbx_router.rules.yamlpos import Located, YamlSyntaxError, load_located

log = get_logger(__name__)

MAX_FILE_BYTES = 8 * 1024 * 1024


class RulesError(Exception):
    """The rules file is invalid; ``errors`` are ``FILE:LINE:COL: message`` lines."""

    def __init__(self, errors: list[str], warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
        self.warnings = warnings or []


@dataclass
class RuleSet:
    """One validated, compiled version of the rules. Immutable once built; share freely."""

    path: str
    spec: RulesFile
    version: str
    targets: dict[str, Target]
    calendars: dict[str, Calendar]
    rules: list[CompiledRule]
    by_intent: dict[str | None, tuple[int, ...]]
    timezone: ZoneInfo
    warnings: list[str] = field(default_factory=list)
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __repr__(self) -> str:
        return (
            f"RuleSet(path={self.path!r}, version={self.version!r}, rules={len(self.rules)}, "
            f"intents={len(self.spec.intents)})"
        )

    @property
    def intents(self) -> dict[str, IntentSpec]:
        return self.spec.intents

    @property
    def settings(self) -> Settings:
        return self.spec.settings

    @cached_property
    def matcher(self) -> IntentMatcher:
        """Keywords, examples and regexes of the file, the meaning-level classifier trained on
        the built-in corpus plus the file's examples, and the emergency screen with the file's
        red-flag additions. Built on first use (about a second, then cached by content)."""
        return IntentMatcher(
            self,
            semantic=_semantic_model(self.spec.intents),
            screen=EmergencyScreen(self.spec.red_flags),
        )

    @cached_property
    def queues_section(self) -> QueuesSection | None:
        """The daemon-owned queues and agents (already cross-checked), or None when the file
        defines no queues (queue targets then go to Asterisk's own Queue())."""
        if not self.spec.queues:
            return None
        return QueuesSection.model_validate({"queues": dict(self.spec.queues), "agents": dict(self.spec.agents)})


def _semantic_model(intents: dict[str, IntentSpec]) -> SemanticModel | None:
    try:
        return build_semantic_model(intents)
    except (ImportError, OSError, ValueError) as exc:
        # The keyword, example and red-flag evidence still work; say so loudly.
        log.error("semantic_model_unavailable", error=f"{type(exc).__name__}: {exc}")
        return None


def load_rules(path: str | Path) -> RuleSet:
    """Read, validate and compile ``path``; raise RulesError listing every problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise RulesError(
            [f"{p}:1:1: cannot read rules file: {exc.strerror or exc}"]
        ) from None
    return parse_rules(raw, str(p))


def parse_rules(raw: bytes | str, filename: str = "<rules>") -> RuleSet:
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_FILE_BYTES:
        raise RulesError(
            [f"{filename}:1:1: rules file larger than {MAX_FILE_BYTES} bytes"]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(
            [f"{filename}:1:1: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from None
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        raise RulesError(
            [f"{filename}:{exc.line}:{exc.column}: {exc.message}"]
        ) from None

    errors: list[tuple[int, int, str]] = list(located.errors)
    if not isinstance(located.data, dict):
        raise RulesError(
            [
                f"{filename}:1:1: the rules file must be a mapping with settings, intents, targets and rules"
            ]
        )
    try:
        spec = RulesFile.model_validate(located.data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            line, col = located.position(loc)
            msg = err["msg"].removeprefix("Value error, ")
            errors.append((line, col, f"{_dotted(loc)}: {msg}" if loc else msg))
        # Report broken references too, so one `check` run shows every problem.
        errors.extend(_raw_references(located))
        raise RulesError(_format(filename, errors)) from None

    warnings: list[tuple[int, int, str]] = []
    _cross_check(spec, located, errors, warnings)
    if errors:
        raise RulesError(
            _format(filename, errors), _format(filename, warnings, "warning: ")
        )

    calendars = {name: Calendar(name, cal) for name, cal in spec.calendars.items()}
    targets = {name: build_target(name, t) for name, t in spec.targets.items()}
    rules = compile_rules(spec, calendars, targets)
    return RuleSet(
        path=filename,
        spec=spec,
        version=hashlib.sha256(raw).hexdigest()[:12],
        targets=targets,
        calendars=calendars,
        rules=rules,
        by_intent=index_by_intent(rules, list(spec.intents)),
        timezone=ZoneInfo(spec.settings.timezone),
        warnings=_format(filename, warnings, "warning: "),
    )


def _raw_references(located: Located) -> list[tuple[int, int, str]]:
    """Best-effort reference checks on the raw data of a file that failed schema validation."""
    data = located.data
    out: list[tuple[int, int, str]] = []

    def names(key: str) -> set[str] | None:
        section = data.get(key)
        return {str(k) for k in section} if isinstance(section, dict) else None

    targets, intents = names("targets"), names("intents")
    rules = data.get("rules")
    if not isinstance(rules, list):
        return out
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        then = rule.get("then")
        target = then.get("target") if isinstance(then, dict) else None
        if targets is not None and isinstance(target, str) and target not in targets:
            line, col = located.position(("rules", i, "then", "target"))
            out.append(
                (line, col, f"rules[{i}].then.target: undefined target '{target}'")
            )
        when = rule.get("when")
        if intents is not None and isinstance(when, dict) and "intent" in when:
            wanted = (
                when["intent"] if isinstance(when["intent"], list) else [when["intent"]]
            )
            for name in wanted:
                if isinstance(name, str) and name not in intents:
                    line, col = located.position(("rules", i, "when", "intent"))
                    out.append(
                        (
                            line,
                            col,
                            f"rules[{i}].when.intent: undefined intent '{name}'",
                        )
                    )
    return out


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _format(
    filename: str, items: list[tuple[int, int, str]], prefix: str = ""
) -> list[str]:
    return [
        f"{filename}:{line}:{col}: {prefix}{msg}"
        for line, col, msg in sorted(items, key=lambda i: (i[0], i[1]))
    ]


def _cross_check(
    spec: RulesFile,
    located: Located,
    errors: list[tuple[int, int, str]],
    warnings: list[tuple[int, int, str]],
) -> None:
    def err(path: tuple[Any, ...], msg: str) -> None:
        line, col = located.position(path)
        errors.append((line, col, f"{_dotted(path)}: {msg}"))

    def warn(path: tuple[Any, ...], msg: str) -> None:
        line, col = located.position(path)
        warnings.append((line, col, msg))

    emergency = spec.settings.emergency.target
    if emergency not in spec.targets:
        err(("settings", "emergency", "target"), f"undefined target '{emergency}'")
    elif spec.targets[emergency].kind not in HUMAN_KINDS:
        err(
            ("settings", "emergency", "target"),
            f"emergency target '{emergency}' must reach a human (queue, endpoint or dialplan)",
        )

    digits: dict[str, str] = {}
    for name, intent in spec.intents.items():
        if intent.digit:
            if intent.digit in digits:
                err(
                    ("intents", name, "digit"),
                    f"keypad digit {intent.digit} already used by intent '{digits[intent.digit]}'",
                )
            digits[intent.digit] = name

    names: dict[str, int] = {}
    used_targets: set[str] = {emergency, *(spec.settings.emergency.chain or ())}
    used_intents: set[str] = set()
    for i, rule in enumerate(spec.rules):
        base = ("rules", i)
        if rule.name in names:
            err(
                (*base, "name"),
                f"duplicate rule name '{rule.name}' (also rule {names[rule.name] + 1})",
            )
        names.setdefault(rule.name, i)
        w, t = rule.when, rule.then
        for wanted in w.intent or ():
            used_intents.add(wanted)
            if wanted not in spec.intents:
                err((*base, "when", "intent"), f"undefined intent '{wanted}'")
        for key in ("open", "closed"):
            cal = getattr(w, key)
            if cal is not None and cal not in spec.calendars:
                err((*base, "when", key), f"undefined calendar '{cal}'")
        # A window with neither calendar nor timezone uses settings.timezone.
        if (
            w.window is not None
            and w.window.calendar is not None
            and w.window.calendar not in spec.calendars
        ):
            err(
                (*base, "when", "window", "calendar"),
                f"undefined calendar '{w.window.calendar}'",
            )
        for key in ("caller_in", "caller_not_in"):
            lst = getattr(w, key)
            if lst is not None and lst not in spec.lists:
                err((*base, "when", key), f"undefined list '{lst}'")
        if t.target is not None:
            used_targets.add(t.target)
            if t.target not in spec.targets:
                err((*base, "then", "target"), f"undefined target '{t.target}'")
            elif t.action is not None and t.action not in TARGETLESS_ACTIONS:
                kind = spec.targets[t.target].kind
                if DEFAULT_ACTION[kind] != t.action:
                    err(
                        (*base, "then", "action"),
                        f"action '{t.action}' does not fit target '{t.target}' ({kind}); use '{DEFAULT_ACTION[kind]}'",
                    )
        urgent_intents = {
            n
            for n in (w.intent or ())
            if n in spec.intents and spec.intents[n].urgency == "emergency"
        }
        if (
            urgent_intents
            and t.target in spec.targets
            and spec.targets[t.target].kind not in HUMAN_KINDS
        ):
            warn(
                (*base, "then", "target"),
                f"emergency intent(s) {sorted(urgent_intents)} routed to self-service; "
                f"the safety net will send them to '{emergency}'",
            )

    last = spec.rules[-1]
    if last.when.model_dump(exclude_none=True):
        err(
            ("rules", len(spec.rules) - 1),
            "the last rule must be a fallback with no 'when' conditions, so every call gets a decision",
        )

    # Unreachable: a rule whose conditions include every condition of an earlier rule can
    # never be reached, because the earlier rule always matches first.
    dumped = [r.when.model_dump(exclude_none=True, by_alias=True) for r in spec.rules]
    for j in range(len(spec.rules)):
        for i in range(j):
            if _shadows(dumped[i], dumped[j]):
                by = spec.rules[i].name
                what = (
                    "has no conditions"
                    if not dumped[i]
                    else "matches whenever this one would"
                )
                warn(
                    ("rules", j),
                    f"rule '{spec.rules[j].name}' is unreachable: earlier rule '{by}' {what}",
                )
                break

    _check_queues(spec, err, warn)
    _check_red_flags(spec, err)
    for name, intent_spec in spec.intents.items():
        if intent_spec.base and not base_corpus(intent_spec.base):
            err(("intents", name, "base"), f"'{intent_spec.base}' is not a built-in intent"
                f" (built in: {', '.join(builtin_intents())})")
    # Emergency callers must end at a person, also by a queue's overflow (rules/emergency.py).
    for path, msg in emergency_path_problems(spec):
        err(path, msg)

    if not any(i.urgency == "emergency" for i in spec.intents.values()):
        warn(
            ("intents",),
            "no intent has 'urgency: emergency': the emergency safety net can never trigger",
        )
    for name in spec.targets:
        if name not in used_targets:
            warn(("targets", name), f"target '{name}' is never used")
    for name in spec.intents:
        if name not in used_intents:
            warn(
                ("intents", name),
                f"intent '{name}' is not named by any rule; those calls reach the generic rules/fallback",
            )


def _check_queues(
    spec: RulesFile,
    err: Callable[[tuple[Any, ...], str], None],
    warn: Callable[[tuple[Any, ...], str], None],
) -> None:
    """The ``queues:``/``agents:`` sections against each other and against ``targets:``."""
    if not spec.queues and not spec.agents:
        return
    try:
        QueuesSection.model_validate({"queues": dict(spec.queues), "agents": dict(spec.agents)})
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            # Cross-checks come as "dotted.path: message; dotted.path: message".
            for problem in str(e["msg"]).removeprefix("Value error, ").split("; "):
                where, sep, msg = problem.partition(": ")
                if sep and where.startswith(("queues.", "agents.")):
                    err(tuple(where.split(".")), msg)
                else:
                    err(("queues",), problem)
    for name, queue in spec.queues.items():
        for label in ("overflow_on_time", "overflow_on_length"):
            overflow = getattr(queue, label)
            if overflow is not None and overflow.target is not None and overflow.target not in spec.targets:
                err(("queues", name, label, "target"), f"undefined target '{overflow.target}'")
    if not spec.agents:
        warn(("queues",), "daemon-owned queues have no agents: every caller will wait until overflow")
    for tname, target in spec.targets.items():
        if target.queue is not None and spec.queues and target.queue not in spec.queues:
            warn(("targets", tname), f"queue '{target.queue}' is not under queues: it goes to Asterisk's Queue()")
    for name in spec.queues:
        if not any(a for a in spec.agents.values() if name in a.queues):
            warn(("queues", name), f"queue '{name}' has no agents")


def _check_red_flags(spec: RulesFile, err: Callable[[tuple[Any, ...], str], None]) -> None:
    """Every red-flag route names an intent of this file whose urgency is emergency, so a red
    flag can never be sent to a routine or self-service path by the clinic's own file."""
    for key, intent in spec.red_flags.routes.items():
        path = ("red_flags", "routes", key)
        if intent not in spec.intents:
            err(path, f"undefined intent '{intent}'")
        elif spec.intents[intent].urgency != "emergency":
            err(
                path,
                f"red flag '{key}' routed to intent '{intent}' (urgency {spec.intents[intent].urgency});"
                " red flags may only go to an intent with urgency emergency",
            )


def _shadows(earlier: dict[str, Any], later: dict[str, Any]) -> bool:
    for key, value in earlier.items():
        if key not in later:
            return False
        if key == "intent":
            if not set(later[key]) <= set(value):
                return False
        elif later[key] != value:
            return False
    return True
