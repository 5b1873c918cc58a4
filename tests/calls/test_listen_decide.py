"""greet -> listen -> decide -> act, end to end: the emulator streams a caller's recorded words
over real RTP at real-time pace into the daemon, a real recogniser transcribes them, the clinic's
rules decide, and the caller ends up where the rules say."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pbx_router.testing import AgentBehaviour, AsteriskEmulator

from helpers import eventually

ROOT = Path(__file__).parents[2]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
RULES = ROOT / "examples" / "clinic.yaml"
NY = dt.timezone(dt.timedelta(hours=-5))
OPEN = dt.datetime(2026, 12, 1, 10, 0, tzinfo=NY)  # a Tuesday morning
NIGHT = dt.datetime(2026, 12, 1, 22, 0, tzinfo=NY)

DaemonFactory = Any

LISTENING = f"""rules: {RULES}
speech: {{workers: 1, expected_sessions: 2, no_input_ms: 2500}}
media: {{rtp_port_min: 41000, rtp_port_max: 41099}}
"""


@pytest.fixture
def clinic_pbx(pbx: AsteriskEmulator) -> AsteriskEmulator:
    pbx.sounds["hello-world"] = 2.5
    for ctx in ("router-queue", "clinic-voicemail", "clinic-after-hours"):
        pbx.add_context(ctx)
    # The clinic's staff phones (examples/clinic.yaml agents): everybody picks up quickly.
    for n in (1, 2, 3):
        pbx.add_endpoint(f"PJSIP/agent{n}", AgentBehaviour.answer_after(0.3))
    return pbx


def agent_of(pbx: AsteriskEmulator, call: Any) -> str | None:
    """The staff endpoint the caller is talking to, if any."""
    for n in (1, 2, 3):
        ep = f"PJSIP/agent{n}"
        if any(leg.channel_id in call.bridged_with for leg in pbx.endpoint(ep).channels):
            return ep
    return None


async def served_by(pbx: AsteriskEmulator, call: Any, db_url: str | None = None, timeout: float = 30) -> tuple[str, Any]:
    await call.wait_for(lambda c: c.fate == "bridged", timeout=timeout)
    agent = agent_of(pbx, call)
    assert agent is not None
    await call.hangup()
    row = None
    if db_url is not None:
        row = await eventually(lambda: record_of(db_url, call.channel_id), timeout=10, what="call record")
    return agent, row


async def start_clinic_daemon(start_daemon: DaemonFactory, at: dt.datetime) -> Any:
    daemon = await start_daemon(LISTENING)
    daemon.app.brain.clock = lambda: at
    return daemon


async def record_of(db_url: str, channel_id: str) -> Any:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetchrow("SELECT * FROM calls WHERE channel_id = $1 AND ended_at IS NOT NULL", channel_id)
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


async def test_refill_request_in_open_hours_goes_to_the_pharmacy(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    daemon = await start_clinic_daemon(start_daemon, OPEN)
    call = await clinic_pbx.place_call(caller_number="+15554000001", dialled="100", audio=AUDIO / "refill_01.wav",
                                       audio_at=0.5)
    # The pharmacy queue is staffed by agent2 (examples/clinic.yaml): the caller is bridged there.
    agent, row = await served_by(clinic_pbx, call, database_url)
    assert agent == "PJSIP/agent2"
    assert row["intent"] == "prescription_refill"
    assert "refill" in row["transcript"] and "prescription" in row["transcript"]
    assert row["outcome"] == "queue:pharmacy:answered"
    # The caller spoke while the greeting played: the greeting was cut short (barge-in).
    greeting = call.playbacks[0]
    assert greeting.media_uri == "sound:hello-world"
    assert greeting.stopped_at - greeting.started_at < 2.4
    # Listening resources were all given back.
    await eventually(lambda: not any(c.startswith("pbxr-") for c in clinic_pbx.channels), what="legs released")
    assert daemon.app.brain.ports.in_use == 0
    # The greeting was stopped once (issue 11, D5: a second DELETE after the barge-in was a 404).
    assert refused_deletes(clinic_pbx) == []


async def test_caller_is_heard_when_the_listening_legs_enter_stasis_after_the_reply(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    """Issue 11, D2: Asterisk starts Stasis for the snoop and externalMedia legs on threads of its
    own, and now and then after answering the request; an addChannel sent at once then gets 422
    "Channel not in Stasis application". That call used to go deaf for its whole length (only
    no-input turns). The caller must still be heard and routed by what they said."""
    clinic_pbx.stasis_lag_s = 0.08
    await start_clinic_daemon(start_daemon, OPEN)
    call = await clinic_pbx.place_call(caller_number="+15554000009", dialled="100", audio=AUDIO / "refill_01.wav",
                                       audio_at=0.5)
    agent, row = await served_by(clinic_pbx, call, database_url)
    assert agent == "PJSIP/agent2"
    assert row["intent"] == "prescription_refill"
    # The emulator did answer 422 to the early addChannel (so this test exercises the race).
    early = [r for r in clinic_pbx.requests if r.path.endswith("/addChannel") and r.status == 422]
    assert early, "no addChannel met a channel outside Stasis: the lag did not bite"


async def test_listening_that_failed_to_start_is_tried_again_on_the_next_turn(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    """Asterisk refused the first externalMedia request: the caller, who stays silent through the
    greeting, is asked again with ears that work this time, and their answer routes the call."""
    clinic_pbx.sounds["hello-world"] = 0.5
    clinic_pbx.fail_requests("POST", "/ari/channels/externalMedia", times=1)
    daemon = await start_clinic_daemon(start_daemon, OPEN)
    # Greeting 0.5 s, then 2.5 s of no input: the reprompt turn starts about 3 s in.
    call = await clinic_pbx.place_call(caller_number="+15554000010", dialled="100", audio=AUDIO / "refill_01.wav",
                                       audio_at=4.5)
    agent, row = await served_by(clinic_pbx, call, database_url)
    assert agent == "PJSIP/agent2"
    assert row["intent"] == "prescription_refill"
    externals = [r for r in clinic_pbx.requests if r.path.endswith("/channels/externalMedia")]
    assert [r.status for r in externals] == [500, 200]
    assert daemon.app.brain.ports.in_use == 0


async def test_refill_request_at_night_takes_the_after_hours_path(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    await start_clinic_daemon(start_daemon, NIGHT)
    call = await clinic_pbx.place_call(caller_number="+15554000002", dialled="100", audio=AUDIO / "refill_01.wav",
                                       audio_at=0.5)
    await call.wait_for(lambda c: c.fate == "continued", timeout=30)
    # After hours a refill request is a message for the pharmacy's voicemail, after an explanation.
    assert call.continued_to == ("clinic-voicemail", "pharmacy", 1)
    assert "sound:custom/clinic-refill-after-hours" in [p.media_uri for p in call.playbacks]


async def test_emergency_goes_to_a_person_with_the_911_instruction(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    clinic_pbx.add_endpoint("PJSIP/agent3", AgentBehaviour.answer_after(0.3))
    await start_clinic_daemon(start_daemon, NIGHT)
    call = await clinic_pbx.place_call(caller_number="+15554000003", dialled="100",
                                       audio=AUDIO / "emergency_01.wav", audio_at=0.5)
    await call.wait_for(lambda c: c.fate == "bridged", timeout=30)
    media = [p.media_uri for p in call.playbacks]
    assert "sound:custom/clinic-emergency-911" in media
    assert any(leg.alive for leg in clinic_pbx.endpoint("PJSIP/agent3").channels)
    await call.hangup()


async def test_keypad_answers_at_any_moment(clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory) -> None:
    await start_clinic_daemon(start_daemon, OPEN)
    # "2" is the refill digit in clinic.yaml; pressed during the greeting.
    call = await clinic_pbx.place_call(caller_number="+15554000004", dialled="100", dtmf=[(0.8, "2")])
    agent, _ = await served_by(clinic_pbx, call)
    assert agent == "PJSIP/agent2"  # the pharmacy line
    assert refused_deletes(clinic_pbx) == []


def refused_deletes(pbx: AsteriskEmulator) -> list[str]:
    """DELETEs the emulator (as Asterisk) refused: requests that failed for nothing."""
    return [r.path for r in pbx.requests if r.method == "DELETE" and r.status == 404]


async def test_silence_is_asked_again_then_offered_the_keypad_then_a_person(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    clinic_pbx.sounds["hello-world"] = 0.5
    await start_clinic_daemon(start_daemon, OPEN)
    call = await clinic_pbx.place_call(caller_number="+15554000005", dialled="100")
    await call.wait_for(lambda c: c.fate == "bridged", timeout=40)
    assert agent_of(clinic_pbx, call) in ("PJSIP/agent1", "PJSIP/agent2")  # the front desk
    await call.hangup()
    media = [p.media_uri for p in call.playbacks]
    assert media[:3] == ["sound:hello-world", "sound:custom/clinic-sorry-say-again", "sound:custom/clinic-keypad-menu"]
    row = await eventually(lambda: record_of(database_url, call.channel_id), timeout=10, what="call record")
    import json

    turns = json.loads(row["extra"])["turns"] if isinstance(row["extra"], str) else row["extra"]["turns"]
    assert [t["source"] for t in turns] == ["no_input", "no_input", "no_input"]
    assert [t["action"] for t in turns] == ["reprompt", "keypad", "queue"]


async def test_hangup_mid_utterance_releases_everything(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    daemon = await start_clinic_daemon(start_daemon, OPEN)
    call = await clinic_pbx.place_call(caller_number="+15554000006", dialled="100", audio=AUDIO / "appt_new_02.wav",
                                       audio_at=0.2, hangup_after=1.5)
    row = await eventually(lambda: record_of(database_url, call.channel_id), timeout=15, what="call record")
    assert row["outcome"] == "abandoned"
    await eventually(lambda: not daemon.supervisor.calls and daemon.app.brain.ports.in_use == 0,
                     what="call and port released")
    await eventually(lambda: not any(c.startswith("pbxr-") for c in clinic_pbx.channels), what="legs hung up")


async def test_rtp_garbage_is_dropped_and_the_call_continues(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    import os
    import socket

    daemon = await start_clinic_daemon(start_daemon, OPEN)
    call = await clinic_pbx.place_call(caller_number="+15554000007", dialled="100", audio=AUDIO / "billing_01.wav",
                                       audio_at=1.0)
    conv = await eventually(lambda: _listener(daemon, call.channel_id), what="listening")
    port = conv.endpoint.local_address[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(300):  # a stranger's flood: random bytes, truncated headers, oversized packets
            payload = [os.urandom(40), b"\x80", os.urandom(3000), b"\x80\x00" + os.urandom(10)][i % 4]
            sock.sendto(payload, ("127.0.0.1", port))
    finally:
        sock.close()
    agent, _ = await served_by(clinic_pbx, call)
    assert agent == "PJSIP/agent1"  # billing is staffed by reception 1


def _listener(daemon: Any, channel_id: str) -> Any:
    flow = daemon.supervisor.flows.get(channel_id)
    listener = getattr(getattr(flow, "conversation", None), "listener", None)
    return listener if listener is not None and listener.endpoint is not None else None


async def test_staff_override_takes_effect_for_the_next_call(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    import aiohttp

    daemon = await start_daemon(LISTENING + "admin: {port: 0, token: listen-test-admin-token-0123}\n")
    daemon.app.brain.clock = lambda: dt.datetime.now(dt.UTC)
    url = daemon.app.admin_url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/overrides") as resp:
            assert resp.status == 401  # no token, no service
        headers = {"Authorization": "Bearer listen-test-admin-token-0123"}
        body = {"kind": "redirect_intent", "scope": "prescription_refill", "target": "frontdesk",
                "author": "Dana (front desk)", "reason": "pharmacist out sick", "ttl_minutes": 60}
        async with http.post(f"{url}/api/overrides", json=body, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
        # The very next call: "2" is the refill key, and refills now go to the front desk.
        call = await clinic_pbx.place_call(caller_number="+15554000008", dialled="100", dtmf=[(0.5, "2")])
        await call.wait_for(lambda c: c.fate == "bridged", timeout=20)
        # The outcome is written once the bridge request returns, a moment after Asterisk bridges.
        await eventually(lambda: daemon.supervisor.calls[call.channel_id].summary.outcome == "queue:frontdesk:answered",
                         what="answered at the front desk")
        await call.hangup()
        async with http.get(f"{url}/api/status", headers=headers) as resp:
            status = await resp.json()
        assert status["ready"] is True and status["overrides_active"] == 1


async def test_rules_reload_swaps_atomically_and_rejects_a_broken_file(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "clinic.yaml"
    original = RULES.read_text()
    rules.write_text(original)
    daemon = await start_daemon(LISTENING.replace(str(RULES), str(rules)))
    daemon.app.brain.clock = lambda: OPEN
    # The admin changes billing (digit 5) to go to the front desk, and reloads (as SIGHUP does).
    rules.write_text(original.replace("then: {target: billing}", "then: {target: frontdesk}"))
    status = await daemon.app.reload_rules()
    assert status["ok"] is True
    call = await clinic_pbx.place_call(caller_number="+15554000009", dialled="100", dtmf=[(0.5, "5")])
    await call.wait_for(lambda c: c.fate == "bridged", timeout=20)
    # The daemon records the outcome once Asterisk has answered the addChannel that bridged them.
    await eventually(lambda: daemon.supervisor.calls[call.channel_id].summary.outcome == "queue:frontdesk:answered",
                     what="outcome recorded")
    await call.hangup()
    # A typo: rejected with its errors, the previous rules stay in force.
    rules.write_text(original.replace("rules:\n", "rules:\n  - name: broken\n    then: {target: nowhere}\n", 1))
    status = await daemon.app.reload_rules()
    assert status["ok"] is False and any("nowhere" in e for e in status["errors"])
    call = await clinic_pbx.place_call(caller_number="+15554000010", dialled="100", dtmf=[(0.5, "5")])
    await call.wait_for(lambda c: c.fate == "bridged", timeout=20)
    # The daemon records the outcome once Asterisk has answered the addChannel that bridged them.
    await eventually(lambda: daemon.supervisor.calls[call.channel_id].summary.outcome == "queue:frontdesk:answered",
                     what="outcome recorded")
    await call.hangup()


async def test_after_hours_callback_request_is_recorded_for_staff(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    import aiohttp

    clinic_pbx.sounds["custom/clinic-next-day-callback"] = 0.5
    daemon = await start_daemon(LISTENING + "admin: {port: 0, token: listen-test-admin-token-0123}\n")
    daemon.app.brain.clock = lambda: NIGHT
    # "4" is test results: after hours the rules take a callback request for the records team.
    call = await clinic_pbx.place_call(caller_number="+15554000011", dialled="100", dtmf=[(0.5, "4")])
    await call.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=20)
    media = [p.media_uri for p in call.playbacks]
    assert "sound:custom/clinic-next-day-callback" in media
    headers = {"Authorization": "Bearer listen-test-admin-token-0123"}
    async with aiohttp.ClientSession() as http:

        async def callbacks() -> list[dict[str, Any]]:
            async with http.get(f"{daemon.app.admin_url}/api/callbacks", headers=headers) as resp:
                assert resp.status == 200
                return list((await resp.json())["callbacks"])

        found = await eventually(callbacks, timeout=10, what="callback request listed")
    assert found[0]["number"] == "+15554000011"
    assert found[0]["queue"] == "records" and found[0]["intent"] == "test_results"
    # The front desk's view of the same list, from the CLI (a blocking client: off the loop).
    import contextlib
    import io

    from pbx_router.cli import main

    out = io.StringIO()

    def run_cli() -> int:
        with contextlib.redirect_stdout(out):
            return main(["callbacks", "--url", daemon.app.admin_url, "--token", "listen-test-admin-token-0123"])

    assert await asyncio.to_thread(run_cli) == 0
    assert "+15554000011" in out.getvalue() and "records" in out.getvalue()


async def test_recogniser_crash_mid_utterance_falls_back_to_the_keypad(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    import os
    import signal

    clinic_pbx.sounds["custom/clinic-keypad-menu"] = 1.0
    daemon = await start_clinic_daemon(start_daemon, OPEN)
    pool = daemon.app.brain.speech
    call = await clinic_pbx.place_call(caller_number="+15554000012", dialled="100",
                                       audio=AUDIO / "appt_new_02.wav", audio_at=0.3)

    def speaking() -> bool:
        listener = _listener(daemon, call.channel_id)
        return listener is not None and listener.endpointer.in_speech

    await eventually(speaking, timeout=10, what="caller speaking")
    for pid in pool.worker_pids:
        os.kill(pid, signal.SIGKILL)
    # The utterance is lost with the worker: the caller is offered the keypad, then a person.
    await call.wait_for(lambda c: c.fate == "bridged", timeout=40)
    assert "sound:custom/clinic-keypad-menu" in [p.media_uri for p in call.playbacks]
    await eventually(lambda: pool.stats.restarts >= 1, what="worker replaced")
    await call.hangup()


@pytest.mark.parametrize("wire_format", ["ulaw", "alaw"])
async def test_g711_externalmedia_formats_are_heard_too(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, wire_format: str
) -> None:
    daemon = await start_daemon(LISTENING.replace("media: {", f"media: {{format: {wire_format}, "))
    daemon.app.brain.clock = lambda: OPEN
    call = await clinic_pbx.place_call(caller_number="+15554000013", dialled="100", audio=AUDIO / "billing_01.wav",
                                       audio_at=0.5)
    agent, _ = await served_by(clinic_pbx, call)
    assert agent == "PJSIP/agent1"  # billing
    assert any(r.path.endswith("/externalMedia") and r.query.get("format") == wire_format
               for r in clinic_pbx.requests)


async def test_emergency_described_without_a_keyword_reaches_a_person(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    """'collapsed ... will not wake up' is in no keyword list of the clinic: the built-in screen
    hears the red flag, the caller gets the 911 instruction and a person, the record says why."""
    await start_clinic_daemon(start_daemon, NIGHT)
    call = await clinic_pbx.place_call(caller_number="+15554000021", dialled="100",
                                       audio=AUDIO / "emergency_collapsed_01.wav", audio_at=0.5)
    agent, row = await served_by(clinic_pbx, call, database_url)
    assert agent == "PJSIP/agent3"  # the on-call doctor (settings.emergency / rule emergency-after-hours)
    assert "sound:custom/clinic-emergency-911" in [p.media_uri for p in call.playbacks]
    assert row["intent"] == "emergency"
    turn = json.loads(row["extra"])["turns"][-1]
    assert [f["flag"] for f in turn["red_flags"]] == ["unresponsive"]


async def test_denied_chest_pain_with_a_refill_never_takes_the_emergency_path(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    """The caller the old matcher sent down the emergency path: 'no chest pain ... refilled'. The
    denial is recorded and there is no red flag, whatever the recogniser makes of the rest (on
    this voice Moonshine hears "my heart filled resealed": not understood, so the caller is asked
    again and, silent after that, reaches the front desk; PocketSphinx heard the refill)."""
    await start_clinic_daemon(start_daemon, OPEN)
    call = await clinic_pbx.place_call(caller_number="+15554000022", dialled="100",
                                       audio=AUDIO / "refill_denied_01.wav", audio_at=0.5)
    agent, row = await served_by(clinic_pbx, call, database_url, timeout=40)
    assert agent in ("PJSIP/agent1", "PJSIP/agent2")  # the front desk or the pharmacy, a person
    assert row["intent"] != "emergency"
    first = json.loads(row["extra"])["turns"][0]
    assert not first.get("red_flags")
    assert any("chest" in words for words in first["denied"])
    assert "sound:custom/clinic-emergency-911" not in [p.media_uri for p in call.playbacks]


def _spoken_span(name: str) -> bytes:
    """A fixture's speech without its leading and trailing silence (8 kHz PCM16)."""
    import numpy as np

    from pbx_router.media.codecs import read_wav

    pcm, rate = read_wav(AUDIO / name)
    assert rate == 8000
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    frames = [float(np.sqrt(np.mean(x[i:i + 160] ** 2))) for i in range(0, len(x) - 159, 160)]
    loud = [i for i, r in enumerate(frames) if r > 200]
    return pcm[loud[0] * 320: (loud[-1] + 1) * 320]


