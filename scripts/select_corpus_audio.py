#!/usr/bin/env python3
"""Choose which corpus rows become telephone audio, and with which voice and line noise.

Writes the plan ``tests/corpus/audio/audio.tsv`` (``id voice noise``) that
``scripts/render_corpus_audio.sh`` renders. Deterministic: rows are ordered by a hash of their id,
so the same corpus always gives the same plan, and adding rows moves few choices. Only the ``id``,
``intent`` and ``tags`` columns are read; the selection never looks at the held-out sentences.

- about 30% of the rows from the held-out file, the rest from the development file;
- emergencies and crises first (at least ``--min-urgent``, in proportion to each file's share),
  then the other intents in turn so every intent is represented;
- rows tagged ``asr_error``, ``misspelling`` or ``typed`` are skipped: they are written as text
  (a recogniser's mistakes, a typo, a chat message), not as something a caller says;
- voices slt / kal / ked in turn, half of each voice's rows with line noise (pink, brown, white).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
VOICES = ("slt", "kal", "ked")
NOISES = ("pink", "brown", "white")
SKIP_TAGS = {"asr_error", "misspelling", "typed"}
URGENT = {"emergency", "mental_health_crisis"}


def _key(row_id: str) -> str:
    return hashlib.sha256(row_id.encode("utf-8")).hexdigest()


def eligible(path: Path) -> list[tuple[str, str]]:
    """-> [(id, intent)] of the rows that can be spoken, in hash order."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [(r["id"], r["intent"]) for r in reader
                if r.get("id") and not SKIP_TAGS & {t.strip() for t in (r.get("tags") or "").split(",")}]
    return sorted(rows, key=lambda r: _key(r[0]))


def choose(rows: list[tuple[str, str]], count: int, urgent: int) -> list[str]:
    """``urgent`` emergencies/crises, then round-robin over the intents until ``count`` rows."""
    picked = [i for i, intent in rows if intent in URGENT][:urgent]
    chosen = set(picked)
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row_id, intent in rows:
        if row_id not in chosen:
            by_intent[intent].append(row_id)
    queues = [by_intent[k] for k in sorted(by_intent)]
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def plan(ids: list[str]) -> list[tuple[str, str, str]]:
    """Voices in turn; within each voice every other row noisy; noise colours in turn."""
    ordered = sorted(ids, key=_key)
    out = []
    for n, row_id in enumerate(ordered):
        noisy = (n // len(VOICES)) % 2 == 1
        noise = NOISES[(n // (2 * len(VOICES))) % len(NOISES)] if noisy else "none"
        out.append((row_id, VOICES[n % len(VOICES)], noise))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=CORPUS / "dev.tsv")
    parser.add_argument("--heldout", type=Path, default=CORPUS / "heldout.tsv")
    parser.add_argument("--count", type=int, default=310, help="rows to render in all")
    parser.add_argument("--heldout-share", type=float, default=0.3)
    parser.add_argument("--min-urgent", type=int, default=90, help="emergencies + crises, at least")
    parser.add_argument("--all", type=Path, help="plan every eligible row of this one file instead")
    parser.add_argument("--out", type=Path, default=CORPUS / "audio" / "audio.tsv")
    args = parser.parse_args(argv)

    if args.all:
        ids = [i for i, _ in eligible(args.all)]
    else:
        dev, held = eligible(args.dev), eligible(args.heldout)
        n_held = round(args.count * args.heldout_share)
        u_held = round(args.min_urgent * args.heldout_share)
        ids = choose(dev, args.count - n_held, args.min_urgent - u_held) + choose(held, n_held, u_held)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as handle:
        handle.write("id\tvoice\tnoise\n")
        for row in plan(ids):
            handle.write("\t".join(row) + "\n")
    print(f"planned {len(ids)} rows -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
