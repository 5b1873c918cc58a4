"""An emergency or crisis caller always ends with a person, wherever they are in the flow.

The example clinic sends emergencies in open hours to the nurse queue, whose overflow is a
callback request (goodbye, then hang up): right for a routine question, never for chest pain.
Through the daemon as wired (``app.py``) and the emulator: when every nurse is logged out, when
staff close the queue, or after its maximum wait, the emergency caller moves along
``settings.emergency.chain`` (on-call doctor, on-call nurse, front desk) and at its end to the
dialplan fallback; a routine caller still gets the callback. A fallback that fails is retried,
then the caller is hung up and counted instead of being left in silence.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pbx_router.queues import Override
from pbx_router.testing import AgentBehaviour, AsteriskEmulator, SimulatedCall

from helpers import eventually

ROOT = Path(__file__).parents[2]
CLINIC = ROOT / "examples" / "clinic.yaml"
AUDIO = ROOT / "tests" / "fixtures" / "audio"
NY = dt.timezone(dt.timedelta(hours=-5))
OPEN = dt.datetime(2026, 12, 1, 10, 0, tzinfo=NY)  # a Tuesday morning: emergencies go to the nurse queue
NURSES = ("PJSIP/agent2", "PJSIP/agent3")
TOKEN = "emergency-chain-test-token-4f9a1c"
DaemonFactory = Any


def clinic_copy(tmp_path: Path, *, nurse_max_wait: float | None = None) -> Path:
    """The example clinic, plus a keypad key for emergencies ("*": the clinic has none, and a key
    makes these tests fast and deterministic). Nothing else changes unless asked."""
    text = CLINIC.read_text()
    marker = "    description: Life-threatening symptoms. Never self-service.\n    urgency: emergency\n"
    assert marker in text
    text = text.replace(marker, marker + "    digit: '*'\n")
    if nurse_max_wait is not None:
        marker = "    ring_timeout_s: 20\n    wrapup_s: 30\n    max_wait_s: 600\n"
        assert marker in text
        text = text.replace(marker, f"    ring_timeout_s: 20\n    wrapup_s: 30\n    max_wait_s: {nurse_max_wait}\n")
    path = tmp_path / "clinic.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def clinic_pbx(pbx: AsteriskEmulator) -> AsteriskEmulator:
    pbx.sounds["hello-world"] = 0.3
    for ctx in ("router-queue", "clinic-voicemail", "clinic-after-hours"):
        pbx.add_context(ctx)
    return pbx


def phones(pbx: AsteriskEmulator, **behaviours: AgentBehaviour) -> None:
    """The clinic's three staff phones (agent1 reception, agent2 and agent3 nurses/on-call)."""
    for n in (1, 2, 3):
        pbx.add_endpoint(f"PJSIP/agent{n}", behaviours.get(f"agent{n}", AgentBehaviour.answer_after(0.2)))


async def start(start_daemon: DaemonFactory, rules: Path, extra: str = "speech: {enabled: false}\n") -> Any:
    daemon = await start_daemon(f"rules: {rules}\n{extra}")
    daemon.app.brain.clock = lambda: OPEN
    await eventually(lambda: daemon.app.brain.queue_service is not None, what="queues ready")
    return daemon


def log_out(daemon: Any, *agents: str) -> None:
    for agent in agents:
        assert daemon.app.brain.queue_service.set_presence(agent, "logged_out")


def talking_to(pbx: AsteriskEmulator, call: SimulatedCall) -> str | None:
    """The staff phone the caller is in a conversation with (not a holding bridge), if any."""
    chan = pbx.channels.get(call.channel_id)
    bridge = pbx.bridges.get(chan.bridge_id) if chan is not None and chan.bridge_id else None
    if bridge is None or bridge.bridge_type == "holding":
        return None
    for peer in call.bridged_with:
        leg = pbx.channels.get(peer)
        if leg is not None and leg.endpoint:
            return str(leg.endpoint)
    return None


