"""``evaluate``: how well the rules file understands a corpus of caller requests.

Reads one or more TSV files (``id  text  intent  also  tags``), runs every row through the same
matcher and rules a live call uses (or, with ``--audio``, first through the live speech path on
``<audio-dir>/<id>.wav``), and prints accuracy, per-intent precision and recall, the most
frequent confusions, emergency recall, the false-emergency rate, where emergencies were routed,
and the rows that failed. ``--min-*`` thresholds make it exit 1 when below, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pbx_router.intents.matcher import MatchResult
from pbx_router.rules import CallFacts, RulesError, RuleSet, decide, load_rules
from pbx_router.rules.engine import HUMAN_KINDS

COLUMNS = ("id", "text", "intent", "also", "tags")


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    text: str
    intent: str
    also: str
    tags: tuple[str, ...]
    source: str  # file:line


@dataclass(slots=True)
class Outcome:
    row: Row
    heard: str
    match: MatchResult
    correct: bool
    both: bool | None  # two-request rows: were both requests recognised
    emergency_expected: bool
    emergency_found: bool
    routed: str = ""  # where an emergency went: "person", or what went wrong
    words: tuple[int, int] = (0, 0)  # (errors, reference words) for --audio


@dataclass(slots=True)
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class CorpusError(Exception):
    pass


def register(subparsers: Any) -> None:
    ev = subparsers.add_parser(
        "evaluate",
        help="measure how well the rules understand a corpus of caller requests",
        description=(
            "Run a corpus (TSV: id, text, intent, also, tags) through the matcher and rules and print "
            "accuracy, per-intent precision/recall, confusions, emergency recall, false-emergency rate "
            "and the failures. Exit 1 when a --min/--max threshold is not met, 2 on bad input."
        ),
    )
    ev.add_argument("-r", "--rules", type=Path, required=True, metavar="RULES.yaml")
    ev.add_argument("corpus", type=Path, nargs="+", metavar="CORPUS.tsv")
    ev.add_argument(
        "--audio",
        action="store_true",
        help="transcribe <audio-dir>/<id>.wav through the live speech path first (rows without audio are skipped)",
    )
    ev.add_argument(
        "--audio-dir",
        type=Path,
        help="folder of <id>.wav recordings (default: audio/ beside the first corpus file)",
    )
    ev.add_argument("--engine", help="speech engine for --audio (default: the built-in one)")
    ev.add_argument("--tag", action="append", default=[], help="only rows carrying this tag (repeatable)")
    ev.add_argument("--min-accuracy", type=float, metavar="F", help="exit 1 when accuracy is below F (0..1)")
    ev.add_argument(
        "--min-emergency-recall", type=float, metavar="F", help="exit 1 when emergency recall is below F"
    )
    ev.add_argument(
        "--max-false-emergency", type=float, metavar="F", help="exit 1 when the false-emergency rate is above F"
    )
    ev.add_argument("--max-wer", type=float, metavar="F",
                    help="with --audio: exit 1 when the word error rate is above F")
    ev.add_argument("--failures", type=int, default=40, metavar="N", help="show at most N failed rows (default 40)")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    ev.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        rs = load_rules(args.rules)
    except RulesError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 2
    try:
        rows = [r for path in args.corpus for r in read_corpus(path)]
    except CorpusError as exc:
        print(f"pbx-router evaluate: {exc}", file=sys.stderr)
        return 2
    unknown = sorted({r.intent for r in rows if r.intent not in rs.intents})
    if unknown:
        print(f"pbx-router evaluate: corpus names intents the rules do not define: {', '.join(unknown)}",
              file=sys.stderr)
        return 2
    if args.tag:
        wanted = set(args.tag)
        rows = [r for r in rows if wanted & set(r.tags)]
    if args.audio:
        audio_dir = args.audio_dir or args.corpus[0].parent / "audio"
        try:
            report = asyncio.run(_evaluate_audio(rs, rows, audio_dir, args.engine))
        except Exception as exc:  # noqa: BLE001 - a recogniser that cannot start is reported, not a traceback
            print(f"pbx-router evaluate: speech recognition failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    else:
        report = Report([evaluate_row(rs, r, r.text, rs.matcher.match(r.text)) for r in rows])
    if not report.outcomes:
        print("pbx-router evaluate: no rows to evaluate", file=sys.stderr)
        return 2
    summary = summarise(report, rs)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False), file=out)
    else:
        print_report(summary, report, args.failures, out)
    problems = []
    if args.min_accuracy is not None and summary["accuracy"] < args.min_accuracy:
        problems.append(f"accuracy {summary['accuracy']:.3f} < {args.min_accuracy}")
    recall = summary["emergency_recall"]
    if args.min_emergency_recall is not None and recall is not None and recall < args.min_emergency_recall:
        problems.append(f"emergency recall {recall:.3f} < {args.min_emergency_recall}")
    false_rate = summary["false_emergency_rate"]
    if args.max_false_emergency is not None and false_rate is not None and false_rate > args.max_false_emergency:
        problems.append(f"false-emergency rate {false_rate:.3f} > {args.max_false_emergency}")
    wer = summary.get("wer")
    if args.max_wer is not None and wer is not None and wer > args.max_wer:
        problems.append(f"word error rate {wer:.3f} > {args.max_wer}")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


# -- reading --------------------------------------------------------------------------------------


def read_corpus(path: Path) -> list[Row]:
    """Parse a corpus TSV; any malformed line is an error naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"cannot read {path}: {exc}") from None
    reader = csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows: list[Row] = []
    header: list[str] | None = None
    seen: set[str] = set()
    for number, fields in enumerate(reader, start=1):
        if not fields or not "".join(fields).strip() or fields[0].startswith("#"):
            continue
        if header is None:
            header = [f.strip() for f in fields]
            if tuple(header[:3]) != COLUMNS[:3]:
                raise CorpusError(f"{path}:{number}: header must start with id, text, intent (got {header[:3]})")
            continue
        record = dict(zip(header, fields, strict=False))  # a row may leave out trailing columns
        ident, sentence, intent = (record.get(k, "").strip() for k in ("id", "text", "intent"))
        if not ident or not sentence or not intent:
            raise CorpusError(f"{path}:{number}: id, text and intent are required")
        if ident in seen:
            raise CorpusError(f"{path}:{number}: duplicate id {ident!r}")
        seen.add(ident)
        tags = tuple(t.strip() for t in record.get("tags", "").split(",") if t.strip())
        rows.append(Row(ident, sentence, intent, record.get("also", "").strip(), tags, f"{path}:{number}"))
    if header is None:
        raise CorpusError(f"{path}: empty corpus")
    return rows