async def test_a_caller_who_pauses_mid_sentence_is_heard_whole(
    clinic_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str
) -> None:
    """Recognition starts early, at a pause, so the transcript is ready when the end of speech
    is confirmed (issue 11's latency). A caller who pauses and goes on must not be cut at the
    pause: the whole sentence is one utterance, heard and decided once."""
    from pbx_router.media.vad import Endpointer, EndpointerConfig, SpeechEnded, SpeechPaused

    pause = bytes(2 * 8000 * 400 // 1000)  # 0.4 s: past early_final_ms, short of end_silence_ms
    audio = _spoken_span("refill_01.wav") + pause + _spoken_span("billing_01.wav") + bytes(2 * 8000 * 1500 // 1000)
    # The premise, checked on the daemon's own endpointer settings: a pause, then the end.
    marks = [type(e) for e in Endpointer(EndpointerConfig(), 8000).feed(bytes(8000) + audio)
             if isinstance(e, (SpeechPaused, SpeechEnded))]
    assert marks == [SpeechPaused, SpeechPaused, SpeechEnded]
    await start_clinic_daemon(start_daemon, OPEN)
    call = await clinic_pbx.place_call(caller_number="+15554000011", dialled="100", audio=audio, audio_at=0.5)
    await call.wait_for(lambda c: c.fate == "bridged", timeout=30)
    await call.hangup()
    row = await eventually(lambda: record_of(database_url, call.channel_id), timeout=10, what="call record")
    assert "refill" in row["transcript"] and "bill" in row["transcript"], row["transcript"]
    assert "|" not in row["transcript"]  # one utterance, not two turns
    extra = json.loads(row["extra"]) if isinstance(row["extra"], str) else row["extra"]
    assert len(extra["turns"]) == 1
    assert extra["turns"][0]["recognition_wait_ms"] >= 0
