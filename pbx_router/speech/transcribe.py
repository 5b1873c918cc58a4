"""Transcribe recorded audio through the same path live calls take: decode -> resample to the
engine's rate -> VAD endpointing (only voiced audio plus padding reaches the recogniser) ->
EnginePool session.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from pbx_router.media.codecs import Resampler, read_wav
from pbx_router.media.vad import Audio, Endpointer, EndpointerConfig, SpeechEnded, SpeechStarted
from pbx_router.speech.factory import DEFAULT_ENGINE
from pbx_router.speech.pool import EnginePool, Session
from pbx_router.speech.types import Transcript

_CHUNK_MS = 20  # the packetisation of externalMedia RTP


async def transcribe_pcm(pool: EnginePool, pcm: bytes, rate: int,
                         endpointer: EndpointerConfig | None = None,
                         timeout: float = 10.0) -> Transcript:
    """Native PCM16 mono at ``rate`` -> one final Transcript covering every utterance found.

    Audio is fed in 20 ms chunks as RTP would deliver it; what the VAD calls silence is never
    decoded. Word times are relative to the start of ``pcm``.
    """
    resampler = Resampler(rate, pool.sample_rate)
    audio = resampler.process(pcm) + resampler.flush()
    cfg = endpointer or EndpointerConfig()
    # A recording is not a live turn: no-input must not fire, and utterances may be long.
    cfg = replace(cfg, no_input_timeout_ms=max(cfg.no_input_timeout_ms, 10**9),
                  max_utterance_ms=max(cfg.max_utterance_ms, 60_000))
    ep = Endpointer(cfg, sample_rate=pool.sample_rate)
    chunk = pool.sample_rate * 2 * _CHUNK_MS // 1000
    results: list[Transcript] = []
    offsets: list[float] = []
    start_s = 0.0

    # One pool session per utterance, as a live call opens one at each speech start: a session
    # ends with its final transcript, so audio after it must go to a fresh one.
    # One pool session per utterance, as a live call opens one at each speech start: a session
    # ends with its final transcript, so the audio after it goes to a fresh one.
    opened: contextlib.AbstractAsyncContextManager[Session] | None = None
    session: Session | None = None
    try:
        async def handle(events: list[Any]) -> None:
            nonlocal start_s, opened, session
            for event in events:
                if isinstance(event, SpeechStarted):
                    start_s = max(0, event.at_ms - cfg.padding_ms) / 1000
                elif isinstance(event, Audio):
                    if session is None:
                        opened = pool.session()
                        session = await opened.__aenter__()
                    await session.feed(event.pcm)
                elif isinstance(event, SpeechEnded) and session is not None and opened is not None:
                    current, closing, session, opened = session, opened, None, None
                    try:
                        results.append(await current.finish(timeout))
                    finally:
                        await closing.__aexit__(None, None, None)
                    offsets.append(start_s)

        for offset in range(0, len(audio), chunk):
            await handle(ep.feed(audio[offset:offset + chunk]))
        await handle(ep.gap(cfg.end_silence_ms + cfg.frame_ms))  # end of file: close the utterance
    finally:
        if opened is not None:
            await opened.__aexit__(None, None, None)
    return _join(results, offsets, pool.engine)


_MAX_ALTERNATIVES = 5


def _join(parts: list[Transcript], offsets: list[float], engine: str) -> Transcript:
    words = [replace(w, start_s=round(w.start_s + off, 2), end_s=round(w.end_s + off, 2))
             for part, off in zip(parts, offsets, strict=True) for w in part.words]
    spoken = [p for p in parts if p.text]
    text = " ".join(p.text for p in spoken)
    confidence = round(sum(p.confidence for p in spoken) / len(spoken), 3) if spoken else 0.0
    # An alternative of the whole recording: one utterance heard another way, the rest as best.
    alternatives: dict[str, None] = {}
    for index, part in enumerate(spoken):
        for alt in part.alternatives:
            joined = " ".join(filter(None, [*(p.text for p in spoken[:index]), alt,
                                            *(p.text for p in spoken[index + 1:])]))
            if joined != text and len(alternatives) < _MAX_ALTERNATIVES:
                alternatives.setdefault(joined, None)
    return Transcript(text=text, confidence=confidence, words=words, engine=engine,
                      is_final=True, alternatives=tuple(alternatives))


async def transcribe_file_async(path: Path, pool: EnginePool) -> tuple[Transcript, float]:
    """-> (transcript, audio seconds). The WAV may be 8/16 kHz PCM16 or G.711 (mu-law/A-law)."""
    pcm, rate = await asyncio.to_thread(read_wav, path)
    return await transcribe_pcm(pool, pcm, rate), len(pcm) / 2 / rate


def transcribe_file(path: Path, engine: str | None = None, **opts: Any) -> Transcript:
    """Blocking helper for the CLI and tools: start a one-worker pool, transcribe, stop.
    ``opts`` go to :meth:`EnginePool.from_config`. Not for use inside a running event loop."""

    async def run() -> Transcript:
        opts.setdefault("workers", 1)
        async with EnginePool.from_config(engine=engine or DEFAULT_ENGINE, **opts) as pool:
            transcript, _ = await transcribe_file_async(Path(path), pool)
            return transcript

    return asyncio.run(run())
