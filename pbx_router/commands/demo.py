"""``pbx-router demo``: the real daemon against the bundled emulated PBX, with sample calls.

Needs no Asterisk and no database: it starts the Asterisk emulator and an embedded PostgreSQL
in a temporary directory, runs the daemon exactly as ``run`` would, places a few calls and prints
what happened to each, as the caller heard it and as the call record says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_USER = "pbx-router"
DEMO_PASSWORD = "demo-secret"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="run the daemon against the bundled emulated PBX and place sample calls")
    p.add_argument("--keep", metavar="DIR", help="keep the data directory (database, spool) here")
    p.add_argument("--verbose", action="store_true", help="show the daemon's log lines")
    p.set_defaults(func=cmd_demo)


@dataclass
class Scenario:
    title: str
    caller_number: str
    caller_name: str
    place: Callable[[Any], Awaitable[Any]]
    done: Callable[[Any], bool]


def cmd_demo(args: argparse.Namespace) -> int:
    from pbx_router import log

    log.configure("info" if args.verbose else "error", json=False)
    try:
        return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        return 130


def _describe(call: Any) -> str:
    media = [str(p["media_uri"] if isinstance(p, dict) else getattr(p, "media_uri", p)) for p in call.playbacks]
    heard = ", ".join(m for m in media if not m.startswith("tone:")) or "nothing"
    fate = call.fate
    if fate == "continued":
        ctx, ext, prio = call.continued_to
        where = f"handed to the dialplan at {ctx},{ext},{prio}"
    elif fate == "bridged":
        where = f"talking with {', '.join(sorted(call.bridged_with)) or 'an agent'}"
    elif fate == "hung_up_by_app":
        where = "connected to an agent; the agent finished the call"
    elif fate == "hung_up_by_caller":
        where = "hung up"
    elif fate == "stasis_failed":
        where = "pbx-router was down: Asterisk's dialplan took the call (STASISSTATUS=FAILED)"
    else:
        where = fate
    return f"heard {heard}; {where}"


async def _demo(args: argparse.Namespace) -> int:
    from pbx_router.app import App
    from pbx_router.config import parse_config
    from pbx_router.testing import AgentBehaviour, AsteriskEmulator

    with contextlib.ExitStack() as stack:
        data_dir = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        print("pbx-router demo: starting the emulated Asterisk 22 and the daemon "
              "(embedded PostgreSQL in a temporary directory)...", flush=True)
        async with AsteriskEmulator(username=DEMO_USER, password=DEMO_PASSWORD) as pbx:
            pbx.add_context("pbx-router-fallback")
            pbx.add_context("clinic-frontdesk")
            pbx.add_endpoint("PJSIP/agent1", AgentBehaviour.answer_then_hangup(answer_after=1.0, talk_seconds=2.0))
            pbx.add_endpoint("PJSIP/agent2", AgentBehaviour.never_answer())
            cfg = parse_config(
                f"""
ari: {{url: "{pbx.base_url}", username: {DEMO_USER}, password: {DEMO_PASSWORD}}}
data_dir: "{data_dir}"
calls:
  greeting: [sound:hello-world]
  default_route: {{type: endpoint, endpoint: PJSIP/agent1, timeout: 10}}
  fallback: {{context: pbx-router-fallback}}
shutdown: {{drain_timeout: 5}}
""",
                "demo-config.yaml",
                env={},
            )

            # 1. A call while the daemon is not running yet: the dialplan still reaches a human.
            results: list[tuple[str, str, Any]] = []
            early = await pbx.place_call(caller_number="+15550100001", caller_name="Early Caller", dialled="100")
            await early.wait_for(lambda c: c.fate == "stasis_failed", timeout=10)
            results.append(("Call while pbx-router is down", "+15550100001", early))

            app = App(cfg, install_signals=False)
            daemon = asyncio.create_task(app.run(), name="daemon")
            try:
                await _wait(lambda: daemon.done() or (app.stream is not None and app.stream.ready.is_set()), 60)
                if daemon.done():
                    daemon.result()
                print("daemon ready: attached to the emulated Asterisk over ARI\n", flush=True)

                pat = await pbx.place_call(caller_number="+15550100002", caller_name="Pat Doe", dialled="100")
                sam = await pbx.place_call(caller_number="+15550100003", caller_name="Sam Roe", dialled="100",
                                           hangup_after=0.3)
                await pat.wait_for(lambda c: c.fate in ("hung_up_by_app", "hung_up_by_caller", "continued"), 30)
                await sam.wait_for(lambda c: c.fate == "hung_up_by_caller", 30)
                results.append(("Caller routed to the front desk (agent1)", "+15550100002", pat))
                results.append(("Caller hangs up during the greeting", "+15550100003", sam))

                # agent1 stops answering: route to agent2, who never answers -> fallback to a human
                app.supervisor.router._route = app.supervisor.router._route.__class__(  # type: ignore[union-attr]
                    "endpoint", endpoint="PJSIP/agent2", timeout=2, reason="demo: agent2 on duty")
                alex = await pbx.place_call(caller_number="+15550100004", caller_name="Alex Poe", dialled="100")
                await alex.wait_for(lambda c: c.fate == "continued", 30)
                results.append(("Agent never answers: safe fallback", "+15550100004", alex))
            finally:
                app.request_stop()
                await asyncio.wait_for(daemon, timeout=30)

            print(f"{'scenario':44} {'caller':14} what happened")
            print("-" * 110)
            for title, number, call in results:
                print(f"{title:44} {number:14} {_describe(call)}")
            print()
            await _print_records(app, cfg, data_dir)
    return 0


async def _print_records(app: Any, cfg: Any, data_dir: Path) -> None:
    from pbx_router.store import Store

    store = await Store.open(cfg.database.url, data_dir)
    try:
        rows = await store.calls.list(limit=20)
        print(f"call records in PostgreSQL ({len(rows)}):")
        for r in sorted(rows, key=lambda r: r.started_at):
            print(f"  {r.caller_number:14} dialled {r.dialled:5} outcome={r.outcome}")
    finally:
        await store.close()
    rec = app.recorder.stats if app.recorder is not None else None
    if rec is not None:
        print(f"recorder: {rec}")


async def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            print("timed out waiting for the daemon", file=sys.stderr)
            raise TimeoutError
        await asyncio.sleep(0.05)
