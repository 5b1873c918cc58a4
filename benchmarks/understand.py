"""Understanding latency: emergency screen + intent ranking on a transcript, with 1,000 rules.

    .venv/bin/python benchmarks/understand.py [--quick] [--rules 1000]

The rules file is the example clinic's intents (so the built-in corpus and classifier are the
real ones) with a generated set of 1,000 rules over them. Utterances are caller-style sentences
from the development corpus (never the held-out one). Per utterance it times the matcher
(screen + lexical + classifier + two-request split) and, separately, matcher + decision.
``model_rss_mb`` is the resident memory the understanding model adds to the process (embedding,
lemmatiser, classifier), measured as RSS after building the matcher minus RSS before.

The last line printed is one JSON object with ``understand_p50_ms``, ``understand_p99_ms``,
``understand_decide_p99_ms``, ``model_rss_mb``, ``train_s`` and ``rules``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from decide import percentile  # noqa: E402

CLINIC = ROOT / "examples" / "clinic.yaml"
DEV = ROOT / "tests" / "corpus" / "dev.tsv"


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def rules_file(n_rules: int, seed: int = 3) -> dict[str, object]:
    """The example clinic's intents, targets and calendars with ``n_rules`` generated rules."""
    clinic: dict[str, Any] = yaml.safe_load(CLINIC.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    intents = list(clinic["intents"])
    queue_targets = [n for n, t in clinic["targets"].items() if "queue" in t]
    rules: list[dict[str, object]] = []
    for r in range(n_rules - 1):
        when: dict[str, object] = {"intent": [rng.choice(intents)]}
        kind = r % 5
        if kind == 0:
            when["open"] = "clinic"
        elif kind == 1:
            when["caller_matches"] = [f"+1555{rng.randint(100, 999)}*"]
        elif kind == 2:
            when["min_confidence"] = round(rng.uniform(0.5, 0.99), 2)
        elif kind == 3:
            when["repeat_caller_today"] = True
        else:
            when["attempt_at_least"] = 2
        rules.append({"name": f"r{r}", "when": when, "then": {"target": rng.choice(queue_targets)}})
    rules.append({"name": "fallback", "then": {"target": "frontdesk"}})
    clinic["rules"] = rules
    clinic.pop("queues", None)
    clinic.pop("agents", None)
    return clinic


def utterances(limit: int) -> list[str]:
    if DEV.exists():
        with DEV.open(encoding="utf-8") as handle:
            rows = [r["text"] for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    else:  # a fresh checkout without the corpus: the built-in sentences will do
        from pbx_router.intents.semantic import base_corpus

        rows = [s for name in ("prescription_refill", "billing", "emergency") for s in base_corpus(name)]
    random.Random(5).shuffle(rows)
    return rows[:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer utterances (well under two minutes)")
    parser.add_argument("--rules", type=int, default=1000)
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else 10

    from pbx_router.rules import CallFacts, decide, load_rules

    texts = utterances(400)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.yaml"
        path.write_text(yaml.safe_dump(rules_file(args.rules), sort_keys=False), encoding="utf-8")
        rs = load_rules(path)
        before = rss_mb()
        t0 = time.perf_counter()
        # Train in a scratch cache so the figure includes training, not a cache hit.
        os.environ["PBX_ROUTER_CACHE"] = tmp
        matcher = rs.matcher
        train_s = time.perf_counter() - t0
        model_mb = rss_mb() - before

    for text in texts[:50]:  # warm caches (lemmas, regex, numpy)
        matcher.match(text)
    now = dt.datetime(2026, 12, 1, 10, 0, tzinfo=rs.timezone)
    match_ms: list[float] = []
    both_ms: list[float] = []
    for _ in range(rounds):
        for text in texts:
            t = time.perf_counter()
            m = matcher.match(text)
            match_ms.append((time.perf_counter() - t) * 1000)
            decide(rs, CallFacts(transcript=text, match=m, now=now, attempt=1))
            both_ms.append((time.perf_counter() - t) * 1000)
    match_ms.sort()
    both_ms.sort()
    result = {
        "rules": len(rs.rules),
        "utterances": len(match_ms),
        "understand_p50_ms": round(percentile(match_ms, 0.50), 3),
        "understand_p99_ms": round(percentile(match_ms, 0.99), 3),
        "understand_decide_p99_ms": round(percentile(both_ms, 0.99), 3),
        "model_rss_mb": round(model_mb, 1),
        "process_rss_mb": round(rss_mb(), 1),
        "train_s": round(train_s, 2),
    }
    print(f"rules={result['rules']} utterances={result['utterances']} (caller-style, dev corpus)")
    print(f"understanding (screen + ranking): p50 {result['understand_p50_ms']} ms, "
          f"p99 {result['understand_p99_ms']} ms; with the decision p99 {result['understand_decide_p99_ms']} ms")
    print(f"model resident memory {result['model_rss_mb']} MB (process {result['process_rss_mb']} MB), "
          f"training {result['train_s']} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
