"""A real Asterisk 22.10.1 on our asterisk_conf/, SIP callers and agent phones played by sipp, and
the daemon as a real process (``python -m pbx_router run``) on the example clinic's rules.

The only changes to our files are the ones an admin makes: ports, passwords, and (for tests
that must not depend on the time of day) a clinic calendar that is open around the clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from pbx_router.testing.asterisk import RealAsterisk, asterisk_prefix, free_port

from helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT.parent / "shared" / "asterisk" / "build.sh"
AUDIO = ROOT / "tests" / "fixtures" / "audio"

pytestmark = pytest.mark.asterisk


def ensure_asterisk() -> None:
    """The shared build script returns at once when the prefix holds the version."""
    if (asterisk_prefix() / "sbin" / "asterisk").exists():
        return
    if not BUILD.exists():
        pytest.fail(f"no Asterisk at {asterisk_prefix()} and no {BUILD} to build it")
    subprocess.run(["bash", str(BUILD), str(asterisk_prefix())], check=True)


@pytest_asyncio.fixture
async def asterisk() -> AsyncIterator[RealAsterisk]:
    ensure_asterisk()
    # Short: Asterisk's control socket path is limited to about 100 characters.
    run = Path(tempfile.mkdtemp(prefix="ast-", dir="/tmp"))
    ast = RealAsterisk(ROOT / "asterisk_conf", run)
    try:
        await ast.start()
        yield ast
    finally:
        await ast.stop()
        if os.environ.get("PBXR_KEEP_ASTERISK_RUN"):
            print(f"asterisk run directory kept: {run}")
        else:
            shutil.rmtree(run, ignore_errors=True)


def always_open_rules(path: Path) -> Path:
    """examples/clinic.yaml with the clinic open every hour of every day, no holidays."""
    rules: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "clinic.yaml").read_text(encoding="utf-8"))
    cal = rules["calendars"]["clinic"]
    cal["hours"] = {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    cal.pop("holidays", None)
    cal.pop("closures", None)
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class RealDaemon:
    proc: asyncio.subprocess.Process
    log: Path
    config: Path

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (name is None or record.get("event") == name):
                out.append(record)
        return out

    def refusals(self) -> list[tuple[str, str, int]]:
        """Every request Asterisk refused (4xx/5xx), as (method, path with ids replaced by *,
        status)."""
        return [(r["method"], _ID.sub("*", r["path"]), r["status"]) for r in self.events("ari_refused")]


    async def kill(self) -> None:
        """kill -9: nothing is cleaned up, Asterisk is not told."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(30):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# Channel, bridge and playback ids in a request path (ours "pbxr-...", "queue-<name>", Asterisk's
# "1796178555.12", uuids).
_ID = re.compile(r"pbxr-[^/]+|queue-[a-z0-9_-]+|\d{6,}\.\d+|[0-9a-f]{8}-[0-9a-f-]{27}")
# What the daemon expects Asterisk to refuse now and then, and handles: a listening leg not yet in
# Stasis (D2, tried again), a holding bridge that already exists (get-or-create), and a barge-in
# that stops a prompt which had just ended by itself (its PlaybackFinished still on the way: no
# request can tell; seen under load in the 20-caller test).
EXPECTED_REFUSALS = {("POST", "/bridges/*/addChannel", 422), ("POST", "/bridges", 409),
                     ("DELETE", "/playbacks/*", 404)}


async def app_registered(ast: RealAsterisk, app: str = "pbx-router") -> bool:
    headers = {"Authorization": aiohttp.encode_basic_auth("pbx-router", ast.ari_password)}
    try:
        async with aiohttp.ClientSession(headers=headers) as s, s.get(f"{ast.ari_url}/ari/applications") as r:
            return r.status == 200 and any(a.get("name") == app for a in await r.json())
    except aiohttp.ClientError:
        return False


@pytest_asyncio.fixture
async def real_daemon(asterisk: RealAsterisk, database_url: str, tmp_path: Path) -> AsyncIterator[RealDaemon]:
    daemon = await start_real_daemon(asterisk, daemon_config(asterisk, database_url, tmp_path), tmp_path / "daemon.log")
    try:
        yield daemon
    finally:
        await daemon.stop()


def daemon_config(asterisk: RealAsterisk, database_url: str, tmp_path: Path) -> Path:
    """The daemon's configuration for ``asterisk``: the example clinic (open around the clock),
    the test's database, debug logs in JSON."""
    rules = always_open_rules(tmp_path / "clinic.yaml")
    cfg = tmp_path / "pbx-router.yaml"
    cfg.write_text(f"""
ari: {{url: "{asterisk.ari_url}", username: pbx-router, password: "{asterisk.ari_password}",
       reconnect_min: 0.1, reconnect_max: 1}}
database: {{url: "{database_url}"}}
data_dir: "{tmp_path / 'data'}"
rules: "{rules}"
log: {{level: debug, format: json}}
calls:
  greeting: [sound:hello-world]
  fallback: {{context: pbx-router-fallback}}
media: {{rtp_host: 127.0.0.1, rtp_port_min: {asterisk.rtp_end + 1}, rtp_port_max: {asterisk.rtp_end + 200}}}
shutdown: {{drain_timeout: 5}}
admin: {{host: 127.0.0.1, port: {free_port()}, token: "{secrets.token_hex(16)}"}}
""", encoding="utf-8")
    return cfg


async def start_real_daemon(asterisk: RealAsterisk, cfg: Path, log: Path) -> RealDaemon:
    """``python -m pbx_router run -c cfg``, once it is connected to Asterisk (the app is
    registered); its output appended to ``log``."""
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pbx_router", "run", "-c", str(cfg), stdout=out, stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    daemon = RealDaemon(proc, log, cfg)

    async def connected() -> bool:
        return proc.returncode is not None or await app_registered(asterisk)

    try:
        await eventually(connected, timeout=90, what="daemon connected to Asterisk")
    except BaseException:
        await daemon.stop()
        raise
    assert proc.returncode is None, "\n".join(daemon.lines()[-20:])
    return daemon
