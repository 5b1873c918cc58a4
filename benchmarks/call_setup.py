"""Call setup benchmark: N new calls per second through the emulator into the real daemon.

The emulated Asterisk runs in a child process (so its work does not count against the daemon);
the daemon runs here, exactly as ``pbx-router run`` builds it (embedded PostgreSQL included).
Figures, daemon side:
- StasisStart received -> answer request issued, p50/p99 (ms);
- RSS per active call: (RSS with every call active - RSS before the first call) / active calls;
- CPU seconds per call.

    python benchmarks/call_setup.py [--quick] [--rate 50] [--seconds 20] [--hold 10]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PASSWORD, USER, pct, receive, running_daemon, spawn_emulator  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def emulator_main(conn: mp.connection.Connection, rate: float, seconds: float, hold: float) -> None:
    """Child process: run the emulator, wait for 'go', place calls at ``rate``/s, report."""
    from pbx_router.testing import AsteriskEmulator

    async def main() -> None:
        async with AsteriskEmulator(username=USER, password=PASSWORD) as pbx:
            pbx.add_context("bench-routed")
            # A long greeting keeps every call active (in Stasis) for ``hold`` seconds.
            pbx.sounds["hello-world"] = hold
            conn.send(pbx.base_url)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "go"
            total = int(rate * seconds)
            start = time.monotonic()
            calls = []
            for i in range(total):
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                calls.append(asyncio.create_task(pbx.place_call(caller_number=f"+1555{i:07d}", dialled="100")))
            placed = [await c for c in calls]
            conn.send({"placed": len(placed), "place_seconds": time.monotonic() - start})
            deadline = time.monotonic() + hold + 30
            while time.monotonic() < deadline and any(c.fate != "continued" for c in placed):
                await asyncio.sleep(0.2)
            conn.send({"routed": sum(c.fate == "continued" for c in placed)})
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"

    asyncio.run(main())


async def run(rate: float, seconds: float, hold: float) -> dict[str, float | int | str]:
    proc, conn, base_url = await spawn_emulator(emulator_main, rate, seconds, hold)
    with tempfile.TemporaryDirectory() as tmp:
        config = f"""
ari: {{url: "{base_url}", username: {USER}, password: {PASSWORD}}}
data_dir: "{tmp}"
calls:
  greeting: [sound:hello-world]
  greeting_timeout: {hold + 60}
  default_route: {{type: dialplan, context: bench-routed}}
  max_concurrent: 100000
admin: {{enabled: false}}
"""
        async with running_daemon(config) as app:
            sup = app.supervisor
            base_rss = rss_mb()
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            conn.send("go")
            placed = await receive(conn)
            # Every call is now active (greeting of ``hold`` s): sample memory at the peak.
            peak_active = sup.active
            peak_rss = rss_mb()
            routed = await receive(conn)
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            conn.send("stop")
    proc.join(30)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    lat = list(sup.setup_latencies_ms)
    return {
        "calls_per_s": rate,
        "calls": placed["placed"],
        "routed": routed["routed"],
        "peak_active_calls": peak_active,
        "stasis_to_answer_p50_ms": pct(lat, 50),
        "stasis_to_answer_p99_ms": pct(lat, 99),
        "stasis_to_answer_mean_ms": round(statistics.fmean(lat), 3) if lat else float("nan"),
        "rss_per_call_mb": round((peak_rss - base_rss) / max(1, peak_active), 4),
        "cpu_ms_per_call": round(cpu * 1000 / max(1, placed["placed"]), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a run under a minute")
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--hold", type=float, default=20.0)
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.hold = min(args.seconds, 10.0), min(args.hold, 12.0)
    figures = asyncio.run(run(args.rate, args.seconds, args.hold))
    for k, v in figures.items():
        print(f"{k:28} {v}", file=sys.stderr)
    print(json.dumps(figures))
    return 0 if figures["routed"] == figures["calls"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
