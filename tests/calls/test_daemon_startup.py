"""Start-up and shutdown of the real process (``pbx-router run -c FILE``) can never hang.

A start-up failure is one line on stderr and its documented exit code within 5 s of the daemon
starting (README, "Exit codes"); a database that is down is not a start-up failure (calls are
answered and records are spooled); SIGTERM ends the process within ``shutdown.drain_timeout``
plus ``SHUTDOWN_MARGIN_S``, during start-up too, with Asterisk or the database unreachable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from pbx_router.app import SHUTDOWN_MARGIN_S
from pbx_router.startup import ExitCode
from pbx_router.testing import AsteriskEmulator

from helpers import eventually

# How long a broken start-up may take once the daemon has begun (the bar).
STARTUP_FAILURE_S = 5.0
# A hang is told apart from slowness by this much: interpreter start on a loaded 2-core box
# alone can take several seconds, so the 5 s are measured from the daemon's first log line.
HANG_S = 45.0
DRAIN_S = 2.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def port_in_use() -> Iterator[int]:
    """A loopback TCP port another program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@contextmanager
def black_hole() -> Iterator[str]:
    """An 'Asterisk' that accepts connections (into the backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


UNREACHABLE_DB = f"postgresql://pbx:not-the-password-0123@127.0.0.1:{closed_port()}/clinic"


def write_config(tmp: Path, *, ari_url: str, username: str = "pbx-router", password: str,
                 db_url: str = UNREACHABLE_DB, admin: str = "{enabled: false}",
                 data_dir: Path | None = None, extra: str = "") -> Path:
    path = tmp / "pbx-router.yaml"
    path.write_text(
        f"""
ari: {{url: "{ari_url}", username: {username}, password: "{password}", reconnect_min: 0.05, reconnect_max: 0.5,
       request_timeout: 30}}
database: {{url: "{db_url}"}}
data_dir: "{data_dir or tmp / 'data'}"
log: {{level: info, format: json}}
calls:
  greeting: [sound:hello-world]
  default_route: {{type: dialplan, context: clinic-frontdesk}}
  fallback: {{context: pbx-router-fallback}}
