"""``pbx-router transcribe FILE.wav [--engine NAME] [--json]``: run a recording through the live
decode/resample/VAD/engine path and print the transcript (to stdout: this is the user's own file)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from pbx_router.speech import ENGINES, EnginePool, SpeechError
from pbx_router.speech.factory import DEFAULT_ENGINE


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "transcribe", help="transcribe a WAV file (8/16 kHz, PCM16 or G.711) as a live call would be")
    parser.add_argument("file", type=Path, metavar="FILE.wav")
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE)
    parser.add_argument("--model", dest="model_path", default=None,
                        help="model directory (vosk: required; pocketsphinx: acoustic model)")
    parser.add_argument("--server-url", default=None, help="vosk-server websocket URL")
    parser.add_argument("--generic-lm", action="store_true",
                        help="pocketsphinx: use the wheel's generic LM instead of the domain LM")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pbx_router.log import configure

    configure("warning")  # stdout carries the transcript only; progress logs stay out of it
    if not args.file.is_file():
        print(f"pbx-router transcribe: {args.file}: no such file", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except (SpeechError, ValueError) as exc:
        print(f"pbx-router transcribe: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    from pbx_router.speech.transcribe import transcribe_file_async

    pool = EnginePool.from_config(
        engine=args.engine, model_path=args.model_path, workers=1, server_url=args.server_url,
        language_model="generic" if args.generic_lm else "domain",
    )
    async with pool:
        started = time.perf_counter()
        transcript, audio_seconds = await transcribe_file_async(args.file, pool)
        decode_seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({
            "text": transcript.text,
            "confidence": transcript.confidence,
            "words": [{"word": w.word, "start_s": w.start_s, "end_s": w.end_s,
                       "confidence": w.confidence} for w in transcript.words],
            "engine": transcript.engine,
            "alternatives": list(transcript.alternatives),
            "audio_seconds": round(audio_seconds, 3),
            "decode_seconds": round(decode_seconds, 3),
        }))
    else:
        print(transcript.text)
    return 0
