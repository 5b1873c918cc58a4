#!/usr/bin/env python3
"""Split the caller corpus once into a development part and a held-out part (about 30%).

    python scripts/split_corpus.py tests/corpus/parts/*.tsv --out tests/corpus

Stratified by intent so every intent is represented in both parts; which rows are held out is
decided by a hash of the row id alone (not by its text), so the split is reproducible and nobody
chooses it. Tune only on dev.tsv; heldout.tsv is for the numbers we report and for CI.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = ["id", "text", "intent", "also", "tags"]
HELD_OUT = 0.30
SALT = "pbx-router corpus split 1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("parts", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows: list[dict[str, str]] = []
    for part in args.parts:
        with part.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                rows.append({k: (row.get(k) or "").strip() for k in COLUMNS})
    by_intent: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_intent[row["intent"]].append(row)
    dev: list[dict[str, str]] = []
    held: list[dict[str, str]] = []
    for intent in sorted(by_intent):
        group = sorted(by_intent[intent], key=lambda r: hashlib.sha256((SALT + r["id"]).encode()).hexdigest())
        cut = round(len(group) * HELD_OUT)
        held += group[:cut]
        dev += group[cut:]
    for name, part in (("dev.tsv", dev), ("heldout.tsv", held)):
        part.sort(key=lambda r: r["id"])
        with (args.out / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE,
                                    lineterminator="\n", escapechar="\\")
            writer.writeheader()
            writer.writerows(part)
    print(f"{len(rows)} rows: {len(dev)} dev, {len(held)} held out", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
