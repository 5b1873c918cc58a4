"""The daemon owns every call: answered, greeted, routed; and nothing leaks, whatever happens.

Everything runs against the Asterisk emulator over real HTTP/websocket and a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from pbx_router.testing import AgentBehaviour, AsteriskEmulator

from helpers import eventually

DaemonFactory = Any  # the start_daemon fixture (tests/conftest.py)


def media_played(call: Any) -> list[str]:
    out = []
    for p in call.playbacks:
        uri = p["media_uri"] if isinstance(p, dict) else getattr(p, "media_uri", p)
        out.append(str(uri))
    return out


async def records(db_url: str) -> dict[str, asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT * FROM calls")
    except asyncpg.UndefinedTableError:
        return {}  # the daemon opens the store lazily and has not migrated yet
    finally:
        await conn.close()
    return {r["channel_id"]: r for r in rows}


async def no_leaks(pbx: AsteriskEmulator, daemon: Any) -> bool:
    sup = daemon.supervisor
    return not sup.calls and not sup.tasks and not any(
        str(b["id"] if isinstance(b, dict) else b).startswith("pbxr-") for b in pbx.bridges
    ) and not any(str(c).startswith("pbxr-") for c in pbx.channels)


async def test_call_is_answered_greeted_and_routed(pbx: AsteriskEmulator, start_daemon: DaemonFactory,
                                                   database_url: str) -> None:
    daemon = await start_daemon()
    call = await pbx.place_call(caller_number="+15551230001", caller_name="Pat Doe", dialled="100")
    await call.wait_for(lambda c: c.fate == "continued", timeout=10)
    assert call.answered
    assert media_played(call) == ["sound:hello-world"]
    assert call.continued_to == ("clinic-frontdesk", "s", 1)
    rows = await eventually(lambda: _ended(database_url, call.channel_id), what="call record")
    row = rows[call.channel_id]
    assert row["caller_number"] == "+15551230001"
    assert row["dialled"] == "100"
    assert row["answered_at"] is not None and row["ended_at"] is not None
    assert row["outcome"] == "routed:dialplan:clinic-frontdesk"
    await eventually(lambda: no_leaks(pbx, daemon), what="no leaked call state")


async def _ended(db_url: str, channel_id: str) -> dict[str, asyncpg.Record] | None:
    rows = await records(db_url)
    row = rows.get(channel_id)
    return rows if row is not None and row["ended_at"] is not None else None


async def test_hangup_during_greeting_ends_the_call_cleanly(pbx: AsteriskEmulator, start_daemon: DaemonFactory,
                                                            database_url: str) -> None:
    pbx.sounds["hello-world"] = 5.0
    daemon = await start_daemon()
    call = await pbx.place_call(caller_number="+15551230002", dialled="100")
    await call.wait_for(lambda c: bool(c.playbacks), timeout=5)
    await call.hangup()
    rows = await eventually(lambda: _ended(database_url, call.channel_id), what="call record")
    assert rows[call.channel_id]["outcome"] == "abandoned"
    assert call.continued_to is None
    await eventually(lambda: no_leaks(pbx, daemon), what="no leaked call state")
    assert daemon.supervisor.stats.failed == 0


async def test_routed_to_an_agent_who_answers_then_hangs_up(pbx: AsteriskEmulator, start_daemon: DaemonFactory,
                                                            database_url: str) -> None:
    pbx.add_endpoint("PJSIP/agent1", AgentBehaviour.answer_then_hangup(answer_after=0.2, talk_seconds=0.5))
    daemon = await start_daemon(default_route="{type: endpoint, endpoint: PJSIP/agent1, timeout: 5}")
    call = await pbx.place_call(caller_number="+15551230003", dialled="100")
    await call.wait_for(lambda c: c.fate == "bridged", timeout=10)
    # The agent hangs up after talking: the caller is hung up by us, and everything is released.
    await call.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=10)
    rows = await eventually(lambda: _ended(database_url, call.channel_id), what="call record")
    assert rows[call.channel_id]["outcome"] == "bridged:PJSIP/agent1"
    await eventually(lambda: no_leaks(pbx, daemon), what="no leaked call state")


async def test_agent_never_answers_caller_goes_to_fallback(pbx: AsteriskEmulator, start_daemon: DaemonFactory,
                                                           database_url: str) -> None:
    pbx.add_endpoint("PJSIP/agent2", AgentBehaviour.never_answer())
    daemon = await start_daemon(default_route="{type: endpoint, endpoint: PJSIP/agent2, timeout: 1}")
    call = await pbx.place_call(caller_number="+15551230004", dialled="100")
    await call.wait_for(lambda c: c.fate == "continued", timeout=15)
    assert call.continued_to == ("pbx-router-fallback", "s", 1)
    rows = await eventually(lambda: _ended(database_url, call.channel_id), what="call record")
    assert rows[call.channel_id]["outcome"] == "no_answer:dialplan:pbx-router-fallback"
    await eventually(lambda: no_leaks(pbx, daemon), what="no leaked call state")


async def test_fifty_simultaneous_calls_all_routed_without_leaks(pbx: AsteriskEmulator,
                                                                 start_daemon: DaemonFactory,
                                                                 database_url: str) -> None:
    daemon = await start_daemon()
    calls = await asyncio.gather(*[
        pbx.place_call(caller_number=f"+1555000{i:04d}", dialled="100") for i in range(50)
    ])
    await asyncio.gather(*[c.wait_for(lambda c: c.fate == "continued", timeout=30) for c in calls])
    assert all(c.continued_to == ("clinic-frontdesk", "s", 1) for c in calls)
    rows = await eventually(
        lambda: _all_ended(database_url, [c.channel_id for c in calls]), timeout=20, what="50 call records"
    )
    assert len(rows) == 50
    await eventually(lambda: no_leaks(pbx, daemon), what="no leaked call state")


async def _all_ended(db_url: str, ids: list[str]) -> dict[str, asyncpg.Record] | None:
    rows = await records(db_url)
    done = {i: rows[i] for i in ids if i in rows and rows[i]["ended_at"] is not None}
    return done if len(done) == len(ids) else None


async def test_websocket_dropped_mid_call_reconnects_and_routes(pbx: AsteriskEmulator,
                                                                start_daemon: DaemonFactory) -> None:
    pbx.sounds["hello-world"] = 1.0
    daemon = await start_daemon()
    calls = await asyncio.gather(*[pbx.place_call(caller_number=f"+1555111{i:04d}", dialled="100") for i in range(5)])
    await asyncio.gather(*[c.wait_for(lambda c: bool(c.playbacks), timeout=5) for c in calls])
    connects = daemon.app.stream.stats.connects
    await pbx.drop_websockets()
    # The greeting's PlaybackFinished is lost while we are away; resync must still route them.
    await asyncio.gather(*[c.wait_for(lambda c: c.fate == "continued", timeout=20) for c in calls])
    assert daemon.app.stream.stats.connects > connects
    await eventually(lambda: no_leaks(pbx, daemon), what="no leaked call state")


async def test_malformed_and_unknown_events_are_counted_and_ignored(pbx: AsteriskEmulator,
                                                                    start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon()
    await pbx.send_raw("{not json at all")
    await pbx.send_raw('{"type":"FutureEventType","timestamp":"2026-11-27T08:00:00.000+0000","application":"pbx-router"}')
    await pbx.send_raw('{"type":"StasisStart","channel":"garbage"}')
    stats = daemon.app.stream.stats
    await eventually(lambda: stats.malformed >= 2 and stats.unknown >= 1, what="counted bad events")
    call = await pbx.place_call(caller_number="+15551230005", dialled="100")
    await call.wait_for(lambda c: c.fate == "continued", timeout=10)
    assert not daemon.task.done()


async def test_calls_while_daemon_down_still_reach_the_dialplan(pbx: AsteriskEmulator) -> None:
    # No daemon at all: Asterisk's dialplan sees STASISSTATUS=FAILED and goes on to a human.
    call = await pbx.place_call(caller_number="+15551230006", dialled="100")
    await call.wait_for(lambda c: c.fate == "stasis_failed", timeout=5)


async def test_sigterm_style_shutdown_drains_and_refuses_new_calls(pbx: AsteriskEmulator,
                                                                   start_daemon: DaemonFactory) -> None:
    pbx.sounds["hello-world"] = 1.0
    daemon = await start_daemon()
    in_flight = await pbx.place_call(caller_number="+15551230007", dialled="100")
    await in_flight.wait_for(lambda c: bool(c.playbacks), timeout=5)
    daemon.app.request_stop()
    await eventually(lambda: not daemon.supervisor.accepting, what="stopped accepting")
    late = await pbx.place_call(caller_number="+15551230008", dialled="100")
    await late.wait_for(lambda c: c.fate == "continued", timeout=10)
    assert late.continued_to == ("pbx-router-fallback", "s", 1)
    await in_flight.wait_for(lambda c: c.fate == "continued", timeout=10)
    assert in_flight.continued_to == ("clinic-frontdesk", "s", 1)
    await daemon.stop()
    assert daemon.task.exception() is None


async def test_shutdown_leaves_a_conversation_with_staff_alone_and_the_next_daemon_adopts_it(
    pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    pbx.add_endpoint("PJSIP/agent1", AgentBehaviour.answer_after(0.2))
    route = "{type: endpoint, endpoint: PJSIP/agent1, timeout: 5}"
    first = await start_daemon(default_route=route)
    call = await pbx.place_call(caller_number="+15551230009", dialled="100")
    await call.wait_for(lambda c: c.fate == "bridged", timeout=10)
    agent_leg = next(iter(call.bridged_with))
    await first.stop()  # SIGTERM: routing is done for this call; the conversation goes on
    assert call.fate == "bridged" and agent_leg in call.bridged_with
    second = await start_daemon(default_route=route)
    await eventually(lambda: call.channel_id in second.supervisor.calls, what="call adopted")
    assert call.fate == "bridged"  # not dialled again, not moved
    await call.hangup()
    await eventually(lambda: not pbx.handle(agent_leg).alive, what="agent leg hung up by the new daemon")
    await eventually(lambda: no_leaks(pbx, second), what="no leaked call state")
