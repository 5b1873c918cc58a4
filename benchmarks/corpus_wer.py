#!/usr/bin/env python3
"""Word error rate and decoding CPU of a recogniser over rendered corpus audio, via the live path.

    benchmarks/corpus_wer.py [--audio DIR] [--corpus TSV ...] [--split dev|heldout|all]
                             [--language-model domain|generic] [--option key=value ...] [-v]

Audio: ``DIR/audio.tsv`` (``id voice noise``, from scripts/render_corpus_audio.sh) and ``DIR/<id>.wav``;
references: the ``text`` column of the corpus files. Every file goes through
``pbx_router.speech.transcribe`` (G.711 decode, resample, webrtcvad endpointing, a pool session),
as a live call's audio does. CPU is the worker processes' user+system time over the run, per
second of audio. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pbx_router.media.codecs import read_wav
from pbx_router.speech import EnginePool, RecognizerFactory, process_backend
from pbx_router.speech.transcribe import transcribe_pcm
from pbx_router.speech.wer import spoken_reference, word_error_rate, word_errors

TICK = os.sysconf("SC_CLK_TCK")
# This measures accuracy, not latency: on a box shared with other work a final may take longer
# than a live call would wait, and a worker busy in one long decode may miss the watchdog's ping.
process_backend.PING_TIMEOUT_S = 120.0
FINAL_TIMEOUT_S = 120.0


def _cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICK


def load(audio: Path, corpora: list[Path]) -> list[tuple[str, str, str, str]]:
    """-> [(id, split, voice+noise, reference text)] for every planned file that exists."""
    texts: dict[str, tuple[str, str]] = {}
    for path in corpora:
        if not path.is_file():
            continue
        split = "heldout" if "heldout" in path.name else "dev"
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                texts[row["id"]] = (split, row["text"])
    rows = []
    with (audio / "audio.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if row["id"] in texts and (audio / f"{row['id']}.wav").is_file():
                split, text = texts[row["id"]]
                rows.append((row["id"], split, f"{row['voice']}/{row['noise']}", text))
    return rows


async def run(args: argparse.Namespace) -> dict[str, object]:
    rows = [r for r in load(args.audio, args.corpus) if args.split in ("all", r[1])]
    if args.limit:
        rows = rows[:args.limit]  # the plan is in id-hash order: a fixed pseudo-random subset
    options: dict[str, object] = {}
    for item in args.option:
        key, _, value = item.partition("=")
        options[key] = value
    factory = RecognizerFactory(language_model=args.language_model, options=options,
                                general_words=args.general_words, general_weight=args.general_weight)
    pool = EnginePool(factory, args.workers)
    started = time.monotonic()
    await pool.start()
    startup = time.monotonic() - started
    pids = pool.worker_pids
    cpu0 = sum(_cpu(p) for p in pids)
    pairs: list[tuple[str, str]] = []
    by_kind: dict[str, list[tuple[str, str]]] = {}
    seconds = 0.0
    try:
        for row_id, _split, kind, text in rows:
            pcm, rate = read_wav(args.audio / f"{row_id}.wav")
            audio_s = len(pcm) / 2 / rate
            transcript = await transcribe_pcm(pool, pcm, rate, timeout=FINAL_TIMEOUT_S)
            seconds += audio_s
            ref = spoken_reference(text)
            pairs.append((ref, transcript.text))
            by_kind.setdefault(kind.split("/")[1] != "none" and "noisy" or "clean", []).append(
                (ref, transcript.text))
            if args.verbose:
                errors, n = word_errors(ref, transcript.text)
                print(f"{row_id:12} {kind:11} {errors:2}/{n:2} ref={ref!r}\n{'':25}hyp={transcript.text!r}"
                      f" alts={list(transcript.alternatives)[:2]!r}")
        cpu = sum(_cpu(p) for p in pids) - cpu0
    finally:
        await pool.close()
    result = {
        "files": len(pairs), "split": args.split, "language_model": args.language_model,
        "general_words": args.general_words, "general_weight": args.general_weight,
        "options": options, "wer": round(word_error_rate(pairs), 4),
        "wer_clean": round(word_error_rate(by_kind.get("clean", [])), 4),
        "wer_noisy": round(word_error_rate(by_kind.get("noisy", [])), 4),
        "audio_s": round(seconds, 1), "cpu_per_audio_s": round(cpu / seconds, 4) if seconds else 0.0,
        "startup_s": round(startup, 2),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=ROOT / "tests" / "corpus" / "audio")
    parser.add_argument("--corpus", type=Path, nargs="+",
                        default=[ROOT / "tests" / "corpus" / "dev.tsv",
                                 ROOT / "tests" / "corpus" / "heldout.tsv"])
    parser.add_argument("--split", choices=("dev", "heldout", "all"), default="dev")
    parser.add_argument("--language-model", default="domain")
    parser.add_argument("--option", action="append", default=[], help="raw decoder option key=value")
    parser.add_argument("--general-words", type=int, help="default: lm.GENERAL_WORDS")
    parser.add_argument("--general-weight", type=float, help="default: lm.GENERAL_WEIGHT")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit", type=int, help="only the first N files of the plan")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