# -- scoring --------------------------------------------------------------------------------------


def _emergency_intents(rs: RuleSet) -> frozenset[str]:
    return frozenset(n for n, spec in rs.intents.items() if spec.urgency == "emergency")


def evaluate_row(rs: RuleSet, row: Row, heard: str, match: MatchResult) -> Outcome:
    emergency = _emergency_intents(rs)
    expected = {row.intent, row.also} - {""}
    got = match.intent if match.understood else None
    correct = got in expected if row.also else got == row.intent
    both = None
    if row.also:
        both = set(match.requests[:2]) == expected
    emergency_expected = row.intent in emergency or row.also in emergency
    emergency_found = match.understood and match.urgency == "emergency"
    outcome = Outcome(row, heard, match, correct, both, emergency_expected, emergency_found)
    if emergency_expected:
        outcome.routed = _emergency_routing(rs, match)
    return outcome


def _emergency_routing(rs: RuleSet, match: MatchResult) -> str:
    """Where this caller would go, in and out of hours: 'person' when always a human target."""
    problems = []
    for hour in (10, 22):
        now = dt.datetime(2026, 12, 1, hour, 0, tzinfo=rs.timezone)  # a Tuesday
        decision = decide(rs, CallFacts(transcript=match.text, match=match, now=now, attempt=1))
        target = decision.target
        if decision.action in ("reprompt", "keypad") or target is None or target.kind not in HUMAN_KINDS:
            problems.append(f"{hour:02d}:00 -> {decision.action} {target.name if target else '-'}")
    return "person" if not problems else "; ".join(problems)


def summarise(report: Report, rs: RuleSet) -> dict[str, Any]:
    outs = report.outcomes
    n = len(outs)
    correct = sum(o.correct for o in outs)
    per_intent: dict[str, dict[str, Any]] = {}
    predicted = Counter(o.match.intent if o.match.understood else None for o in outs)
    for name in rs.intents:
        support = [o for o in outs if o.row.intent == name]
        hits = sum(1 for o in support if o.correct)
        called = predicted.get(name, 0)
        true_pos = sum(1 for o in outs if o.correct and (o.match.intent == name))
        if not support and not called:
            continue
        per_intent[name] = {
            "support": len(support),
            "recall": round(hits / len(support), 3) if support else None,
            "precision": round(true_pos / called, 3) if called else None,
        }
    confusions = Counter(
        (o.row.intent, o.match.intent if o.match.understood else "(not understood)")
        for o in outs
        if not o.correct
    )
    em = [o for o in outs if o.emergency_expected]
    non = [o for o in outs if not o.emergency_expected]
    two = [o for o in outs if o.both is not None]
    summary: dict[str, Any] = {
        "rows": n,
        "accuracy": round(correct / n, 4),
        "emergencies": len(em),
        "emergency_recall": round(sum(o.emergency_found for o in em) / len(em), 4) if em else None,
        "emergencies_routed_to_a_person": sum(o.routed == "person" for o in em),
        "non_emergencies": len(non),
        "false_emergency_rate": round(sum(o.emergency_found for o in non) / len(non), 4) if non else None,
        "two_requests": len(two),
        "both_requests_recognised": sum(bool(o.both) for o in two),
        "per_intent": per_intent,
        "confusions": [
            {"expected": a, "got": b, "count": c} for (a, b), c in confusions.most_common(12)
        ],
    }
    if any(o.words[1] for o in outs):
        errors = sum(o.words[0] for o in outs)
        words = sum(o.words[1] for o in outs)
        summary["wer"] = round(errors / words, 4) if words else None
    if report.skipped:
        summary["skipped_without_audio"] = len(report.skipped)
    return summary


