"""``check``, ``simulate`` and ``schema``: let an admin validate and try a rules change before
it goes live. Parsing and printing only; the work is in pbx_router.rules / pbx_router.intents.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TextIO, cast

import structlog

from pbx_router import log as pbx_log
from pbx_router.intents.matcher import MatchResult
from pbx_router.rules import (
    CallFacts,
    Decision,
    Override,
    QueueFacts,
    RulesError,
    RuleSet,
    decide,
    json_schema,
    load_rules,
)

QUEUE_FIELDS = {
    "agents_available": int,
    "callers_waiting": int,
    "longest_wait_s": float,
}


def register(subparsers: Any) -> None:
    check = subparsers.add_parser(
        "check",
        help="validate a routing rules file",
        description="Validate a routing rules file. Exit 0 when valid, 1 with FILE:LINE:COL: message lines when not.",
    )
    check.add_argument("rules", type=Path, metavar="RULES.yaml")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.set_defaults(func=cmd_check)

    sim = subparsers.add_parser(
        "simulate",
        help="show how a call would be routed",
        description="Run an utterance (or recording) through the matcher and rules and print the decision "
        "and its trace.",
    )
    sim.add_argument("-r", "--rules", type=Path, required=True, metavar="RULES.yaml")
    src = sim.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="what the caller said")
    src.add_argument(
        "--audio",
        type=Path,
        metavar="FILE.wav",
        help="a recording, transcribed locally",
    )
    src.add_argument("--digits", help="keypad digits the caller pressed")
    src.add_argument(
        "--batch",
        type=Path,
        metavar="FILE",
        help="one utterance or WAV path per line; prints one JSON object per line",
    )
    sim.add_argument("--caller", help="caller number, e.g. +15551234567")
    sim.add_argument(
        "--at",
        help="ISO time of the call, e.g. 2026-12-24T19:30:00-05:00 (no offset = rules timezone)",
    )
    sim.add_argument(
        "--queue-state",
        nargs="+",
        action="extend",
        default=[],
        metavar="QUEUE.FIELD=N",
        help="live queue facts, e.g. pharmacy.agents_available=0 nurse.callers_waiting=6",
    )
    sim.add_argument(
        "--known-patient",
        choices=["yes", "no"],
        help="whether the caller is a known patient",
    )
    sim.add_argument(
        "--recent-call",
        action="append",
        default=[],
        metavar="ISO",
        help="time of an earlier call from this number (repeatable)",
    )
    sim.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KIND:SCOPE[:TARGET]",
        help="active staff override, e.g. redirect:intent:prescription_refill:frontdesk or closed:calendar:clinic",
    )
    sim.add_argument(
        "--attempt",
        type=int,
        default=1,
        help="listening attempt (1 = first time asked)",
    )
    sim.add_argument("--language", default="en")
    sim.add_argument("--dialled", help="number the caller dialled")
    sim.add_argument(
        "--engine", help="speech engine for --audio (default: the configured one)"
    )
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.set_defaults(func=cmd_simulate)

    schema = subparsers.add_parser(
        "schema",
        help="print the rules file JSON Schema",
        description="Print the JSON Schema of the rules file, for editors.",
    )
    schema.set_defaults(func=cmd_schema)


# -- check ------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    try:
        rs = load_rules(args.rules)
    except RulesError as exc:
        for line in exc.errors + exc.warnings:
            print(line)
        print(f"{args.rules}: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    for line in rs.warnings:
        print(line)
    if args.strict and rs.warnings:
        print(
            f"{args.rules}: {len(rs.warnings)} warning(s) (--strict)", file=sys.stderr
        )
        return 1
    print(
        f"{args.rules}: OK ({len(rs.intents)} intents, {len(rs.targets)} targets, {len(rs.rules)} rules, "
        f"{len(rs.warnings)} warning(s), version {rs.version})"
    )
    return 0


# -- schema -----------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


# -- simulate ---------------------------------------------------------------------------------


class UsageError(ValueError):
    pass


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _logs_to_stderr() -> None:
    # stdout carries the JSON an admin's script parses: logs (e.g. the recogniser starting)
    # go to stderr, warnings and above only.
    pbx_log.configure(level="warning", json=False)
    stderr = cast(TextIO, _CurrentStderr())
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stderr))


def cmd_simulate(args: argparse.Namespace) -> int:
    _logs_to_stderr()
    try:
        rs = load_rules(args.rules)
    except RulesError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    try:
        base = _facts(args, rs)
    except UsageError as exc:
        print(f"pbx-router simulate: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    if args.batch is not None:
        return _batch(args, rs, base, out)
    try:
        transcript, asr, match = _understand(args, rs)
    except UsageError as exc:
        print(f"pbx-router simulate: {exc}", file=sys.stderr)
        return 1
    result = _simulate_one(rs, base, transcript, asr, match)
    if args.json:
        print(json.dumps(result, ensure_ascii=False), file=out)
    else:
        _print_human(result, out)
    return 0


def _batch(
    args: argparse.Namespace, rs: RuleSet, base: dict[str, Any], out: TextIO
) -> int:
    try:
        lines = args.batch.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"pbx-router simulate: cannot read {args.batch}: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.lower().endswith(".wav"):
                wav = Path(line)
                if not wav.is_absolute() and not wav.exists():
                    wav = args.batch.parent / wav
                transcript, asr = _transcribe(wav, args.engine)
                match = rs.matcher.match(transcript)
            else:
                transcript, asr, match = line, None, rs.matcher.match(line)
            result = _simulate_one(rs, base, transcript, asr, match)
        except UsageError as exc:
            failed += 1
            result = {"line": number, "input": line, "error": str(exc)}
        else:
            result = {"line": number, "input": line, **result}
        print(json.dumps(result, ensure_ascii=False), file=out, flush=True)
    return 1 if failed else 0


def _understand(
    args: argparse.Namespace, rs: RuleSet
) -> tuple[str, float | None, MatchResult]:
    if args.digits is not None:
        return args.digits, None, rs.matcher.match_digits(args.digits)
    if args.audio is not None:
        transcript, asr = _transcribe(args.audio, args.engine)
        return transcript, asr, rs.matcher.match(transcript)
    return args.text, None, rs.matcher.match(args.text)


def _transcribe(path: Path, engine: str | None) -> tuple[str, float | None]:
    if not path.is_file():
        raise UsageError(f"audio file not found: {path}")
    try:
        from pbx_router.speech.transcribe import (
            transcribe_file,  # lazy: heavy, and optional here
        )
    except Exception as exc:  # noqa: BLE001 - ImportError, or a recogniser failing to initialise
        raise UsageError(
            f"speech recognition is not available ({type(exc).__name__}: {exc})"
        ) from None
    try:
        result = transcribe_file(path, engine=engine)
    except Exception as exc:  # noqa: BLE001 - any recogniser failure is reported, not a traceback
        raise UsageError(
            f"could not transcribe {path}: {type(exc).__name__}: {exc}"
        ) from None
    confidence = getattr(result, "confidence", None)
    return str(getattr(result, "text", "") or ""), (
        float(confidence) if confidence is not None else None
    )


def _facts(args: argparse.Namespace, rs: RuleSet) -> dict[str, Any]:
    return {
        "now": _parse_time(args.at, rs) if args.at else dt.datetime.now(rs.timezone),
        "caller_number": args.caller,
        "dialled": args.dialled,
        "known_patient": None
        if args.known_patient is None
        else args.known_patient == "yes",
        "recent_calls": [_parse_time(t, rs) for t in args.recent_call],
        "queues": _parse_queues(args.queue_state),
        "overrides": [_parse_override(o) for o in args.override],
        "attempt": args.attempt,
        "language": args.language,
    }


def _parse_time(text: str, rs: RuleSet) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"not an ISO date/time: {text!r} (e.g. 2026-12-24T19:30:00-05:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=rs.timezone)


def _parse_queues(items: list[str]) -> dict[str, QueueFacts]:
    values: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        queue, dot, field_name = key.strip().rpartition(".")
        if not sep or not dot or not queue or field_name not in QUEUE_FIELDS:
            raise UsageError(
                f"--queue-state wants QUEUE.FIELD=N with FIELD one of {', '.join(QUEUE_FIELDS)}; got {item!r}"
            )
        try:
            values.setdefault(queue, {})[field_name] = QUEUE_FIELDS[field_name](raw)
        except ValueError:
            raise UsageError(
                f"--queue-state {item!r}: {raw!r} is not a number"
            ) from None
    return {name: QueueFacts(**fields) for name, fields in values.items()}


def _parse_override(text: str) -> Override:
    kind, _, rest = text.partition(":")
    if not kind:
        raise UsageError(f"--override wants KIND:SCOPE[:TARGET], got {text!r}")
    if kind == "redirect":
        scope, _, target = rest.rpartition(":")
        if not scope or not target:
            raise UsageError(
                f"--override redirect wants redirect:SCOPE:TARGET, got {text!r}"
            )
        return Override(kind="redirect", scope=scope, target=target, author="simulate")
    return Override(kind=kind, scope=rest or "all", author="simulate")


def _simulate_one(
    rs: RuleSet,
    base: dict[str, Any],
    transcript: str,
    asr: float | None,
    match: MatchResult,
) -> dict[str, Any]:
    facts = CallFacts(transcript=transcript, match=match, **base)
    decision = decide(rs, facts)
    return _result(transcript, asr, match, decision, facts)


def _result(
    transcript: str,
    asr: float | None,
    match: MatchResult,
    d: Decision,
    facts: CallFacts,
) -> dict[str, Any]:
    detail = d.to_dict()
    return {
        "transcript": transcript,
        "asr_confidence": asr,
        "source": match.source,
        "intent": match.intent if match.understood else None,
        "confidence": round(match.confidence, 3),
        "understood": match.understood,
        "urgency": match.urgency,
        "intents": [s.to_dict() for s in match.intents],
        "red_flags": [dict(f) for f in match.red_flags],
        "denied": list(match.denied),
        "requests": list(match.requests),
        "action": d.action,
        "target": d.target.name if d.target else None,
        "target_detail": d.target.to_dict() if d.target else None,
        "priority": d.priority,
        "message": d.message,
        "rule": d.rule,
        "reason": d.reason,
        "notes": list(d.notes),
        "at": facts.now.isoformat(),
        "rules_version": d.rules_version,
        "trace": detail["trace"],
    }


def _print_human(r: dict[str, Any], out: TextIO) -> None:
    w = out.write
    w(f"transcript: {json.dumps(r['transcript'], ensure_ascii=False)}")
    w(
        f"  (recogniser confidence {r['asr_confidence']:.2f})\n"
        if r["asr_confidence"] is not None
        else "\n"
    )
    w(f"time:       {r['at']}\n")
    for flag in r.get("red_flags", []):
        where = "" if flag["source"] in ("", "best", "transcript") else f" (heard in {flag['source']})"
        w(f"RED FLAG:   {flag['label']}: {' '.join(flag['words'])!r}{where} -> {flag['route']}\n")
    for denied in r.get("denied", []):
        w(f"not a red flag: {denied}\n")
    if len(r.get("requests", [])) > 1:
        w(f"requests:   {', '.join(r['requests'])} (the rules decide which comes first)\n")
    w("intents:\n")
    if not r["intents"]:
        w("  (none recognised)\n")
    for rank, s in enumerate(r["intents"][:5], start=1):
        w(f"  {rank}. {s['intent']:<22} {s['confidence']:.2f}  {s['urgency']}\n")
        for why in s["evidence"][:4]:
            w(f"       - {why}\n")
    understood = (
        "understood"
        if r["understood"]
        else "NOT understood (below the confidence floor)"
    )
    w(f"intent:     {r['intent'] or '-'} ({r['confidence']:.2f}, {understood})\n")
    target = r["target_detail"]
    where = f" -> {target['name']} ({_describe(target)})" if target else ""
    w(
        f"decision:   {r['action']}{where}, priority {r['priority']}, rule '{r['rule']}'\n"
    )
    if r["message"]:
        w(f"message:    {r['message']}\n")
    w(f"reason:     {r['reason']}\n")
    for note in r["notes"]:
        w(f"note:       {note}\n")
    w("trace:\n")
    for rule in r["trace"]:
        mark = "MATCH" if rule["matched"] else "  -  "
        conds = (
            "; ".join(
                f"{c['condition']} {json.dumps(c['expected'], default=str)}: saw {json.dumps(c['saw'], default=str)} "
                f"{'held' if c['held'] else 'FAILED'}"
                for c in rule["conditions"]
            )
            or "(no conditions)"
        )
        w(f"  {mark} {rule['index'] + 1:>3}. {rule['rule']}: {conds}\n")


def _describe(target: dict[str, Any]) -> str:
    params = {k: v for k, v in target.items() if k not in ("name", "kind")}
    inner = params.get(target["kind"]) if set(params) == {target["kind"]} else None
    if inner is not None:
        return f"{target['kind']} {inner}"
    return f"{target['kind']} " + ", ".join(f"{k}={v}" for k, v in params.items())
