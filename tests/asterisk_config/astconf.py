"""Read Asterisk's INI-like configuration files the way Asterisk does, closely enough to test ours.

Only what our files use is supported: ``;`` comments (``\\;`` is a literal semicolon), ``;-- --;``
block comments, ``[name]``, ``[name](!)`` templates, ``[name](tpl1,tpl2)`` inheritance,
``key = value`` / ``key => value`` and, for extensions.conf, ``exten``/``same``/``include`` lines.
Anything else is a ``ConfError`` naming the file and line, so a typo cannot pass unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "asterisk_conf"

# broken_conf fixture: (file, old text, new text) -> folder holding the broken copy.
BreakConf = Callable[[str, str, str], Path]

_SECTION_RE = re.compile(r"^\[(?P<name>[^\]]+)\](?:\((?P<tpl>[^)]*)\))?$")
_OPTION_RE = re.compile(r"^(?P<key>[^=>\s][^=]*?)\s*=>?\s*(?P<value>.*)$")


class ConfError(ValueError):
    """A line Asterisk would not read the way the file's author meant."""


@dataclass
class Section:
    name: str
    line: int
    is_template: bool
    templates: tuple[str, ...]
    # Options in file order; keys may repeat (allow=, member =>, match=...).
    options: list[tuple[str, str, int]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        values = self.values(key)
        return values[-1] if values else None

    def values(self, key: str) -> list[str]:
        return [value for k, value, _ in self.options if k == key]


def _strip_comment(raw: str, in_block: bool) -> tuple[str, bool]:
    """Remove comments from one line; returns (text, still inside a ;-- block)."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        if in_block:
            end = raw.find("--;", i)
            if end < 0:
                return "".join(out), True
            i, in_block = end + 3, False
            continue
        ch = raw[i]
        if ch == "\\" and raw[i + 1 : i + 2] == ";":
            out.append(";")
            i += 2
        elif raw.startswith(";--", i):
            in_block = True
            i += 3
        elif ch == ";":
            break
        else:
            out.append(ch)
            i += 1
    return "".join(out), in_block


def parse_conf(path: Path) -> list[Section]:
    """Every section of ``path`` in file order (names may repeat with different ``type``)."""
    sections: list[Section] = []
    in_block = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text, in_block = _strip_comment(raw, in_block)
        text = text.strip()
        if not text:
            continue
        if text.startswith("#"):
            raise ConfError(f"{path.name}:{number}: #include/#exec not expected in our files")
        if text.startswith("["):
            match = _SECTION_RE.match(text)
            if match is None:
                raise ConfError(f"{path.name}:{number}: bad section header {text!r}")
            tpl = [t.strip() for t in (match["tpl"] or "").split(",") if t.strip()]
            sections.append(
                Section(
                    name=match["name"].strip(),
                    line=number,
                    is_template="!" in tpl,
                    templates=tuple(t for t in tpl if t not in ("!", "+")),
                )
            )
            continue
        match = _OPTION_RE.match(text)
        if match is None:
            raise ConfError(f"{path.name}:{number}: not an option line: {text!r}")
        if not sections:
            raise ConfError(f"{path.name}:{number}: option before any [section]")
        sections[-1].options.append((match["key"].strip(), match["value"].strip(), number))
    return sections


def resolved(sections: list[Section]) -> list[Section]:
    """Non-template sections with their templates' options copied in, as Asterisk does."""
    result: list[Section] = []
    for index, section in enumerate(sections):
        if section.is_template:
            continue
        merged: list[tuple[str, str, int]] = []
        for tpl_name in section.templates:
            # A template is the nearest earlier section of that name.
            parents = [s for s in sections[:index] if s.name == tpl_name]
            if not parents:
                raise ConfError(f"[{section.name}] line {section.line}: no template {tpl_name!r}")
            merged.extend(parents[-1].options)
        merged.extend(section.options)
        result.append(Section(section.name, section.line, False, section.templates, merged))
    return result


def of_type(sections: list[Section], type_: str) -> dict[str, Section]:
    """Resolved sections whose ``type`` option is ``type_`` (pjsip.conf, ari.conf), by name."""
    return {s.name: s for s in resolved(sections) if s.get("type") == type_}


def one(sections: list[Section], name: str) -> Section:
    matches = [s for s in resolved(sections) if s.name == name]
    if len(matches) != 1:
        raise ConfError(f"expected exactly one [{name}], found {len(matches)}")
    return matches[0]


# --------------------------------------------------------------------------- dialplan


@dataclass(frozen=True)
class Step:
    """One priority of an extension: ``exten => 100,n(label),App(args)``."""

    context: str
    exten: str
    index: int  # position in the extension, 0-based (priority = index + 1)
    label: str | None
    app: str
    args: str
    line: int


@dataclass
class Dialplan:
    contexts: dict[str, dict[str, list[Step]]]
    includes: dict[str, list[str]]

    def steps(self) -> Iterator[Step]:
        for extens in self.contexts.values():
            for steps in extens.values():
                yield from steps

    def extension(self, context: str, exten: str) -> list[Step] | None:
        """The steps ``exten`` runs in ``context``, following ``include =>`` like Asterisk."""
        seen: set[str] = set()
        pending = [context]
        while pending:
            ctx = pending.pop(0)
            if ctx in seen or ctx not in self.contexts:
                continue
            seen.add(ctx)
            if exten in self.contexts[ctx]:
                return self.contexts[ctx][exten]
            pending.extend(self.includes.get(ctx, []))
        return None


_PRIORITY_RE = re.compile(r"^(?P<prio>\d+|n)(?:\((?P<label>[\w-]+)\))?$")


def split_args(args: str, sep: str = ",") -> list[str]:
    """Split application arguments on ``sep`` outside ``${}``, ``$[]`` and ``()``."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in args:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_dialplan(path: Path) -> Dialplan:
    contexts: dict[str, dict[str, list[Step]]] = {}
    includes: dict[str, list[str]] = {}
    last_exten: str | None = None
    for section in parse_conf(path):
        if section.name in ("general", "globals"):
            continue
        extens = contexts.setdefault(section.name, {})
        last_exten = None
        for key, value, line in section.options:
            if key == "include":
                includes.setdefault(section.name, []).append(value)
                continue
            if key == "exten":
                exten, prio_part, rest = (value.split(",", 2) + ["", ""])[:3]
                last_exten = exten.strip()
            elif key == "same":
                if last_exten is None:
                    raise ConfError(f"{path.name}:{line}: 'same' with no extension before it")
                prio_part, rest = (value.split(",", 1) + [""])[:2]
            else:
                raise ConfError(f"{path.name}:{line}: unexpected {key!r} in [{section.name}]")
            prio = _PRIORITY_RE.match(prio_part.strip())
            app_match = re.match(r"^(?P<app>\w+)(?:\((?P<args>.*)\))?$", rest.strip())
            if prio is None or app_match is None:
                raise ConfError(f"{path.name}:{line}: cannot read {value!r}")
            steps = extens.setdefault(last_exten, [])
            if prio["prio"] != "n" and int(prio["prio"]) != len(steps) + 1:
                raise ConfError(f"{path.name}:{line}: priority {prio['prio']} out of order")
            steps.append(
                Step(
                    context=section.name,
                    exten=last_exten,
                    index=len(steps),
                    label=prio["label"],
                    app=app_match["app"],
                    args=app_match["args"] or "",
                    line=line,
                )
            )
    return Dialplan(contexts, includes)


@dataclass(frozen=True)
class Jump:
    """Where a Goto-style destination leads; ``None`` parts mean 'same as now'."""

    context: str | None
    exten: str | None
    target: str  # priority number or label


def parse_destination(text: str) -> Jump:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 3:
        return Jump(parts[0], parts[1], parts[2])
    if len(parts) == 2:
        return Jump(None, parts[0], parts[1])
    return Jump(None, None, parts[0])


def goto_if_branches(args: str) -> tuple[str, list[Jump]]:
    """``GotoIf(cond?a:b)`` -> (cond, [a, b]) with empty branches left out."""
    depth = 0
    for i, ch in enumerate(args):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "?" and depth == 0:
            cond, branches = args[:i], args[i + 1 :]
            return cond, [parse_destination(b) for b in branches.split(":") if b.strip()]
    raise ConfError(f"GotoIf without '?': {args!r}")


def jumps(step: Step) -> list[Jump]:
    if step.app == "Goto":
        return [parse_destination(step.args)]
    if step.app == "GotoIf":
        return goto_if_branches(step.args)[1]
    return []


def resolve_jump(plan: Dialplan, step: Step, jump: Jump) -> tuple[str, str, int] | None:
    """(context, exten, index) a jump from ``step`` lands on, or None if it lands nowhere."""
    context = jump.context or step.context
    exten = jump.exten or step.exten
    steps = plan.extension(context, exten)
    if steps is None:
        return None
    if jump.target.isdigit():
        index = int(jump.target) - 1
        return (context, exten, index) if 0 <= index < len(steps) else None
    for candidate in steps:
        if candidate.label == jump.target:
            return context, exten, candidate.index
    return None


def reachable_steps(plan: Dialplan, context: str, exten: str) -> list[Step]:
    """Every step a call entering ``context,exten,1`` may run (all Goto branches taken)."""
    seen: set[tuple[str, str, int]] = set()
    out: list[Step] = []
    pending: list[tuple[str, str, int]] = [(context, exten, 0)]
    while pending:
        ctx, ext, index = pending.pop()
        steps = plan.extension(ctx, ext)
        if steps is None or index >= len(steps) or (ctx, ext, index) in seen:
            continue
        seen.add((ctx, ext, index))
        step = steps[index]
        out.append(step)
        for jump in jumps(step):
            target = resolve_jump(plan, step, jump)
            if target is not None:
                pending.append(target)
        # A Goto never falls through; GotoIf and everything else may.
        if step.app not in ("Goto", "Hangup"):
            pending.append((ctx, ext, index + 1))
    return out
