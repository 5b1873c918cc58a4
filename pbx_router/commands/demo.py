"""``pbx-router demo``: the real daemon against the bundled emulated PBX, with sample calls.

Needs no Asterisk and no database: it starts the Asterisk emulator and an embedded PostgreSQL
in a temporary directory, runs the daemon exactly as ``run`` would with the example clinic's
routing rules and the default recogniser, places calls that speak recorded phrases (over real
RTP), press keys, stay silent or hang up, and prints what happened to each: what the daemon
heard, which intent and rule decided, and where the caller ended up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEMO_USER = "pbx-router"
DEMO_PASSWORD = "demo-emulator-ari-password"
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "clinic.yaml"
AUDIO = Path(__file__).resolve().parents[1] / "testing" / "demo_audio"
NY = dt.timezone(dt.timedelta(hours=-5))
TUESDAY_MORNING = dt.datetime(2026, 12, 1, 10, 0, tzinfo=NY)
TUESDAY_NIGHT = dt.datetime(2026, 12, 1, 22, 0, tzinfo=NY)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="run the daemon against the bundled emulated PBX and place sample calls")
    p.add_argument("--keep", metavar="DIR", help="keep the data directory (database, spool) here")
    p.add_argument("--verbose", action="store_true", help="show the daemon's log lines")
    p.set_defaults(func=cmd_demo)


@dataclass
class Scenario:
    title: str
    number: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    clock: dt.datetime = TUESDAY_MORNING
    call: Any = None
    notes: list[str] = field(default_factory=list)


def cmd_demo(args: argparse.Namespace) -> int:
    from pbx_router import log

    log.configure("info" if args.verbose else "critical", json=False)
    try:
        return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        return 130


def _where(call: Any) -> str:
    fate = call.fate
    if fate == "continued":
        ctx, ext, prio = call.continued_to
        return f"dialplan {ctx},{ext},{prio}"
    if fate == "bridged":
        return f"talking with {', '.join(sorted(call.bridged_with)) or 'an agent'}"
    if fate == "hung_up_by_app":
        agent = getattr(call, "demo_agent", None)
        return f"talked with {agent}, who then hung up" if agent else "pbx-router ended the call after its message"
    if fate == "hung_up_by_caller":
        return "caller hung up"
    if fate == "stasis_failed":
        return "pbx-router down: Asterisk's own fallback (STASISSTATUS=FAILED)"
    return str(fate)


async def _demo(args: argparse.Namespace) -> int:
    from pbx_router.app import App
    from pbx_router.config import parse_config
    from pbx_router.testing import AgentBehaviour, AsteriskEmulator

    with contextlib.ExitStack() as stack:
        data_dir = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        print("pbx-router demo: an emulated Asterisk 22, the daemon with the example clinic's rules, the")
        print("default recogniser (PocketSphinx) and an embedded PostgreSQL in a temporary directory.", flush=True)
        async with AsteriskEmulator(username=DEMO_USER, password=DEMO_PASSWORD) as pbx:
            for ctx in ("pbx-router-fallback", "router-queue", "clinic-voicemail", "clinic-after-hours"):
                pbx.add_context(ctx)
            # The booking flow's prompts (pbx_router/prompts) at their real length.
            from pbx_router.calls import booking_prompts

            for name, wav in booking_prompts.rendered_files().items():
                with contextlib.suppress(wave.Error, OSError), wave.open(str(wav)) as w:
                    pbx.sounds[f"pbx-router/{name}"] = w.getnframes() / w.getframerate()
            # The clinic's own messages, as an admin installs them (examples/sounds/en/custom).
            for wav in sorted((ROOT / "examples" / "sounds" / "en" / "custom").glob("*.wav")):
                with contextlib.suppress(wave.Error, OSError), wave.open(str(wav)) as w:
                    pbx.sounds[f"custom/{wav.stem}"] = w.getnframes() / w.getframerate()
            pbx.sounds["hello-world"] = 2.0
            # The clinic's staff phones (examples/clinic.yaml agents) pick up after a ring and talk briefly.
            for n in (1, 2, 3):
                pbx.add_endpoint(
                    f"PJSIP/agent{n}", AgentBehaviour.answer_then_hangup(answer_after=1.0, talk_seconds=2.0)
                )
            rules = f"rules: {json.dumps(str(RULES))}\n" if RULES.exists() else ""
            cfg = parse_config(
                f"""
