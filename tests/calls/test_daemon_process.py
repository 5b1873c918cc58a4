"""The daemon as a real process: killed and restarted while callers sit in Stasis, SIGTERM,
and a database that goes away mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pbx_router.store.embedded import EmbeddedPostgres
from pbx_router.store.testing import TEST_DATABASE_URL_ENV, scratch_dir
from pbx_router.testing import AgentBehaviour, AsteriskEmulator

from helpers import eventually

DaemonFactory = Any


def write_config(path: Path, pbx: AsteriskEmulator, data_dir: Path, db_url: str, route: str) -> Path:
    path.write_text(
        f"""
ari: {{url: "{pbx.base_url}", username: pbx-router, password: emulator-ari-password-0123, reconnect_min: 0.05, reconnect_max: 0.5}}
database: {{url: "{db_url}"}}
data_dir: "{data_dir}"
log: {{level: info, format: json}}
calls:
  greeting: [sound:hello-world]
  default_route: {route}
  fallback: {{context: pbx-router-fallback}}
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


async def test_daemon_killed_and_restarted_adopts_callers_in_stasis(
    pbx: AsteriskEmulator, database_url: str, tmp_path: Path
) -> None:
    pbx.add_endpoint("PJSIP/agent1", AgentBehaviour.answer_after(0.2))
    cfg = write_config(tmp_path / "cfg.yaml", pbx, tmp_path / "data", database_url,
                       "{type: endpoint, endpoint: PJSIP/agent1, timeout: 5}")
    first = await spawn_daemon(cfg, tmp_path / "daemon1.log")
    try:
        await pbx.wait_for_websocket(timeout=30)
        pbx.sounds["hello-world"] = 0.2
        talking = await pbx.place_call(caller_number="+15552000001", dialled="100")
        await talking.wait_for(lambda c: c.fate == "bridged", timeout=15)
        pbx.sounds["hello-world"] = 60.0
        greeting = [await pbx.place_call(caller_number=f"+155520000{i:02d}", dialled="100") for i in range(2, 5)]
        for c in greeting:
            await c.wait_for(lambda c: c.answered and bool(c.playbacks), timeout=15)
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    # Nobody tells Asterisk: the callers stay in Stasis, and the talking call stays bridged.
    await eventually(lambda: not pbx.ws_connected, what="websocket closed by the crash")
    assert all(c.fate == "in_stasis" for c in greeting)
    assert talking.fate == "bridged"

    second = await spawn_daemon(cfg, tmp_path / "daemon2.log")
    try:
        for c in greeting:
            await c.wait_for(lambda c: c.fate == "bridged", timeout=20)
        # The call that was already talking was left alone (not dialled again).
        assert talking.fate == "bridged"
        agent_legs = pbx.endpoint("PJSIP/agent1").channels
        assert len([leg for leg in agent_legs if leg.alive]) == 4
        # When the talking caller hangs up, the adopted call cleans up its agent leg and bridge.
        peer = next(iter(talking.bridged_with))
        await talking.hangup()
        await eventually(lambda: not pbx.handle(peer).alive, what="agent leg of the adopted call hung up")
        await eventually(lambda: not any(b.id == f"pbxr-b-{talking.channel_id}" for b in pbx.bridges.values()),
                         what="bridge of the adopted call deleted")
        for c in greeting:
            await c.hangup()
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    # One record per call across the crash (issue 11, D4: the restarted daemon opened a second
    # record per adopted call, and the killed daemon's stayed open for ever beside it).
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT channel_id FROM calls")
    finally:
        await conn.close()
    assert sorted(r["channel_id"] for r in rows) == sorted(c.channel_id for c in [talking, *greeting])


async def test_sigterm_lets_in_flight_calls_finish_and_exits_zero(
    pbx: AsteriskEmulator, database_url: str, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", pbx, tmp_path / "data", database_url,
                       "{type: dialplan, context: clinic-frontdesk}")
    proc = await spawn_daemon(cfg, tmp_path / "daemon.log")
    await pbx.wait_for_websocket(timeout=30)
    pbx.sounds["hello-world"] = 1.5
    call = await pbx.place_call(caller_number="+15552000010", dialled="100")
    await call.wait_for(lambda c: bool(c.playbacks), timeout=10)
    proc.send_signal(signal.SIGTERM)
    await call.wait_for(lambda c: c.fate == "continued", timeout=10)
    assert call.continued_to == ("clinic-frontdesk", "s", 1)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
    # Logs carry the call id, never the caller's number.
    assert call.channel_id in log and "+15552000010" not in log and "5552000010" not in log


async def test_database_stopped_mid_run_calls_flow_and_records_are_replayed(
    pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    if os.environ.get(TEST_DATABASE_URL_ENV):
        pytest.skip("stops its own embedded server; the external test server is not ours to stop")
    with scratch_dir() as pg_dir:
        await _database_outage(pbx, start_daemon, EmbeddedPostgres(pg_dir / "pg"))


async def _database_outage(pbx: AsteriskEmulator, start_daemon: DaemonFactory, pg: EmbeddedPostgres) -> None:
    url = await pg.start()
    try:
        daemon = await start_daemon(db_url=url)
        first = await pbx.place_call(caller_number="+15553000001", dialled="100")
        await first.wait_for(lambda c: c.fate == "continued", timeout=10)
        recorder = daemon.app.recorder
        await eventually(lambda: recorder.stats.pending == 0 and recorder.stats.written >= 1, what="first record")

        await pg.stop()
        during = [await pbx.place_call(caller_number=f"+155530000{i:02d}", dialled="100") for i in range(2, 7)]
        for c in during:
            await c.wait_for(lambda c: c.fate == "continued", timeout=10)  # calls flow without the database
        await eventually(lambda: recorder.stats.pending >= 5, what="records waiting while the database is down")

        await pg.start()
        await eventually(lambda: recorder.stats.pending == 0, timeout=30, what="spool replayed")
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT channel_id, outcome, ended_at FROM calls")
        finally:
            await conn.close()
        by_channel = {r["channel_id"]: r for r in rows}
        for c in [first, *during]:
            assert by_channel[c.channel_id]["outcome"] == "routed:dialplan:clinic-frontdesk"
            assert by_channel[c.channel_id]["ended_at"] is not None
        assert recorder.stats.dropped == 0
    finally:
        await pg.stop()


async def test_wrong_ari_credentials_are_a_startup_failure(
    pbx: AsteriskEmulator, database_url: str, tmp_path: Path
) -> None:
    """Wrong credentials never fix themselves: App.run refuses to start (exit code 5 from
    ``pbx-router run``, see test_daemon_startup.py) instead of retrying for ever."""
    from pbx_router.app import App
    from pbx_router.config import parse_config
    from pbx_router.startup import ExitCode, StartupError

    cfg = parse_config(
        f'ari: {{url: "{pbx.base_url}", password: a-wrong-ari-password-0123, reconnect_min: 0.05, reconnect_max: 0.2}}\n'
        f'database: {{url: "{database_url}"}}\ndata_dir: "{tmp_path}"\nadmin: {{enabled: false}}\n',
        env={},
    )
    app = App(cfg, install_signals=False)
    with pytest.raises(StartupError) as refused:
        await asyncio.wait_for(app.run(), 30)
    assert refused.value.exit_code == ExitCode.ARI_AUTH
    assert app.stream is None and not pbx.ws_connected
