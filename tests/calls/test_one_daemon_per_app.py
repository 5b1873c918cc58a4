"""One active daemon per Asterisk app (README, "One daemon per Asterisk app"): two real
``pbx-router run`` processes on one Asterisk app and one database. The second stands by (it does
not connect, answer or adopt) until the first dies, then takes over within 5 s; a daemon that
another websocket replaces on Asterisk does not fight back."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pbx_router.ari.stream import StreamState
from pbx_router.queues.overrides import Override
from pbx_router.store.embedded import EmbeddedPostgres
from pbx_router.store.overrides import OverrideRepository
from pbx_router.store.testing import TEST_DATABASE_URL_ENV, scratch_dir
from pbx_router.testing import AsteriskEmulator

from helpers import eventually

TAKEOVER_S = 5.0  # the bar: from the kill of the active daemon to calls answered again
ADMIN_TOKEN = "standby-test-admin-token-0123"


def write_config(path: Path, pbx: AsteriskEmulator, data_dir: Path, db_url: str) -> Path:
    path.write_text(
        f"""
ari: {{url: "{pbx.base_url}", username: pbx-router, password: {pbx.password}, reconnect_min: 0.05, reconnect_max: 0.5}}
database: {{url: "{db_url}"}}
data_dir: "{data_dir}"
log: {{level: info, format: json}}
calls:
  greeting: [sound:hello-world]
  default_route: {{type: dialplan, context: clinic-frontdesk}}
  fallback: {{context: pbx-router-fallback}}
shutdown: {{drain_timeout: 2}}
admin: {{port: 0, token: {ADMIN_TOKEN}}}
"""
    )
    return path


class Proc:
    """A ``pbx-router run -c FILE`` process and its JSON log."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    async def spawn(cls, config: Path, log: Path) -> Proc:
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pbx_router", "run", "-c", str(config),
            stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return cls(proc, log)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    async def wait_for_log(self, event: str, timeout: float = 45.0) -> dict[str, Any]:
        await eventually(lambda: self.logged(event) or self.proc.returncode is not None, timeout=timeout,
                         what=f"log line {event!r} in {self.log.name}")
        found = self.logged(event)
        assert found, f"{self.log.name} exited ({self.proc.returncode}) without {event!r}:\n{self.log.read_text()}"
        return found[0]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def test_second_daemon_stands_by_and_takes_over_within_5_s_of_a_kill(
    pbx: AsteriskEmulator, database_url: str, tmp_path: Path
) -> None:
    """Given an active daemon, when a second starts on the same app and database, then it says it
    is standby, does not connect, and a call is the first one's; when the first is killed -9,
    the second adopts the caller left in Stasis and answers new calls within 5 s."""
    active = await Proc.spawn(write_config(tmp_path / "a.yaml", pbx, tmp_path / "data-a", database_url),
                              tmp_path / "a.log")
    standby: Proc | None = None
    try:
        await active.wait_for_log("ari_ready")
        socket_of_active = pbx.apps["pbx-router"].socket
        standby = await Proc.spawn(write_config(tmp_path / "b.yaml", pbx, tmp_path / "data-b", database_url),
                                   tmp_path / "b.log")
        said = await standby.wait_for_log("standby")
        assert said["level"] == "info"
        # The standby's probes: alive, not ready, and why.
        admin_url = (await standby.wait_for_log("admin_api_listening"))["url"]
        async with aiohttp.ClientSession() as http:
            status, body = await eventually(lambda: _get(http, f"{admin_url}/readyz"), what="/readyz answers")
            assert status == 503 and any("standby" in line for line in body["not_ready"]), body
            assert await _get(http, f"{admin_url}/healthz") == (200, {"ok": True})

        # A caller who arrives now is the active daemon's, and only its: the standby never
        # connected (the active socket was not replaced) and hears nothing of the call.
        pbx.sounds["hello-world"] = 60.0
        waiting = await pbx.place_call(caller_number="+15552100001", dialled="100")
        await waiting.wait_for(lambda c: c.answered and bool(c.playbacks), timeout=15)
        assert pbx.apps["pbx-router"].socket is socket_of_active
        assert active.logged("ari_application_replaced") == []
        assert standby.logged("ari_connected") == [] and standby.logged("call_adopted") == []
        assert waiting.channel_id not in standby.log.read_text()

        pbx.sounds["hello-world"] = 0.2
        active.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await active.proc.wait()

        # The caller left in Stasis by the dead daemon is adopted and routed by the standby ...
        await waiting.wait_for(lambda c: c.fate == "continued", timeout=TAKEOVER_S + 10)
        assert waiting.continued_to == ("clinic-frontdesk", "s", 1)
        assert any(line.get("channel_id") == waiting.channel_id for line in standby.logged("call_adopted"))
        # ... and it answers new calls within 5 s of the kill.
        await eventually(lambda: pbx.ws_connected, timeout=TAKEOVER_S, what="the standby connected")
        fresh = await pbx.place_call(caller_number="+15552100002", dialled="100")
        await fresh.wait_for(lambda c: c.answered, timeout=max(0.1, TAKEOVER_S - (time.monotonic() - killed)))
        assert time.monotonic() - killed <= TAKEOVER_S
        await fresh.wait_for(lambda c: c.fate == "continued", timeout=10)
        assert standby.logged("app_lock_acquired")
    finally:
        if active.proc.returncode is None:
            active.proc.kill()
            await active.proc.wait()
        if standby is not None:
            await standby.stop()
    assert standby.proc.returncode == 0
    assert "Traceback" not in standby.log.read_text()