ari: {{url: "{pbx.base_url}", username: {DEMO_USER}, password: {DEMO_PASSWORD}}}
data_dir: {json.dumps(str(data_dir))}
{rules}speech: {{workers: 2, expected_sessions: 4, no_input_ms: 3000}}
calls: {{greeting: [sound:hello-world], fallback: {{context: pbx-router-fallback}}}}
shutdown: {{drain_timeout: 5}}
admin: {{enabled: false}}
""",
                "demo-config.yaml",
                env={},
            )

            early = Scenario("Call while pbx-router is down", "+15550100001")
            early.call = await pbx.place_call(caller_number=early.number, dialled="100")
            await early.call.wait_for(lambda c: c.fate == "stasis_failed", timeout=10)

            app = App(cfg, install_signals=False)
            daemon = asyncio.create_task(app.run(), name="daemon")
            scenarios = [early]
            try:
                await _wait(lambda: daemon.done() or (app.stream is not None and app.stream.ready.is_set()), 120)
                if daemon.done():
                    daemon.result()
                print("daemon ready: attached to the emulated Asterisk over ARI; placing calls...\n", flush=True)
                day = [
                    Scenario("Says 'I need to refill my prescription'", "+15550100002",
                             {"audio": AUDIO / "refill_01.wav", "audio_at": 0.6}),
                    Scenario("Asks for the nurse (noisy line)", "+15550100003",
                             {"audio": AUDIO / "nurse_02.wav", "audio_at": 0.6}),
                    Scenario("Presses 4 during the greeting", "+15550100004", {"dtmf": [(0.8, "4")]}),
                    Scenario("Says nothing at all", "+15550100005"),
                    Scenario("Hangs up during the greeting", "+15550100006", {"hangup_after": 0.5}),
                ]
                night = [
                    Scenario("At 22:00: 'I have chest pain'", "+15550100007",
                             {"audio": AUDIO / "emergency_01.wav", "audio_at": 0.6}, TUESDAY_NIGHT),
                    Scenario("At 22:00: asks for a refill", "+15550100008",
                             {"audio": AUDIO / "refill_02.wav", "audio_at": 0.6}, TUESDAY_NIGHT),
                ]
                booking = await _booking_call(app, pbx)
                for batch in (day, night):
                    if app.brain is not None:
                        app.brain.clock = _fixed_clock(batch[0].clock)
                    for s in batch:
                        s.call = await pbx.place_call(caller_number=s.number, dialled="100", **s.kwargs)
                    await asyncio.gather(*[_follow(pbx, s.call) for s in batch], return_exceptions=True)
                    scenarios += batch
                if booking is not None:
                    scenarios.insert(1, booking)
            finally:
                app.request_stop()
                await asyncio.wait_for(daemon, timeout=60)
            await _report(scenarios, cfg, data_dir)
    return 0


def _fixed_clock(at: dt.datetime) -> Callable[[], dt.datetime]:
    """A clock that always says ``at`` (the demo's day and night)."""
    return lambda: at


async def _booking_call(app: Any, pbx: Any) -> Scenario | None:
    """A patient books a checkup on the keypad: the self-service flow end to end."""
    from pbx_router.calls import booking_prompts as p
    from pbx_router.scheduling.data import import_clinic_data, load_clinic_file

    if app.brain is None or app.brain.booking is None:
        return None
    app.brain.clock = lambda: TUESDAY_MORNING
    store = await app.get_store()
    clinic = await asyncio.to_thread(load_clinic_file, ROOT / "examples" / "clinic-data.yaml")
    await import_clinic_data(store.pool, clinic)
    # Sofia is patient MRN00004 in examples/clinic-patients.csv (date of birth 02/03/2004).
    s = Scenario("Presses 1, types her date of birth, picks the 2nd time", "+15552220104", {"dtmf": [(0.5, "1")]})
    s.call = call = await pbx.place_call(caller_number=s.number, dialled="100", **s.kwargs)

    async def prompt_started(name: str) -> None:
        uri = p.sound(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not any(pb.media_uri == uri for pb in call.playbacks):
            if call.fate != "in_stasis" or loop.time() > deadline:
                raise TimeoutError(name)
            await asyncio.sleep(0.05)

    async def press(keys: str) -> None:
        for key in keys:  # keypad speed: real presses are 100 ms or more apart
            await call.send_dtmf(key)
            await asyncio.sleep(0.15)

    try:
        await prompt_started(p.ENTER_DOB)
        await press("02032004")
        await prompt_started(p.OFFER_INTRO)
        await press("2")
        await prompt_started(p.YOU_CHOSE)
        await press("1")
        await call.wait_for(lambda c: c.fate != "in_stasis", timeout=60)
        rows = await store.pool.fetch(
            "SELECT a.id, lower(a.during) AS start, p.name AS provider, t.name AS type FROM appointments a"
            " JOIN providers p ON p.id = a.provider_id JOIN appointment_types t ON t.id = a.type_id"
            " WHERE a.status = 'booked'")
        for r in rows:
            when = r["start"].astimezone(TUESDAY_MORNING.tzinfo).strftime("%a %b %d %H:%M")
            s.notes.append(f"booked in PostgreSQL: {r['type']} with {r['provider']} on {when} (clinic time)")
    except (TimeoutError, OSError) as exc:
        s.notes.append(f"(the booking did not finish: {exc})")
    return s


async def _follow(pbx: Any, call: Any) -> None:
    """Wait for the call's end, noting which staff phone it was bridged to on the way."""
    await call.wait_for(lambda c: c.fate not in ("in_stasis",), timeout=60)
    if call.fate == "bridged":
        for n in (1, 2, 3):
            if any(leg.channel_id in call.bridged_with for leg in pbx.endpoint(f"PJSIP/agent{n}").channels):
                call.demo_agent = f"PJSIP/agent{n}"
    await call.wait_for(lambda c: c.fate not in ("in_stasis", "bridged"), timeout=60)


async def _report(scenarios: list[Scenario], cfg: Any, data_dir: Path) -> None:
    from pbx_router.store import Store

    store = await Store.open(cfg.database.url, data_dir)
    try:
        rows = {r.channel_id: r for r in await store.calls.list(limit=100)}
    finally:
        await store.close()
    for s in scenarios:
        clock = s.clock.strftime("%a %H:%M")
        print(f"* {s.title}  [{s.number}, clinic time {clock}]")
        for note in s.notes:
            print(f"    {note}")
        r = rows.get(s.call.channel_id)
        if r is not None:
            route = r.route or {}
            heard = r.transcript or "(nothing)"
            print(f"    heard: {heard!r}   intent: {r.intent or '-'}   rule: {route.get('rule', '-')}")
            if route.get("reason"):
                print(f"    why:   {route['reason']}")
        played = [p.media_uri for p in s.call.playbacks if not p.media_uri.startswith("tone:")]
        print(f"    heard from us: {', '.join(played) or 'nothing'}")
        outcome = f"   (record: {r.outcome})" if r is not None else "   (no record: never reached pbx-router)"
        print(f"    ended: {_where(s.call)}{outcome}\n")
    print(f"{len(rows)} call records read back from PostgreSQL.")


async def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            print("timed out waiting for the daemon", file=sys.stderr)
            raise TimeoutError
        await asyncio.sleep(0.05)
