"""Decision latency on a generated 1,000-rule file, and intent-matcher throughput.

    .venv/bin/python benchmarks/decide.py [--quick] [--rules 1000]

The last line printed is one JSON object:
    {"rules": 1000, "decision_p50_ms": ..., "decision_p99_ms": ..., "matches_per_s": ...}
Figures are wall-clock on this machine; nothing here asserts a threshold (tests don't time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from pbx_router.intents.matcher import IntentMatcher
from pbx_router.rules import CallFacts, QueueFacts, decide, load_rules

ROOT = Path(__file__).resolve().parent.parent
CLINIC = ROOT / "examples" / "clinic.yaml"
TZ = ZoneInfo("America/New_York")
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]


def generate(n_rules: int, n_intents: int = 50, seed: int = 7) -> dict[str, object]:
    """A syntactically varied rules file: per-intent rules with calendar, queue, caller and
    window conditions, generic rules without an intent, and the mandatory fallback."""
    rng = random.Random(seed)
    intents: dict[str, object] = {}
    for i in range(n_intents):
        a, b = WORDS[i % len(WORDS)], WORDS[(i * 7 + 3) % len(WORDS)]
        intents[f"intent_{i}"] = {
            "keywords": {f"{a} {b} {i}": 0.9, f"{b}{i}": 0.7},
            "examples": [f"I would like the {a} {b} number {i}"],
            "urgency": "emergency" if i == 0 else "routine",
        }
    targets: dict[str, object] = {f"q{i}": {"queue": f"q{i}"} for i in range(20)}
    targets["oncall"] = {"endpoint": "PJSIP/agent3"}
    targets["vm"] = {
        "voicemail": {"context": "clinic-voicemail", "extension": "frontdesk"}
    }
    rules: list[dict[str, object]] = []
    kinds = ["open", "queue", "caller", "window", "patient", "repeat", "plain"]
    for r in range(n_rules - 1):
        intent = f"intent_{rng.randrange(n_intents)}"
        generic = r % 10 == 0  # one rule in ten applies to every intent
        kind = "caller" if generic else kinds[r % len(kinds)]
        when: dict[str, object] = {} if generic else {"intent": [intent]}
        if kind == "open":
            when["open"] = "clinic"
            when["min_confidence"] = round(rng.uniform(0.5, 0.99), 2)
        elif kind == "queue":
            when["queue"] = {
                "name": f"q{r % 20}",
                "callers_waiting_at_least": rng.randint(1, 20),
            }
        elif kind == "caller":
            when["caller_matches"] = [f"+1555{rng.randint(100, 999)}*"]
        elif kind == "window":
            when["window"] = {
                "calendar": "clinic",
                "days": ["sat", "sun"],
                "from": "10:00",
                "to": "11:00",
            }
        elif kind == "patient":
            when["known_patient"] = True
            when["min_confidence"] = 0.9
        elif kind == "repeat":
            when["repeat_caller_today"] = True
        else:
            when["attempt_at_least"] = 3
        rules.append({"name": f"r{r}", "when": when, "then": {"target": f"q{r % 20}"}})
    rules.append({"name": "fallback", "then": {"target": "q0"}})
    return {
        "version": 1,
        "settings": {
            "timezone": "America/New_York",
            "confidence_floor": 0.5,
            "emergency": {"target": "oncall", "message": "sound:emergency"},
        },
        "calendars": {
            "clinic": {
                "timezone": "America/New_York",
                "hours": {
                    d: "08:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")
                },
                "holidays": {"country": "US", "subdivision": "NY"},
            }
        },
        "intents": intents,
        "targets": targets,
        "rules": rules,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer iterations (a few seconds)"
    )
    parser.add_argument("--rules", type=int, default=1000)
    args = parser.parse_args(argv)
    decisions = 3_000 if args.quick else 30_000
    matches = 500 if args.quick else 5_000

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.yaml"
        path.write_text(
            yaml.safe_dump(generate(args.rules), sort_keys=False), encoding="utf-8"
        )
        t0 = time.perf_counter()
        rs = load_rules(path)
        load_ms = (time.perf_counter() - t0) * 1000

    rng = random.Random(1)
    base = dt.datetime(2026, 3, 2, 0, 0, tzinfo=TZ)
    names = list(rs.intents)
    utterances = [f"hello I need {rs.intents[n].examples[0]} please" for n in names] + [
        "nothing useful here"
    ]
    prepared = [rs.matcher.match(u) for u in utterances]
    facts = [
        CallFacts(
            match=rng.choice(prepared),
            now=base + dt.timedelta(minutes=rng.randrange(60 * 24 * 14)),
            caller_number=f"+1555{rng.randint(1000000, 9999999)}",
            known_patient=rng.choice([None, True, False]),
            recent_calls=[base - dt.timedelta(hours=rng.randint(1, 100))],
            queues={
                f"q{i}": QueueFacts(rng.randint(0, 3), rng.randint(0, 25), 30.0)
                for i in range(20)
            },
            attempt=rng.randint(1, 3),
        )
        for _ in range(256)
    ]
    for f in facts[:50]:  # warm caches (holiday tables, zoneinfo)
        decide(rs, f)
    timings: list[float] = []
    # CPU time of this thread: the same decisions without the pauses a shared, busy machine
    # adds by preempting us (wall time is what a caller feels; both are printed).
    cpu_timings: list[float] = []
    trace_timings: list[float] = []
    for i in range(decisions):
        f = facts[i % len(facts)]
        c = time.thread_time_ns()
        t = time.perf_counter()
        d = decide(rs, f)
        timings.append((time.perf_counter() - t) * 1000)
        cpu_timings.append((time.thread_time_ns() - c) / 1e6)
        if i % 10 == 0:
            t = time.perf_counter()
            d.to_dict()
            trace_timings.append((time.perf_counter() - t) * 1000)
    timings.sort()
    cpu_timings.sort()
    trace_timings.sort()

    clinic = load_rules(CLINIC) if CLINIC.exists() else rs
    matcher = IntentMatcher(clinic)
    phrases = [
        "hi yes I was calling to get a refill on my blood pressure prescription please",
        "i mean carried tell my prescription",
        "I need to reschedule my appointment for next week",
        "I don't need a refill, I need to talk to the nurse",
        "what are your hours on saturday",
        "um uh hello",
        "my husband can't breathe",
        "the quick brown fox jumps over the lazy dog",
    ]
    for p in phrases:
        matcher.match(p)
    t = time.perf_counter()
    for i in range(matches):
        matcher.match(phrases[i % len(phrases)])
    matches_per_s = matches / (time.perf_counter() - t)

    print(
        f"loaded {len(rs.rules)} rules ({len(rs.warnings)} warnings) in {load_ms:.0f} ms; {decisions} decisions: "
        f"p50 {percentile(timings, 0.5):.3f} ms, p99 {percentile(timings, 0.99):.3f} ms, "
        f"mean {statistics.fmean(timings):.3f} ms, "
        f"cpu p99 {percentile(cpu_timings, 0.99):.3f} ms; trace to_dict p50 {percentile(trace_timings, 0.5):.3f} ms"
    )
    print(
        f"matcher ({len(clinic.intents)} intents from {Path(clinic.path).name}): {matches_per_s:.0f} matches/s"
    )
    print(
        json.dumps(
            {
                "rules": len(rs.rules),
                "decision_p50_ms": round(percentile(timings, 0.5), 4),
                "decision_p99_ms": round(percentile(timings, 0.99), 4),
            "decision_cpu_p99_ms": round(percentile(cpu_timings, 0.99), 4),
                "trace_to_dict_p50_ms": round(percentile(trace_timings, 0.5), 4),
                "load_ms": round(load_ms, 1),
                "matches_per_s": round(matches_per_s, 1),
                "matcher_intents": len(clinic.intents),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