shutdown: {{drain_timeout: {DRAIN_S}}}
admin: {admin}
{extra}
"""
    )
    return path


@dataclass
class Daemon:
    proc: asyncio.subprocess.Process
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, object]]:
        out = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written right now
        return out

    def logged(self, event: str) -> dict[str, object] | None:
        return next((e for e in self.log_events() if e.get("event") == event), None)

    def messages(self) -> list[str]:
        """What the daemon said to the operator (not log lines)."""
        return [line for line in self.stderr.splitlines() if line.startswith("pbx-router:")]

    async def wait_for_log(self, event: str, timeout: float = HANG_S) -> dict[str, object]:
        return await eventually(lambda: self.logged(event) or self.proc.returncode is not None,
                                timeout=timeout, what=f"log line {event!r}") and self._must_have(event)

    def _must_have(self, event: str) -> dict[str, object]:
        found = self.logged(event)
        assert found is not None, f"the daemon exited ({self.proc.returncode}) without logging {event}:\n{self.stderr}"
        return found

    async def exit_code(self, timeout: float) -> int:
        """The exit code, or fail (and kill it) if it is still running after ``timeout``."""
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"the daemon was still running after {timeout:g} s:\n{self.stderr[-3000:]}") from None


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[object]:
    started: list[Daemon] = []

    async def start(config: Path) -> Daemon:
        err = tmp_path / f"daemon{len(started)}.stderr"
        with open(err, "wb") as errf:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pbx_router", "run", "-c", str(config),
                stdout=asyncio.subprocess.DEVNULL, stderr=errf, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        d = Daemon(proc, err)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


def seconds_since(event: dict[str, object]) -> float:
    at = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
    return time.time() - at.timestamp()


async def assert_cannot_start(daemon: Daemon, code: ExitCode, *needles: str) -> None:
    rc = await daemon.exit_code(HANG_S)
    exited_after = seconds_since(daemon._must_have("daemon_starting"))
    assert rc == code, daemon.stderr
    assert exited_after < STARTUP_FAILURE_S, f"took {exited_after:.1f} s to give up:\n{daemon.stderr}"
    said = daemon.messages()
    assert len(said) == 1 and said[0].startswith("pbx-router: cannot start: "), daemon.stderr
    for needle in needles:
        assert needle in said[0]
    assert "Traceback" not in daemon.stderr
    assert daemon.logged("daemon_started") is None


async def test_admin_port_taken_while_the_database_is_unreachable_exits_3_at_once(
    pbx: AsteriskEmulator, tmp_path: Path, spawn: object
) -> None:
    with port_in_use() as port:
        cfg = write_config(tmp_path, ari_url=pbx.base_url, username=pbx.username, password=pbx.password,
                           admin=f'{{enabled: true, port: {port}, token: "an-admin-token-0123456789abcdef"}}')
        daemon = await spawn(cfg)  # type: ignore[operator]
        await assert_cannot_start(daemon, ExitCode.LISTEN, f"admin API port 127.0.0.1:{port} is already in use")
    assert not pbx.ws_connected  # it never started taking calls


async def test_wrong_ari_credentials_exit_5(pbx: AsteriskEmulator, tmp_path: Path, spawn: object) -> None:
    cfg = write_config(tmp_path, ari_url=pbx.base_url, username=pbx.username, password="a-wrong-ari-password-0123")
    daemon = await spawn(cfg)  # type: ignore[operator]
    await assert_cannot_start(daemon, ExitCode.ARI_AUTH, "refused the ARI credentials", repr(pbx.username))
    assert "a-wrong-ari-password-0123" not in daemon.stderr


async def test_unwritable_data_directory_exits_4(pbx: AsteriskEmulator, tmp_path: Path, spawn: object) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be\n")  # fails as root too
    cfg = write_config(tmp_path, ari_url=pbx.base_url, username=pbx.username, password=pbx.password,
                       data_dir=blocker / "var")
    daemon = await spawn(cfg)  # type: ignore[operator]
    await assert_cannot_start(daemon, ExitCode.DATA_DIR, "data directory", "cannot be written")


async def test_rtp_host_that_is_not_ours_exits_3(pbx: AsteriskEmulator, tmp_path: Path, spawn: object) -> None:
    rules = Path(__file__).resolve().parents[2] / "examples" / "clinic.yaml"
    cfg = write_config(tmp_path, ari_url=pbx.base_url, username=pbx.username, password=pbx.password,
                       extra=f'rules: "{rules}"\nmedia: {{rtp_host: 192.0.2.1}}')  # TEST-NET-1: nobody's
    daemon = await spawn(cfg)  # type: ignore[operator]
    await assert_cannot_start(daemon, ExitCode.LISTEN, "media.rtp_host 192.0.2.1")


async def test_database_unreachable_calls_are_answered_records_spooled_and_sigterm_ends_it(
    pbx: AsteriskEmulator, tmp_path: Path, spawn: object
) -> None:
    """The README's promise: a database that is down never delays answering calls; records wait
    in the spool. The daemon says clearly why and keeps retrying; SIGTERM still ends it."""
    cfg = write_config(tmp_path, ari_url=pbx.base_url, username=pbx.username, password=pbx.password)
    daemon = await spawn(cfg)  # type: ignore[operator]
    await pbx.wait_for_websocket(timeout=HANG_S)
    call = await pbx.place_call(caller_number="+15554000001", dialled="100")
    await call.wait_for(lambda c: c.fate == "continued", timeout=15)
    assert call.continued_to == ("clinic-frontdesk", "s", 1)
    outage = await daemon.wait_for_log("recorder_db_unavailable")
    assert "Connect" in str(outage.get("detail")) or "refused" in str(outage.get("detail")), outage
    assert "not-the-password-0123" not in daemon.stderr
    spool = tmp_path / "data" / "spool"
    await eventually(lambda: any(call.channel_id in p.read_text() for p in spool.glob("*.jsonl")),
                     timeout=15, what="the call's record in the on-disk spool")

    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.exit_code(DRAIN_S + SHUTDOWN_MARGIN_S) == ExitCode.OK, daemon.stderr
    assert daemon.messages() == [] and "Traceback" not in daemon.stderr


@pytest.mark.parametrize("phase", ["daemon_starting", "daemon_started"])
async def test_sigterm_with_asterisk_not_answering_ends_it(tmp_path: Path, spawn: object, phase: str) -> None:
    """Asterisk accepts connections and never answers, the database is unreachable: SIGTERM
    during start-up (while the credentials check waits) or once started still ends it."""
    with black_hole() as ari_url:
        cfg = write_config(tmp_path, ari_url=ari_url, password="emulator-ari-password-0123")
        daemon = await spawn(cfg)  # type: ignore[operator]
        await daemon.wait_for_log(phase)
        if phase == "daemon_starting":
            assert daemon.logged("daemon_started") is None  # still in start-up
        daemon.proc.send_signal(signal.SIGTERM)
        budget = STARTUP_FAILURE_S if phase == "daemon_starting" else DRAIN_S + SHUTDOWN_MARGIN_S
        assert await daemon.exit_code(budget) == ExitCode.OK, daemon.stderr
    assert daemon.messages() == [] and "Traceback" not in daemon.stderr
    if phase == "daemon_starting":
        assert daemon.logged("daemon_start_abandoned") is not None, daemon.stderr


async def test_sigterm_with_calls_in_flight_and_the_database_down(
    pbx: AsteriskEmulator, tmp_path: Path, spawn: object
) -> None:
    """Calls still being greeted when SIGTERM comes go to the fallback after the drain; nothing
    waits on the unreachable database; every record reaches the spool."""
    cfg = write_config(tmp_path, ari_url=pbx.base_url, username=pbx.username, password=pbx.password)
    daemon = await spawn(cfg)  # type: ignore[operator]
    await pbx.wait_for_websocket(timeout=HANG_S)
    pbx.sounds["hello-world"] = 120.0  # the greeting outlasts the drain
    calls = [await pbx.place_call(caller_number=f"+1555400010{i}", dialled="100") for i in range(3)]
    for c in calls:
        await c.wait_for(lambda c: bool(c.playbacks), timeout=15)
    signalled = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    for c in calls:
        await c.wait_for(lambda c: c.fate == "continued", timeout=DRAIN_S + SHUTDOWN_MARGIN_S)
        assert c.continued_to is not None and c.continued_to[0] == "pbx-router-fallback"
    assert await daemon.exit_code(DRAIN_S + SHUTDOWN_MARGIN_S) == ExitCode.OK, daemon.stderr
    assert time.monotonic() - signalled >= DRAIN_S  # the drain was honoured, not skipped
    assert daemon.messages() == [] and "Traceback" not in daemon.stderr
    spooled = "".join(p.read_text() for p in (tmp_path / "data" / "spool").glob("*.jsonl"))
    assert all(c.channel_id in spooled for c in calls)
