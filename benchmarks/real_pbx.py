#!/usr/bin/env python3
"""The daemon on a real Asterisk 22.10.1: N concurrent SIP callers speak, how soon are they routed?

    .venv/bin/python benchmarks/real_pbx.py [--quick] [--calls 20]

Traffic model (printed with the results):
- A scratch Asterisk on ``asterisk_conf/`` (``pbx_router.testing.asterisk``; ``../shared/asterisk/
  build.sh`` builds it), the daemon as a real process (``python -m pbx_router run``) on the example
  clinic's rules with the clinic open around the clock and its embedded PostgreSQL, the default
  recogniser (Moonshine, 2 workers; ``--engine pocketsphinx`` for the light one).
- N callers (sipp, digest auth, G.711 u-law) dial 100 within the first second (``--spread``) and,
  0.6 s after answer, say the fixture "refill" request (2.5 s of festival speech), then wait: so
  all N phrases end within about a second of each other, the worst case for the recognisers.
- Enough staff phones to answer everyone: the pharmacy queue gets N + 2 agent phones (the extra
  ``PJSIP/bench<k>`` accounts an admin would add to pjsip.conf and clinic.yaml), each ringing
  0.3 s and answering; every caller hangs up 12 s after answer.
- Per call: end of the caller's phrase (the last voiced sample of the recording, on the caller's
  clock) -> the routing decision (the daemon's ``call_decided`` log line) and -> the INVITE at the
  agent's phone (sipp's receive time). Calls are told apart by the caller's display name, which
  the daemon passes to the agent's phone.
- Daemon CPU: user+system seconds of the daemon process and its recogniser workers, over the
  calls' busy span, per concurrent call; RSS of the daemon's main process at the peak.

The last line printed is one JSON object with ``calls``, ``routed``, ``eos_to_decision_p50_ms``,
``eos_to_decision_p99_ms``, ``eos_to_agent_ring_p50_ms``, ``eos_to_agent_ring_p99_ms``,
``recognition_wait_p50_ms`` and ``_p99_ms`` (the part of it after the endpointer confirmed the end:
the transcript's wait, as each call's first ``call_decided`` says), ``cpu_per_call_pct`` and
``daemon_rss_mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from pbx_router.testing.asterisk import RealAsterisk, append_log, free_port  # noqa: E402
from pbx_router.testing.audio import read_wav  # noqa: E402
from pbx_router.testing.sip import SipAgent, SipCaller  # noqa: E402

from decide import percentile  # noqa: E402

AUDIO = ROOT / "tests" / "fixtures" / "audio" / "refill_01.wav"


def voiced_end_s(path: Path) -> float:
    """Seconds from the start of the recording to its last sample above -40 dBFS."""
    pcm, rate = read_wav(path)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 327)
    return float(loud[-1] + 1) / rate if len(loud) else 0.0


def extra_phones(n: int) -> str:
    lines = []
    for k in range(n):
        lines.append(f"\n[bench{k}](phone-endpoint)\ncontext = from-agents\nauth = bench{k}-auth\naors = bench{k}\n"
                     f"[bench{k}-auth](phone-auth)\nusername = bench{k}\npassword = CHANGE-ME-bench{k}\n"
                     f"[bench{k}](phone-aor)\n")
    return "".join(lines)


def rules_with_phones(path: Path, n: int) -> Path:
    rules: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "clinic.yaml").read_text(encoding="utf-8"))
    cal = rules["calendars"]["clinic"]
    cal["hours"] = {d: "00:00-24:00" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    cal.pop("holidays", None)
    cal.pop("closures", None)
    for k in range(n):
        rules["agents"][f"bench{k}"] = {"endpoint": f"PJSIP/bench{k}", "queues": ["pharmacy"]}
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


def cpu_seconds(pid: int) -> float:
    """User+system CPU of ``pid`` and its children (the recogniser workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def wait_registered(ast: RealAsterisk, proc: asyncio.subprocess.Process, timeout: float = 120) -> None:
    import aiohttp

    headers = {"Authorization": aiohttp.encode_basic_auth("pbx-router", ast.ari_password)}
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(headers=headers) as s:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError("the daemon exited at start")
            try:
                async with s.get(f"{ast.ari_url}/ari/applications") as r:
                    if r.status == 200 and any(a.get("name") == "pbx-router" for a in await r.json()):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)  # a benchmark's start-up wait, not a test
    raise TimeoutError("the daemon did not connect to Asterisk")