async def record(db_url: str, call: SimulatedCall) -> Any:
    async def ended() -> Any:
        conn = await asyncpg.connect(db_url)
        try:
            return await conn.fetchrow("SELECT * FROM calls WHERE channel_id = $1 AND ended_at IS NOT NULL",
                                       call.channel_id)
        except asyncpg.UndefinedTableError:
            return None
        finally:
            await conn.close()

    row = await eventually(ended, timeout=15, what="call record")
    extra = row["extra"]
    return row, (json.loads(extra) if isinstance(extra, str) else extra)


def heard(call: SimulatedCall) -> list[str]:
    return [p.media_uri for p in call.playbacks]


async def test_emergency_with_every_nurse_logged_out_reaches_the_on_call_doctor_not_a_callback(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    # Spoken, through the real recogniser: "I have chest pain", in open hours.
    phones(clinic_pbx)
    daemon = await start(start_daemon, CLINIC, "speech: {workers: 1, expected_sessions: 2, no_input_ms: 2500}\n"
                         "media: {rtp_port_min: 41100, rtp_port_max: 41199}\n")
    log_out(daemon, *NURSES)
    call = await clinic_pbx.place_call(caller_number="+15554100001", dialled="100",
                                       audio=AUDIO / "emergency_01.wav", audio_at=0.5)
    agent = await eventually(lambda: talking_to(clinic_pbx, call), timeout=40, what="emergency caller with a person")
    assert agent == "PJSIP/agent3"  # oncall_doctor, the first of the chain
    assert "sound:custom/clinic-emergency-911" in heard(call)
    await call.hangup()
    row, extra = await record(database_url, call)
    assert row["intent"] == "emergency"
    assert row["outcome"] == "bridged:PJSIP/agent3"
    assert extra["emergency_chain"] == [{"from": "nurse", "why": "queue:nurse:overflow:no_agents",
                                         "to": "oncall_doctor"}]
    assert "callback_request" not in extra and "sound:vm-goodbye" not in heard(call)


async def test_routine_caller_in_the_same_empty_nurse_queue_still_gets_the_callback(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    phones(clinic_pbx)
    daemon = await start(start_daemon, CLINIC)
    log_out(daemon, *NURSES)
    call = await clinic_pbx.place_call(caller_number="+15554100002", dialled="100", dtmf=[(0.3, "3")])  # nurse
    await call.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=20)
    assert "sound:vm-goodbye" in heard(call)
    row, extra = await record(database_url, call)
    assert row["outcome"] == "callback:nurse"
    assert extra["callback_request"]["queue"] == "nurse" and "emergency_chain" not in extra


async def test_emergency_in_a_queue_closed_by_staff_is_passed_along_the_chain_to_the_front_desk(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str, tmp_path: Path
) -> None:
    # The on-call phones are busy: the chain goes on to the front desk queue, where reception answers.
    phones(clinic_pbx, agent2=AgentBehaviour.busy(), agent3=AgentBehaviour.busy())
    daemon = await start(start_daemon, clinic_copy(tmp_path))
    now = dt.datetime.now(dt.UTC)
    await daemon.app.admin.add_override(
        Override("close_queue", "nurse", "Dana (front desk)", "nurses in a meeting", now, now + dt.timedelta(hours=1)))
    call = await clinic_pbx.place_call(caller_number="+15554100003", dialled="100", dtmf=[(0.3, "*")])
    agent = await eventually(lambda: talking_to(clinic_pbx, call), timeout=30, what="emergency caller with a person")
    assert agent == "PJSIP/agent1"
    await call.hangup()
    row, extra = await record(database_url, call)
    assert row["outcome"] == "queue:frontdesk:answered"
    assert [(s["from"], s["to"]) for s in extra["emergency_chain"]] == [
        ("nurse", "oncall_doctor"), ("oncall_doctor", "oncall_nurse"), ("oncall_nurse", "frontdesk")]
    assert extra["emergency_chain"][0]["why"] == "queue:nurse:overflow:closed"
    assert "sound:vm-goodbye" not in heard(call)


async def test_emergency_past_the_nurse_queues_maximum_wait_goes_to_the_on_call_doctor(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str, tmp_path: Path
) -> None:
    # The nurses are logged in but slow to pick up: the queue's maximum wait comes first.
    slow = AgentBehaviour.answer_after(3.0)
    phones(clinic_pbx, agent2=slow, agent3=slow)
    await start(start_daemon, clinic_copy(tmp_path, nurse_max_wait=1.0))
    call = await clinic_pbx.place_call(caller_number="+15554100004", dialled="100", dtmf=[(0.3, "*")])
    agent = await eventually(lambda: talking_to(clinic_pbx, call), timeout=30, what="emergency caller with a person")
    assert agent == "PJSIP/agent3"  # oncall_doctor
    await call.hangup()
    row, extra = await record(database_url, call)
    assert extra["emergency_chain"] == [
        {"from": "nurse", "why": "queue:nurse:overflow:max_wait", "to": "oncall_doctor"}]
    assert row["outcome"] == "bridged:PJSIP/agent3" and "callback_request" not in extra


async def test_at_the_end_of_the_chain_a_fallback_that_fails_is_retried_then_works(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str, tmp_path: Path
) -> None:
    phones(clinic_pbx, agent1=AgentBehaviour.busy(), agent2=AgentBehaviour.busy(), agent3=AgentBehaviour.busy())
    daemon = await start(start_daemon, clinic_copy(tmp_path))
    log_out(daemon, *NURSES, "PJSIP/agent1")
    fault = clinic_pbx.fail_requests("POST", "/ari/channels/*/continue", times=2)
    call = await clinic_pbx.place_call(caller_number="+15554100005", dialled="100", dtmf=[(0.3, "*")])
    await call.wait_for(lambda c: c.fate == "continued", timeout=30)
    assert call.continued_to == ("pbx-router-fallback", "s", 1)
    assert fault.hits == 2
    assert daemon.supervisor.stats.fallback_retries == 2 and daemon.supervisor.stats.fallback_gave_up == 0
    # Nobody anywhere: every human of the chain was tried (the front desk too, where nobody was
    # logged in, so the emergency caller did not wait there), then the fallback.
    row, extra = await record(database_url, call)
    steps = [(s["from"], s["why"], s["to"]) for s in extra["emergency_chain"]]
    assert steps == [
        ("nurse", "queue:nurse:overflow:no_agents", "oncall_doctor"),
        ("oncall_doctor", "no_answer", "oncall_nurse"),
        ("oncall_nurse", "no_answer", "frontdesk"),
        ("frontdesk", "queue:frontdesk:overflow:no_agents", "fallback"),
    ]
    assert row["outcome"] == "queue:frontdesk:overflow:no_agents:dialplan:pbx-router-fallback"
    assert "sound:vm-goodbye" not in heard(call)


async def test_a_fallback_that_keeps_failing_hangs_up_the_caller_and_is_counted(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str, tmp_path: Path
) -> None:
    import aiohttp

    phones(clinic_pbx, agent1=AgentBehaviour.busy(), agent2=AgentBehaviour.busy(), agent3=AgentBehaviour.busy())
    admin = f"speech: {{enabled: false}}\nadmin: {{port: 0, token: {TOKEN}}}\n"
    daemon = await start(start_daemon, clinic_copy(tmp_path), admin)
    log_out(daemon, *NURSES, "PJSIP/agent1")
    fault = clinic_pbx.fail_requests("POST", "/ari/channels/*/continue")
    call = await clinic_pbx.place_call(caller_number="+15554100006", dialled="100", dtmf=[(0.3, "*")])
    # Not left in Stasis in silence: hung up once every attempt failed.
    await call.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=30)
    assert fault.hits == 4
    stats = daemon.supervisor.stats
    assert (stats.fallback_retries, stats.fallback_gave_up) == (4, 1)
    row, _ = await record(database_url, call)
    assert row["outcome"].startswith("fallback_failed:hung_up:")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.app.admin_url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            status = await resp.json()
    assert status["calls"]["fallback_gave_up"] == 1
