"""A daemon killed (SIGKILL) while a caller is talking to it: the next daemon adopts the caller,
listens to them with legs of its own, and routes them by what they say."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import asyncpg

from pbx_router.testing import AgentBehaviour, AsteriskEmulator
from pbx_router.testing.call import SimulatedCall

from helpers import eventually

ROOT = Path(__file__).parents[2]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
RULES = ROOT / "examples" / "clinic.yaml"


def write_listening_config(path: Path, pbx: AsteriskEmulator, data_dir: Path, db_url: str) -> Path:
    path.write_text(
        f"""
ari: {{url: "{pbx.base_url}", username: {pbx.username}, password: {pbx.password}, reconnect_min: 0.05, reconnect_max: 0.5}}
database: {{url: "{db_url}"}}
data_dir: "{data_dir}"
log: {{level: info, format: json}}
rules: "{RULES}"
calls:
  greeting: [sound:hello-world]
  fallback: {{context: pbx-router-fallback}}
speech: {{workers: 1, expected_sessions: 2, no_input_ms: 8000}}
media: {{rtp_port_min: 41300, rtp_port_max: 41399}}
shutdown: {{drain_timeout: 5}}
admin: {{enabled: false}}
"""
    )
    return path


async def spawn_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pbx_router", "run", "-c", str(config),
        stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def listening_legs(pbx: AsteriskEmulator, caller: SimulatedCall) -> set[str]:
    """Snoops on the caller whose audio someone receives (bridged with an externalMedia leg)."""
    legs = set()
    for chan in pbx.channels.values():
        if chan.kind != "snoop" or chan.snoop_of != caller.channel_id or chan.bridge_id is None:
            continue
        bridge = pbx.bridges.get(chan.bridge_id)
        members = [pbx.channels.get(c) for c in bridge.channels] if bridge is not None else []
        if any(m is not None and m.kind == "external_media" for m in members):
            legs.add(chan.id)
    return legs


async def record_of(db_url: str, channel_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetchrow(
            "SELECT * FROM calls WHERE channel_id = $1 AND ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT 1",
            channel_id)
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


async def test_daemon_killed_mid_utterance_the_adopted_caller_is_heard_and_routed_by_speech(
    pbx: AsteriskEmulator, database_url: str, tmp_path: Path
) -> None:
    for ctx in ("router-queue", "clinic-voicemail", "clinic-after-hours"):
        pbx.add_context(ctx)
    for n in (1, 2, 3):
        pbx.add_endpoint(f"PJSIP/agent{n}", AgentBehaviour.answer_after(0.3))
    cfg = write_listening_config(tmp_path / "cfg.yaml", pbx, tmp_path / "data", database_url)
    pbx.sounds["hello-world"] = 6.0
    first = await spawn_daemon(cfg, tmp_path / "daemon1.log")
    try:
        await pbx.wait_for_websocket(timeout=60)
        caller = await pbx.place_call(caller_number="+15556000001", dialled="100",
                                      audio=AUDIO / "appt_new_02.wav", audio_at=0.3)
        await eventually(lambda: listening_legs(pbx, caller), timeout=20, what="the first daemon listening")
        # Barge-in stops the greeting: the daemon has heard the caller start speaking.
        await caller.wait_for(lambda c: bool(c.playbacks) and c.playbacks[0].stopped_at is not None, timeout=20)
        old_legs = listening_legs(pbx, caller)
        old_ids = {cid for cid in pbx.channels if cid.startswith("pbxr-")} | {
            bid for bid in pbx.bridges if bid.startswith("pbxr-")}
    finally:
        first.send_signal(signal.SIGKILL)  # mid-utterance: "... a new appointment with the doctor"
        await first.wait()
    await eventually(lambda: not pbx.ws_connected, what="websocket closed by the crash")
    assert caller.fate == "in_stasis" and old_legs

    second = await spawn_daemon(cfg, tmp_path / "daemon2.log")
    try:
        # The new daemon listens with legs of its own, and hangs up the dead one's.
        await eventually(lambda: listening_legs(pbx, caller) - old_legs, timeout=60,
                         what="the adopted caller listened to by the new daemon")
        await eventually(lambda: not old_ids & (set(pbx.channels) | set(pbx.bridges)), timeout=10,
                         what="the dead daemon's snoop, externalMedia leg and bridge released")
        played_before = len(caller.playbacks)
        # Heard nothing back, the caller says what they need again, and is understood.
        await caller.say(AUDIO / "emergency_01.wav", after=0.2)
        await caller.wait_for(lambda c: c.fate == "bridged", timeout=40)
        media = [p.media_uri for p in caller.playbacks[played_before:]]
        assert "sound:custom/clinic-emergency-911" in media
        assert "sound:custom/clinic-keypad-menu" not in media and "sound:custom/clinic-sorry-say-again" not in media
        await caller.hangup()
        row = await eventually(lambda: record_of(database_url, caller.channel_id), timeout=15, what="call record")
        assert row["intent"] == "emergency"
        assert "pain" in row["transcript"]  # heard by the new daemon's own recogniser
        extra = json.loads(row["extra"]) if isinstance(row["extra"], str) else row["extra"]
        assert [t["source"] for t in extra["turns"]] == ["speech"]
        assert [f["flag"] for f in extra["turns"][0]["red_flags"]] == ["chest"]
        await eventually(lambda: not any(c.startswith("pbxr-") for c in pbx.channels)
                         and not any(b.startswith("pbxr-") for b in pbx.bridges), what="every leg released")
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    assert "Traceback" not in (tmp_path / "daemon2.log").read_text()