async def run(calls: int, engine: str = "moonshine", spread_s: float = 1.0) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix="bpx-", dir="/tmp"))
    phones = calls + 2
    ast = RealAsterisk(ROOT / "asterisk_conf", run_dir / "a", extra_conf={"pjsip.conf": extra_phones(phones)})
    (run_dir / "a").mkdir()
    await ast.start()
    proc: asyncio.subprocess.Process | None = None
    agents: list[SipAgent] = []
    callers: list[SipCaller] = []
    try:
        cfg = run_dir / "pbx-router.yaml"
        cfg.write_text(f"""
ari: {{url: "{ast.ari_url}", username: pbx-router, password: "{ast.ari_password}"}}
data_dir: "{run_dir / 'data'}"
rules: "{rules_with_phones(run_dir / 'clinic.yaml', phones)}"
log: {{level: info, format: json}}
calls: {{greeting: [sound:hello-world], fallback: {{context: pbx-router-fallback}}, max_concurrent: 500}}
media: {{rtp_host: 127.0.0.1, rtp_port_min: {ast.rtp_end + 1}, rtp_port_max: {ast.rtp_end + 4 * calls + 100}}}
admin: {{host: 127.0.0.1, port: {free_port()}, token: "{secrets.token_hex(16)}"}}
speech: {{engine: {engine}}}
""", encoding="utf-8")
        log_path = run_dir / "daemon.log"
        out = append_log(log_path)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pbx_router", "run", "-c", str(cfg), stdout=out, stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            out.close()  # the child has its own descriptor
        await wait_registered(ast, proc)
        agents = [SipAgent(ast, f"bench{k}", ring_s=0.3, workdir=run_dir) for k in range(phones)]
        await asyncio.gather(*(a.start() for a in agents))
        eos = voiced_end_s(AUDIO)
        callers = [SipCaller(ast, "100", audio=AUDIO, audio_at=0.6, hangup_after=12, name=f"Bench caller {i}",
                             workdir=run_dir) for i in range(calls)]
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        peak_rss = 0.0
        for i, c in enumerate(callers):
            await c.start()
            if i + 1 < calls:
                await asyncio.sleep(spread_s / calls)  # arrivals spread over the first spread_s
        await asyncio.gather(*(asyncio.wait_for(c.answered.wait(), 30) for c in callers))
        names = await caller_names(ast)
        waiting = asyncio.gather(*(c.ended(90) for c in callers))
        while not waiting.done():
            peak_rss = max(peak_rss, rss_mb(proc.pid))
            await asyncio.sleep(0.5)  # sampling the daemon's memory while the calls run
        await waiting
        busy_s = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        await asyncio.sleep(3)  # the last call records reach the log
        decided: dict[str, float] = {}  # channel id -> when the daemon decided
        waits: list[float] = []  # end of speech confirmed -> transcript, per first decision
        for line in log_path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "call_decided":
                stamp = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
                if rec["channel_id"] not in decided and rec.get("recognition_wait_ms") is not None:
                    waits.append(float(rec["recognition_wait_ms"]))
                decided.setdefault(rec["channel_id"], stamp)
        spoke = {c.name: (c.speech_started_wall or 0.0) + eos for c in callers if c.speech_started_wall}
        ring: dict[str, float] = {}
        for a in agents:
            for when, who in a.invites_received():
                ring[who] = min(ring.get(who, when), when)
        to_decision = sorted((decided[ch] - spoke[n]) * 1000 for ch, n in names.items()
                             if ch in decided and n in spoke)
        to_ring = sorted((ring[n] - spoke[n]) * 1000 for n in spoke if n in ring)
        return {
            "calls": calls,
            "engine": engine,
            "arrivals_within_s": spread_s,
            "routed": len(to_decision),
            "rung": len(to_ring),
            "eos_to_decision_p50_ms": round(percentile(to_decision, 0.5), 1) if to_decision else None,
            "eos_to_decision_p99_ms": round(percentile(to_decision, 0.99), 1) if to_decision else None,
            "eos_to_agent_ring_p50_ms": round(percentile(to_ring, 0.5), 1) if to_ring else None,
            "eos_to_agent_ring_p99_ms": round(percentile(to_ring, 0.99), 1) if to_ring else None,
            "recognition_wait_p50_ms": round(percentile(sorted(waits), 0.5), 1) if waits else None,
            "recognition_wait_p99_ms": round(percentile(sorted(waits), 0.99), 1) if waits else None,
            "cpu_per_call_pct": round(100 * cpu / busy_s / calls, 2),
            "daemon_rss_mb": round(peak_rss, 1),
        }
    finally:
        for c in callers:
            await c.stop()
        for a in agents:
            await a.stop()
        if proc is not None and proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await ast.stop()
        if not os.environ.get("PBXR_KEEP_BENCH"):
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"kept {run_dir}")


async def caller_names(ast: RealAsterisk) -> dict[str, str]:
    """channel id -> the caller's display name, from Asterisk while the calls are up."""
    import aiohttp

    headers = {"Authorization": aiohttp.encode_basic_auth("pbx-router", ast.ari_password)}
    async with aiohttp.ClientSession(headers=headers) as s, s.get(f"{ast.ari_url}/ari/channels") as r:
        return {c["id"]: c.get("caller", {}).get("name", "") for c in await r.json()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of --calls callers (under two minutes)")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--engine", default="moonshine", help="speech.engine for the daemon (default: moonshine)")
    parser.add_argument("--spread", type=float, default=1.0, help="callers dial within this many seconds")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.calls, args.engine, args.spread))
    print(f"calls={result['calls']} routed={result['routed']} agent phones rung={result['rung']}")
    print(f"end of phrase -> decision p50 {result['eos_to_decision_p50_ms']} ms, "
          f"p99 {result['eos_to_decision_p99_ms']} ms; -> agent INVITE p50 {result['eos_to_agent_ring_p50_ms']} ms, "
          f"p99 {result['eos_to_agent_ring_p99_ms']} ms")
    print(f"of which the transcript's wait once the end was confirmed: p50 {result['recognition_wait_p50_ms']} ms, "
          f"p99 {result['recognition_wait_p99_ms']} ms")
    print(f"daemon CPU {result['cpu_per_call_pct']}% of a core per concurrent call; "
          f"main process RSS {result['daemon_rss_mb']} MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