def print_report(summary: dict[str, Any], report: Report, failures: int, out: TextIO) -> None:
    def p(*a: object) -> None:  # local shorthand
        print(*a, file=out)

    p(f"rows: {summary['rows']}   accuracy: {summary['accuracy']:.1%}")
    if summary["emergency_recall"] is not None:
        p(f"emergencies: {summary['emergencies']}   recall: {summary['emergency_recall']:.1%}   "
          f"routed to a person in and out of hours: {summary['emergencies_routed_to_a_person']}")
    if summary["false_emergency_rate"] is not None:
        p(f"non-emergencies: {summary['non_emergencies']}   sent down the emergency path: "
          f"{summary['false_emergency_rate']:.1%}")
    if summary["two_requests"]:
        p(f"two requests in one turn: {summary['two_requests']}   both recognised: "
          f"{summary['both_requests_recognised']}")
    if "wer" in summary and summary["wer"] is not None:
        p(f"word error rate: {summary['wer']:.1%}")
    if summary.get("skipped_without_audio"):
        p(f"skipped (no recording): {summary['skipped_without_audio']}")
    p("")
    p(f"{'intent':<22} {'support':>7} {'recall':>7} {'precision':>9}")
    for name, stats in summary["per_intent"].items():
        rec = "-" if stats["recall"] is None else f"{stats['recall']:.0%}"
        prec = "-" if stats["precision"] is None else f"{stats['precision']:.0%}"
        p(f"{name:<22} {stats['support']:>7} {rec:>7} {prec:>9}")
    if summary["confusions"]:
        p("")
        p("most frequent confusions (expected -> got):")
        for c in summary["confusions"]:
            p(f"  {c['count']:>3}  {c['expected']} -> {c['got']}")
    failed = [o for o in report.outcomes if not o.correct or (o.emergency_expected and o.routed != "person")]
    if failed and failures > 0:
        p("")
        p(f"failed rows ({len(failed)}; showing {min(failures, len(failed))}):")
        for o in failed[:failures]:
            got = o.match.intent if o.match.understood else "(not understood)"
            heard = f"  heard {o.heard!r}" if o.heard != o.row.text else ""
            routed = f"  ROUTED: {o.routed}" if o.emergency_expected and o.routed != "person" else ""
            p(f"  {o.row.id}: expected {o.row.intent}{'+' + o.row.also if o.row.also else ''}, got {got} "
              f"({o.match.confidence:.2f}): {o.row.text!r}{heard}{routed}")


# -- audio ----------------------------------------------------------------------------------------


async def _evaluate_audio(rs: RuleSet, rows: Sequence[Row], audio_dir: Path, engine: str | None) -> Report:
    from pbx_router.speech import process_backend
    from pbx_router.speech.factory import DEFAULT_ENGINE
    from pbx_router.speech.pool import EnginePool
    from pbx_router.speech.transcribe import transcribe_file_async
    from pbx_router.speech.wer import spoken_reference, word_errors

    # An offline evaluation is not a live call: a worker busy in one long decode on a loaded
    # machine must not be declared frozen (the live default is a few seconds).
    process_backend.PING_TIMEOUT_S = max(process_backend.PING_TIMEOUT_S, 120.0)
    report = Report()
    async with EnginePool.from_config(engine=engine or DEFAULT_ENGINE, workers=1) as pool:
        for row in rows:
            wav = audio_dir / f"{row.id}.wav"
            if not wav.is_file():
                report.skipped.append(row.id)
                continue
            transcript, _ = await transcribe_file_async(wav, pool)
            match = rs.matcher.match(
                transcript.text,
                alternatives=tuple(getattr(transcript, "alternatives", ()) or ()),
                word_confidences=[w.confidence for w in transcript.words] or None,
            )
            outcome = evaluate_row(rs, row, transcript.text, match)
            outcome.words = word_errors(spoken_reference(row.text), transcript.text)
            report.outcomes.append(outcome)
    return report