async def test_daemon_replaced_on_asterisk_does_not_reconnect_and_fight(
    pbx: AsteriskEmulator, start_daemon: Any
) -> None:
    """Another program connects a websocket for our app: the daemon hears ApplicationReplaced,
    stays off (backing off, not ready) instead of replacing it straight back, and gives the
    callers to whoever holds the app."""
    daemon = await start_daemon()
    stream = daemon.app.stream
    assert stream.stats.connects == 1
    pbx.sounds["hello-world"] = 60.0
    greeted = await pbx.place_call(caller_number="+15552100007", dialled="100")
    await greeted.wait_for(lambda c: c.answered and bool(c.playbacks), timeout=10)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{pbx.base_url.replace('http', 'ws')}/ari/events",
                                   params={"app": "pbx-router", "api_key": f"pbx-router:{pbx.password}"}):
            interloper = pbx.apps["pbx-router"].socket
            await eventually(lambda: _role(daemon.app) == "replaced", what="the daemon backing off")
            assert stream.state is StreamState.REPLACED and not stream.ready.is_set()
            # The caller it was greeting is left in Stasis for the app's new holder: not sent to
            # the fallback, not hung up.
            assert daemon.supervisor.calls == {}
            assert greeted.fate == "in_stasis"
            # Nothing reconnected: the other websocket still holds the app, and a new caller is
            # theirs (our daemon does not answer it).
            call = await pbx.place_call(caller_number="+15552100003", dialled="100")
            assert pbx.apps["pbx-router"].socket is interloper
            assert stream.stats.connects == 1 and stream.stats.replaced == 1
            assert not call.answered
            await call.hangup()


async def test_lock_keeps_a_second_in_process_daemon_standby_until_the_first_stops(
    pbx: AsteriskEmulator, start_daemon: Any
) -> None:
    """The same through the App as wired (in process): standby until the active one stops
    (SIGTERM path releases the lock), then active, with the staff overrides set meanwhile."""
    first = await start_daemon()
    second = await start_daemon(wait_ready=False)
    await eventually(lambda: _role(second.app) == "standby", timeout=30, what="second daemon standby")
    assert second.app.stream.stats.connects == 0
    assert first.app.stream.stats.replaced == 0
    # Staff close a queue through the active daemon while the other stands by.
    now = dt.datetime.now(dt.UTC)
    closed = Override(kind="close_queue", scope="frontdesk", author="Dana", reason="meeting",  # type: ignore[arg-type]
                      created_at=now, expires_at=now + dt.timedelta(hours=1))
    assert await OverrideRepository((await first.app.get_store()).pool).save(closed)

    await first.stop()
    await eventually(lambda: second.app.stream.ready.is_set(), timeout=TAKEOVER_S + 5, what="second daemon active")
    assert closed.id in [o.id for o in second.app.admin.overrides.items]
    call = await pbx.place_call(caller_number="+15552100004", dialled="100")
    await call.wait_for(lambda c: c.fate == "continued", timeout=10)


async def test_database_restart_leaves_one_active_daemon_and_calls_flow_throughout(
    pbx: AsteriskEmulator, start_daemon: Any
) -> None:
    """The lock's connection drops (PostgreSQL stops): the active daemon goes on answering
    without the lock, the standby stays standby; when PostgreSQL is back, exactly one of them
    holds the lock and serves, the other stands by."""
    if os.environ.get(TEST_DATABASE_URL_ENV):
        pytest.skip("stops its own embedded server; the external test server is not ours to stop")
    with scratch_dir() as pg_dir:
        pg = EmbeddedPostgres(pg_dir / "pg")
        url = await pg.start()
        try:
            first = await start_daemon(db_url=url)
            second = await start_daemon(db_url=url, wait_ready=False)
            daemons = (first.app, second.app)
            await eventually(lambda: _role(second.app) == "standby", timeout=30, what="second daemon standby")

            await pg.stop()
            await eventually(lambda: _role(first.app) == "active-unlocked", timeout=15,
                             what="the active daemon noticing it lost the lock")
            during = await pbx.place_call(caller_number="+15552100005", dialled="100")
            await during.wait_for(lambda c: c.fate == "continued", timeout=10)
            assert _role(second.app) == "standby" and second.app.stream.stats.connects == 0
            assert first.app.stream.stats.replaced == 0

            await pg.start()
            await eventually(lambda: sorted(_role(a) for a in daemons) == ["active", "standby"]
                             and any(a.stream.ready.is_set() for a in daemons),
                             timeout=30, what="one daemon active with the lock, the other standby")
            after = await pbx.place_call(caller_number="+15552100006", dialled="100")
            await after.wait_for(lambda c: c.fate == "continued", timeout=10)
            assert after.continued_to == ("clinic-frontdesk", "s", 1)
        finally:
            for d in (first, second):
                await d.stop()
            await pg.stop()


def _role(app: Any) -> str | None:
    return app.leadership.role.value if app.leadership is not None else None


def test_lock_key_depends_on_the_asterisk_and_the_app_only() -> None:
    from pbx_router.store.applock import lock_key

    key = lock_key("http://127.0.0.1:8088", "pbx-router")
    assert key == lock_key("HTTP://127.0.0.1:8088/", "pbx-router")
    assert key == lock_key("http://user:pw@127.0.0.1:8088", "pbx-router")
    assert key != lock_key("http://127.0.0.1:8088", "other-app")
    assert key != lock_key("http://10.0.0.2:8088", "pbx-router")
    assert -(2**63) <= key < 2**63
