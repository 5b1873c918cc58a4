"""Callers on a real Asterisk 22, through the daemon as a real process: what a caller hears and
where they end up, seen from their SIP phone and the staff's phones."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import numpy as np

from pbx_router.testing.asterisk import RealAsterisk
from pbx_router.testing.audio import read_wav, resample
from pbx_router.testing.sip import SipAgent, SipCaller, similarity

from helpers import eventually
from real_pbx.conftest import AUDIO, EXPECTED_REFUSALS, ROOT, RealDaemon, app_registered, start_real_daemon


def clinic_prompt(name: str) -> np.ndarray:
    """One of the example clinic's prompts as 8 kHz samples (what a caller's phone would get)."""
    pcm, rate = read_wav(ROOT / "examples" / "sounds" / "en" / "custom" / f"{name}.wav")
    return resample(pcm, rate, 8000) if rate != 8000 else pcm


async def record_of(db_url: str, number_hint: str | None = None) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch("SELECT * FROM calls WHERE ended_at IS NOT NULL ORDER BY started_at"))
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await conn.close()


async def test_keypad_choice_during_the_greeting_reaches_the_pharmacy_phone(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    async with SipAgent(asterisk, "agent2", ring_s=0.3) as pharmacy:
        # "2" is the refill key in examples/clinic.yaml, pressed while the greeting plays.
        async with SipCaller(asterisk, "100", dtmf=[(0.8, "2")], hangup_after=20) as caller:
            await asyncio.wait_for(caller.answered.wait(), 15)
            await pharmacy.wait_for(lambda a: a.answered >= 1, timeout=20, what="the pharmacy phone answered")
            assert pharmacy.invites == 1
            # The caller hears the agent's side of the bridge: Asterisk relays RTP both ways once
            # the agent's phone is connected (the agent says nothing: Asterisk still sends frames
            # only if there is audio, so check the agent hears the caller instead).
            t = asyncio.get_running_loop().time()
            await eventually(lambda: any(r.at > t for r in pharmacy.rtp.received), timeout=5,
                             what="the caller's audio at the pharmacy phone")
            await caller.hang_up()
    rows = await eventually(lambda: record_of(database_url), timeout=15, what="the call record")
    assert rows[-1]["intent"] == "prescription_refill"
    assert rows[-1]["outcome"] == "queue:pharmacy:answered"


async def test_a_spoken_refill_request_reaches_the_pharmacy_phone(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    async with SipAgent(asterisk, "agent2", ring_s=0.3) as pharmacy:
        async with SipCaller(asterisk, "100", audio=AUDIO / "refill_01.wav", audio_at=0.6,
                             hangup_after=30) as caller:
            await asyncio.wait_for(caller.answered.wait(), 15)
            await pharmacy.wait_for(lambda a: a.answered >= 1, timeout=30, what="the pharmacy phone answered")
            await caller.hang_up()
    rows = await eventually(lambda: record_of(database_url), timeout=15, what="the call record")
    assert rows[-1]["intent"] == "prescription_refill"
    assert "refill" in (rows[-1]["transcript"] or "")


async def queued_with_music(asterisk: RealAsterisk, pharmacy: SipAgent, n: int) -> float:
    """Caller ``n`` presses the refill key, waits while the pharmacy phone rings, and is answered;
    the share of the wait (from shortly after the keypress to the answer) that had audio."""
    loop = asyncio.get_running_loop()
    async with SipCaller(asterisk, "100", dtmf=[(0.5, "2")], hangup_after=40) as caller:
        await asyncio.wait_for(caller.answered.wait(), 15)
        assert caller.answered_at is not None
        await pharmacy.wait_for(lambda a: a.answered >= n, timeout=30, what=f"caller {n} answered")
        answered = loop.time()
        # In line from ~1 s after the keypress (the greeting stopped, the queue decided) until the
        # phone that rang for ring_s answered.
        t0, t1 = caller.answered_at + 2.0, answered - 0.3
        assert t1 - t0 > 2.0, "the wait was too short to judge"
        share = caller.rtp.slots_with_audio(t0, t1)
        gap = caller.rtp.gaps(t0, t1)
        await caller.hang_up()
    return share if gap < 0.5 else 0.0


async def test_every_queued_caller_hears_music_for_the_whole_wait(
    asterisk: RealAsterisk, real_daemon: RealDaemon
) -> None:
    """Issue 11, D1: Asterisk's music announcer leaves a holding bridge with its last caller, and
    the music stops. The first caller of the day heard music; the next one waited in silence."""
    async with SipAgent(asterisk, "agent2", ring_s=4.5) as pharmacy:
        first = await queued_with_music(asterisk, pharmacy, 1)
        second = await queued_with_music(asterisk, pharmacy, 2)
    assert first >= 0.9, f"first caller: audio in {first:.0%} of the wait"
    assert second >= 0.9, f"second caller: audio in {second:.0%} of the wait"


async def ari_get(ast: RealAsterisk, path: str) -> Any:
    headers = {"Authorization": aiohttp.encode_basic_auth("pbx-router", ast.ari_password)}
    async with aiohttp.ClientSession(headers=headers) as s, s.get(f"{ast.ari_url}/ari{path}") as r:
        assert r.status == 200
        return await r.json()


async def test_twenty_concurrent_speaking_callers_are_all_heard_and_routed(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    agents = [SipAgent(asterisk, f"agent{n}", ring_s=0.5) for n in (1, 2, 3)]
    callers = [SipCaller(asterisk, "100", audio=AUDIO / "refill_01.wav", audio_at=0.6 + 0.05 * i,
                         hangup_after=25) for i in range(20)]
    try:
        for agent in agents:
            await agent.start()
        await asyncio.gather(*(c.start() for c in callers))
        await asyncio.gather(*(asyncio.wait_for(c.answered.wait(), 30) for c in callers))
        await asyncio.gather(*(c.ended(60) for c in callers))
    finally:
        for c in callers:
            await c.stop()
        for agent in agents:
            await agent.stop()
    rows = await eventually(lambda: _all_recorded(database_url, 20), timeout=30, what="20 call records")
    heard = [r for r in rows if r["intent"] == "prescription_refill"]
    assert len(heard) == 20, [(r["intent"], r["transcript"]) for r in rows]
    assert all(r["outcome"] for r in rows)
    # Idle again: no channel, and no bridge but the queues' holding bridges (kept by design).
    await eventually(lambda: _idle(asterisk), timeout=20, what="no channel or listening bridge left")
    unexpected = [r for r in real_daemon.refusals() if r not in EXPECTED_REFUSALS]
    assert not unexpected, unexpected


async def _all_recorded(db_url: str, n: int) -> list[asyncpg.Record] | None:
    rows = await record_of(db_url)
    return rows if len(rows) >= n else None


async def _idle(ast: RealAsterisk) -> bool:
    channels = await ari_get(ast, "/channels")
    bridges = await ari_get(ast, "/bridges")
    return not channels and all(b["id"].startswith("queue-") for b in bridges)


async def test_an_orderly_stop_logs_no_lost_link_and_each_listener_once(
    asterisk: RealAsterisk, real_daemon: RealDaemon
) -> None:
    """Issue 11, D6: SIGTERM logged ``ari_disconnected`` as a warning (an operator's alert for a
    lost link) and the admin API announced itself twice."""
    async with SipAgent(asterisk, "agent2", ring_s=0.3) as pharmacy:
        async with SipCaller(asterisk, "100", dtmf=[(0.5, "2")], hangup_after=20) as caller:
            await pharmacy.wait_for(lambda a: a.answered >= 1, timeout=20, what="the pharmacy phone answered")
            await caller.hang_up()
    await real_daemon.stop()
    assert real_daemon.proc.returncode == 0
    assert len(real_daemon.events("admin_api_listening")) == 1
    assert real_daemon.events("ari_disconnected") == []
    assert [e["level"] for e in real_daemon.events("ari_closed")] == ["info"]
    assert not [e for e in real_daemon.events() if e.get("level") in ("warning", "error")]


async def test_an_agent_who_hangs_up_ends_the_call_without_refused_requests(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    """Issue 11, D5: after every agent hang-up the daemon sent DELETE for channels Asterisk had
    already destroyed (404), and DELETE for finished playbacks (404): requests that fail for
    nothing, and noise that hides the refusals that matter."""
    async with SipAgent(asterisk, "agent2", ring_s=0.3, talk_s=2.0) as pharmacy:
        async with SipCaller(asterisk, "100", dtmf=[(0.5, "2")], hangup_after=30) as caller:
            await pharmacy.wait_for(lambda a: a.hung_up >= 1, timeout=30, what="the pharmacy phone hung up")
            await caller.ended(15)
            assert caller.hung_up_by_pbx
    rows = await eventually(lambda: record_of(database_url), timeout=15, what="the call record")
    assert rows[-1]["outcome"] == "queue:pharmacy:answered"
    await eventually(lambda: _idle(asterisk), timeout=20, what="no channel or listening bridge left")
    unexpected = [r for r in real_daemon.refusals() if r not in EXPECTED_REFUSALS]
    assert not unexpected, unexpected


async def test_an_agent_who_declines_is_passed_over_and_the_caller_reaches_the_next_one(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    """Reception 1 is rung first (longest idle, first in the clinic's list) and declines (486 Busy
    Here): the caller, who pressed 0 for a person, keeps waiting and reaches Nurse Kim, who also
    takes the front desk."""
    async with SipAgent(asterisk, "agent1", ring_s=0.5, decline=True) as reception, \
            SipAgent(asterisk, "agent2", ring_s=0.3) as kim:
        async with SipCaller(asterisk, "100", dtmf=[(0.5, "0")], hangup_after=40) as caller:
            await reception.wait_for(lambda a: a.declined >= 1, timeout=30, what="reception declined")
            await kim.wait_for(lambda a: a.answered >= 1, timeout=30, what="Nurse Kim answered")
            await caller.hang_up()
        assert reception.answered == 0
    rows = await eventually(lambda: record_of(database_url), timeout=15, what="the call record")
    assert rows[-1]["outcome"] == "queue:frontdesk:answered"
    unexpected = [r for r in real_daemon.refusals() if r not in EXPECTED_REFUSALS]
    assert not unexpected, unexpected


async def test_a_spoken_emergency_hears_the_911_instruction_and_reaches_a_nurse(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    prompt = clinic_prompt("clinic-emergency-911")
    nurses = [SipAgent(asterisk, user, ring_s=0.5) for user in ("agent2", "agent3")]
    try:
        for nurse in nurses:
            await nurse.start()
        async with SipCaller(asterisk, "100", audio=AUDIO / "emergency_01.wav", audio_at=0.6,
                             hangup_after=60) as caller:
            await asyncio.wait_for(caller.answered.wait(), 15)
            await eventually(lambda: any(n.answered for n in nurses), timeout=60, what="a nurse answered")
            # Everything the caller heard, from the greeting to the nurse: the instruction is in it.
            heard = caller.rtp.heard()
            await caller.hang_up()
    finally:
        for nurse in nurses:
            await nurse.stop()
    found = similarity(heard, prompt)
    # The measure tells prompts apart: the crisis line's prompt, never played here, is not found.
    not_played = similarity(heard, clinic_prompt("clinic-crisis-988"))
    assert found >= 0.6 > not_played, f"911 instruction {found:.2f}, crisis prompt {not_played:.2f}"
    rows = await eventually(lambda: record_of(database_url), timeout=15, what="the call record")
    assert rows[-1]["intent"] == "emergency"
    assert rows[-1]["outcome"] == "queue:nurse:answered"


async def test_with_the_daemon_down_the_dialplan_fallback_rings_a_person(
    asterisk: RealAsterisk, real_daemon: RealDaemon
) -> None:
    await real_daemon.stop()
    assert not await app_registered(asterisk)
    async with SipAgent(asterisk, "agent1", ring_s=0.3) as desk:
        # app_queue rings only a phone Asterisk has qualified: a freshly registered one is
        # Unavailable until the next OPTIONS (qualify_frequency = 30 s). Ask for it now.
        await asterisk.cli("pjsip qualify agent1")
        await eventually(lambda: _reachable(asterisk, "agent1"), timeout=10, what="agent1 qualified")
        async with SipCaller(asterisk, "100", hangup_after=30) as caller:
            await asyncio.wait_for(caller.answered.wait(), 20)
            await desk.wait_for(lambda a: a.answered >= 1, timeout=30, what="the front desk answered")
            await caller.hang_up()


async def test_a_silent_caller_is_asked_again_offered_the_keypad_then_given_a_person(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    menu = clinic_prompt("clinic-keypad-menu")
    desks = [SipAgent(asterisk, user, ring_s=0.3) for user in ("agent1", "agent2")]
    try:
        for desk in desks:
            await desk.start()
        async with SipCaller(asterisk, "100", hangup_after=90) as caller:
            await asyncio.wait_for(caller.answered.wait(), 15)
            await eventually(lambda: any(d.answered for d in desks), timeout=80, what="a person answered")
            heard = caller.rtp.heard()
            await caller.hang_up()
    finally:
        for desk in desks:
            await desk.stop()
    assert similarity(heard, menu) >= 0.6, "the caller was never offered the keypad"
    rows = await eventually(lambda: record_of(database_url), timeout=15, what="the call record")
    assert rows[-1]["outcome"].startswith("queue:frontdesk:")


async def test_a_queued_caller_survives_a_daemon_killed_mid_wait_and_reaches_an_agent(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    """kill -9 while the caller is in line: Asterisk keeps them in the holding bridge (with music);
    the restarted daemon adopts them, rings an agent, and they talk (issue 11, D3 and D4)."""
    loop = asyncio.get_running_loop()
    async with SipAgent(asterisk, "agent2", ring_s=6.0) as pharmacy:
        async with SipCaller(asterisk, "100", dtmf=[(0.5, "2")], hangup_after=90) as caller:
            await asyncio.wait_for(caller.answered.wait(), 15)
            await pharmacy.wait_for(lambda a: a.invites >= 1, timeout=20, what="the pharmacy phone rang")
            killed = loop.time()
            await real_daemon.kill()
            second = await start_real_daemon(asterisk, real_daemon.config, real_daemon.log.with_name("daemon2.log"))
            try:
                # Connected: the caller's voice (their phone's stream) reaches the agent's phone.
                await eventually(lambda: any(r.at > killed for r in pharmacy.rtp.received), timeout=60,
                                 what="the caller's audio at the agent's phone")
                answered = min(r.at for r in pharmacy.rtp.received if r.at > killed)
                waited_with_music = caller.rtp.slots_with_audio(killed, answered - 0.3)
                await caller.hang_up()
                rows = await eventually(lambda: _all_recorded(database_url, 1), timeout=15,
                                        what="the call record")
            finally:
                await second.stop()
    assert waited_with_music >= 0.9, f"music in {waited_with_music:.0%} of the wait across the restart"
    # One record for the one call, closed, and it says where the caller ended up (D4).
    all_rows = await _rows(database_url)
    assert len(all_rows) == 1, [(r["channel_id"], r["outcome"], r["ended_at"]) for r in all_rows]
    assert rows[-1]["outcome"] == "queue:pharmacy:answered"


async def _rows(db_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch("SELECT * FROM calls ORDER BY started_at"))
    finally:
        await conn.close()


async def _reachable(ast: RealAsterisk, aor: str) -> bool:
    contacts = await ast.cli("pjsip show contacts")
    return any(f"{aor}/sip:" in line and "Avail" in line for line in contacts.splitlines())


async def test_a_caller_whose_daemon_was_killed_mid_sentence_is_heard_by_the_next_one(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    """kill -9 while the caller speaks: the restarted daemon adopts them with ears of its own (the
    dead daemon's snoop and externalMedia legs are its no longer), and what they say next routes
    the call."""
    async with SipAgent(asterisk, "agent2", ring_s=0.3) as pharmacy:
        async with SipCaller(asterisk, "100", say=[(0.6, AUDIO / "refill_01.wav"), (9.0, AUDIO / "refill_02.wav")],
                             hangup_after=60) as caller:
            await asyncio.wait_for(caller.answered.wait(), 15)
            # The daemon heard the caller start speaking over the greeting: kill it mid-sentence.
            await eventually(lambda: real_daemon.events("barge_in"), timeout=15, what="speech heard starting")
            await real_daemon.kill()
            second = await start_real_daemon(asterisk, real_daemon.config, real_daemon.log.with_name("daemon2.log"))
            try:
                await pharmacy.wait_for(lambda a: a.answered >= 1, timeout=40, what="the pharmacy phone answered")
                await caller.hang_up()
                rows = await eventually(lambda: _all_recorded(database_url, 1), timeout=15, what="the call record")
            finally:
                await second.stop()
    assert rows[-1]["intent"] == "prescription_refill"
    assert rows[-1]["outcome"] == "queue:pharmacy:answered"
    assert len(await _rows(database_url)) == 1


async def test_after_asterisk_restarts_the_next_calls_are_heard_and_routed(
    asterisk: RealAsterisk, real_daemon: RealDaemon, database_url: str
) -> None:
    """Issue 11, D2: right after ``core restart now`` Asterisk answered addChannel for the
    listening legs with 422 "Channel not in Stasis application" (2 calls of 2), and those calls
    went deaf for their whole length. Every caller after the restart must be heard."""
    await asterisk.restart()
    await eventually(lambda: app_registered(asterisk), timeout=60, what="the daemon reconnected")
    async with SipAgent(asterisk, "agent2", ring_s=0.3) as pharmacy:
        callers = [SipCaller(asterisk, "100", audio=AUDIO / "refill_01.wav", audio_at=0.6, hangup_after=30)
                   for _ in range(3)]
        try:
            await asyncio.gather(*(c.start() for c in callers))
            await asyncio.gather(*(asyncio.wait_for(c.answered.wait(), 15) for c in callers))
            await pharmacy.wait_for(lambda a: a.answered >= 1, timeout=30, what="the pharmacy phone answered")
            # All three decided before anyone hangs up (a deaf one is decided too, by no-input turns).
            await eventually(lambda: len(real_daemon.events("call_decided")) >= 3 or None, timeout=40,
                             what="three decisions")
            for c in callers:
                await c.hang_up()
        finally:
            for c in callers:
                await c.stop()
    rows = await eventually(lambda: _all_recorded(database_url, 3), timeout=15, what="the call records")
    # Each one by what they said: a deaf call ends in no-input turns and the keypad menu.
    assert [r["intent"] for r in rows] == ["prescription_refill"] * 3, [r["transcript"] for r in rows]
    assert real_daemon.events("listen_start_failed") == []
