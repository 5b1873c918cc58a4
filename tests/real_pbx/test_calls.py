"""Callers on a real Asterisk 22, through the daemon as a real process: what a caller hears and
where they end up, seen from their SIP phone and the staff's phones."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg

from pbx_router.testing.asterisk import RealAsterisk
from pbx_router.testing.sip import SipAgent, SipCaller

from helpers import eventually
from real_pbx.conftest import AUDIO, EXPECTED_REFUSALS, RealDaemon


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
