"""Queue benchmark: callers through the rules into a daemon-owned queue served by 10 agents.

The emulated Asterisk (callers and scripted agents) runs in a child process; the daemon runs here
as ``pbx-router run`` builds it (keypad-only, so the figures are the queue's, not the recogniser's).
Figures, daemon side:
- decision -> first agent ringing (p50/p99 ms): the caller joins the queue -> the agent legs are up;
- agent answer -> caller bridged (p50/p99 ms): the agent's StasisStart -> caller and agent bridged;
- calls_per_s: callers answered per second over the run (agents answer after 0.2 s, talk 1 s).

    python benchmarks/queues.py [--quick] [--rate 6] [--seconds 30] [--agents 10]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import multiprocessing.connection
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PASSWORD, USER, pct, receive, running_daemon, spawn_emulator  # noqa: E402


def rules_yaml(agents: int) -> str:
    agent_lines = "\n".join(f"  a{i}: {{endpoint: PJSIP/a{i}, queues: [bench]}}" for i in range(1, agents + 1))
    return f"""version: 1
settings: {{timezone: UTC, confidence_floor: 0.5, emergency: {{target: bench, chain: [bench, person]}}}}
intents:
  operator: {{digit: 0, keywords: {{operator: 0.9}}}}
  sales: {{digit: 1, keywords: {{sales: 0.9}}}}
targets:
  bench: {{queue: bench}}
  vm: {{voicemail: {{context: pbx-router-fallback, extension: s}}}}
  person: {{dialplan: {{context: pbx-router-fallback}}}}
rules:
  - name: everyone-to-the-queue
    then: {{target: bench}}
queues:
  bench: {{strategy: longest_idle, ring_timeout_s: 10, wrapup_s: 0, max_wait_s: 600, max_len: 1000,
          overflow_on_time: {{target: vm}}, overflow_on_length: {{target: vm}}}}
agents:
{agent_lines}
"""


def emulator_main(conn: mp.connection.Connection, rate: float, seconds: float, agents: int) -> None:
    from pbx_router.testing import AgentBehaviour, AsteriskEmulator

    async def main() -> None:
        async with AsteriskEmulator(username=USER, password=PASSWORD) as pbx:
            for i in range(1, agents + 1):
                pbx.add_endpoint(f"PJSIP/a{i}", AgentBehaviour.answer_then_hangup(answer_after=0.2, talk_seconds=1.0))
            pbx.add_context("pbx-router-fallback")
            conn.send(pbx.base_url)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "go"
            total = int(rate * seconds)
            start = time.monotonic()
            calls = []
            for i in range(total):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                calls.append(await pbx.place_call(caller_number=f"+1555{i:07d}", dialled="100", dtmf=[(0.05, "1")]))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and any(c.fate in ("in_stasis", "bridged") for c in calls):
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - start
            fates: dict[str, int] = {}
            for c in calls:
                fates[c.fate] = fates.get(c.fate, 0) + 1
            conn.send({"placed": total, "elapsed_s": elapsed, "fates": fates})
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"

    asyncio.run(main())


async def run(rate: float, seconds: float, agents: int) -> dict[str, object]:
    proc, conn, base_url = await spawn_emulator(emulator_main, rate, seconds, agents)
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "bench-rules.yaml"
        rules.write_text(rules_yaml(agents))
        config = f"""
ari: {{url: "{base_url}", username: {USER}, password: {PASSWORD}}}
data_dir: "{tmp}"
rules: "{rules}"
speech: {{enabled: false}}
calls: {{greeting: [], max_concurrent: 100000, fallback: {{context: pbx-router-fallback}}}}
admin: {{enabled: false}}
"""
        async with running_daemon(config) as app:
            conn.send("go")
            result = await receive(conn)
            svc = app.brain.queue_service
            ringing = list(svc.stats.decision_to_ringing_ms)
            bridged = list(svc.stats.answer_to_bridged_ms)
            conn.send("stop")
    proc.join(30)
    answered = len(bridged)
    return {
        "agents": agents,
        "offered_per_s": rate,
        "calls": result["placed"],
        "answered": answered,
        "fates": result["fates"],
        "decision_to_ringing_p50_ms": pct(ringing, 50),
        "decision_to_ringing_p99_ms": pct(ringing, 99),
        "answer_to_bridged_p50_ms": pct(bridged, 50),
        "answer_to_bridged_p99_ms": pct(bridged, 99),
        "calls_per_s": round(answered / result["elapsed_s"], 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a run under a minute")
    ap.add_argument("--rate", type=float, default=6.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--agents", type=int, default=10)
    args = ap.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 15.0)
    figures = asyncio.run(run(args.rate, args.seconds, args.agents))
    for k, v in figures.items():
        print(f"{k:28} {v}", file=sys.stderr)
    print(json.dumps(figures))
    return 0 if figures["answered"] == figures["calls"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
