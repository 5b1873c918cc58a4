"""A real Asterisk for tests and for trying a configuration: our ``asterisk_conf/`` started in a
scratch run directory, with only ports and passwords changed the way an admin would change them.

    async with RealAsterisk(conf_dir=Path("asterisk_conf"), run_dir=tmp) as ast:
        ast.ari_url, ast.ari_password, ast.sip_port, ast.secret("agent1")

The Asterisk itself is the one ``../shared/asterisk/build.sh`` builds (22.10.1, in
``$ASTERISK_PREFIX`` or ``/opt/asterisk-22``). What ``start`` does:

* copies every ``*.conf`` of ``conf_dir`` into ``run_dir/etc``, then edits the copies: the HTTP and
  SIP ports (loopback only), the RTP range, and every ``CHANGE-ME-<name>`` password replaced by a
  generated one (``secret(name)`` gives it back);
* makes a data directory whose ``sounds/en`` holds the installed core sounds plus the clinic's
  own prompts (``examples/sounds/en/custom``) and pbx-router's (``pbx_router/prompts/en``, as
  ``pbx-router/``), and whose hold music is the installed one;
* writes ``run_dir/asterisk.conf`` whose ``[directories]`` point there (a plain section, not a
  template: a ``(!)`` section is silently ignored), starts ``asterisk -f`` and waits for
  ``core waitfullybooted``; ``stop`` runs ``core stop now`` and waits for the process.

Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

DEFAULT_PREFIX = "/opt/asterisk-22"
ROOT = Path(__file__).resolve().parents[2]


def append_log(path: Path) -> BinaryIO:
    """A log file a child process writes to (opened here, outside any coroutine)."""
    return open(path, "ab")  # noqa: SIM115 - the caller closes it


class AsteriskUnavailable(RuntimeError):
    """No built Asterisk at the prefix (run ``../shared/asterisk/build.sh``)."""


def asterisk_prefix() -> Path:
    return Path(os.environ.get("ASTERISK_PREFIX") or DEFAULT_PREFIX)


def asterisk_binary(prefix: Path | None = None) -> Path:
    binary = (prefix or asterisk_prefix()) / "sbin" / "asterisk"
    if not binary.exists():
        raise AsteriskUnavailable(f"no Asterisk at {binary}: run ../shared/asterisk/build.sh first")
    return binary


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_udp_range(size: int) -> int:
    """The first port of ``size`` consecutive UDP ports free right now (even, as RTP wants)."""
    for _ in range(200):
        start = 20000 + 2 * secrets.randbelow(10000)
        socks: list[socket.socket] = []
        try:
            for port in range(start, start + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range")


class RealAsterisk:
    def __init__(self, conf_dir: Path, run_dir: Path, *, prefix: Path | None = None,
                 sounds_custom: Path | None = None, rtp_ports: int = 400,
                 extra_conf: Mapping[str, str] | None = None) -> None:
        self.conf_dir = conf_dir
        self.run_dir = run_dir
        self.prefix = prefix or asterisk_prefix()
        self.binary = asterisk_binary(self.prefix)
        self.sounds_custom = sounds_custom or ROOT / "examples" / "sounds" / "en" / "custom"
        # Text an admin would add to a file (e.g. more phones in pjsip.conf), appended to our copy.
        self.extra_conf = dict(extra_conf or {})
        self.http_port = free_port()
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.rtp_start = free_udp_range(rtp_ports)
        self.rtp_end = self.rtp_start + rtp_ports - 1
        self._secrets: dict[str, str] = {}
        self._log: BinaryIO | None = None
        self._main = run_dir / "asterisk.conf"
        self.process: asyncio.subprocess.Process | None = None
        self.console_log = run_dir / "console.log"

    # -- what a test needs -----------------------------------------------------------------
    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ari_password(self) -> str:
        return self.secret("ari-password")

    def secret(self, name: str) -> str:
        """The password that replaced ``CHANGE-ME-<name>`` (e.g. ``agent1``, ``softphone``)."""
        if name not in self._secrets:
            self._secrets[name] = f"{name}-{secrets.token_hex(12)}"
        return self._secrets[name]

    # -- life cycle --------------------------------------------------------------------------
    async def __aenter__(self) -> RealAsterisk:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _write_config(self) -> Path:
        etc = self.run_dir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        for src in sorted(self.conf_dir.glob("*.conf")):
            text = src.read_text(encoding="utf-8")
            if src.name == "http.conf":
                text = re.sub(r"(?m)^bindport\s*=.*$", f"bindport = {self.http_port}", text)
                text = re.sub(r"(?m)^bindaddr\s*=.*$", "bindaddr = 127.0.0.1", text)
            elif src.name == "pjsip.conf":
                text = re.sub(r"(?m)^bind\s*=\s*[0-9.]+:\d+\s*$", f"bind = 127.0.0.1:{self.sip_port}", text)
            elif src.name == "rtp.conf":
                text = re.sub(r"(?m)^rtpstart\s*=.*$", f"rtpstart = {self.rtp_start}", text)
                text = re.sub(r"(?m)^rtpend\s*=.*$", f"rtpend = {self.rtp_end}", text)
            text += self.extra_conf.get(src.name, "")
            text = re.sub(r"CHANGE-ME-([A-Za-z0-9_-]+)", lambda m: self.secret(m.group(1)), text)
            (etc / src.name).write_text(text, encoding="utf-8")
        data = self.run_dir / "data"
        data.mkdir(exist_ok=True)
        installed = self.prefix / "var" / "lib" / "asterisk"
        for entry in installed.iterdir():
            if entry.name != "sounds" and not (data / entry.name).exists():
                (data / entry.name).symlink_to(entry.resolve())
        en = data / "sounds" / "en"
        en.mkdir(parents=True, exist_ok=True)
        sounds = (installed / "sounds").resolve()
        langs = [d for d in sounds.iterdir() if d.is_dir()] if sounds.is_dir() else []
        core = next((d for d in langs if d.name == "en"), None) or next(
            (d for d in langs if d.name.startswith("en")), None)
        if core is not None:
            for entry in core.iterdir():
                if not (en / entry.name).exists():
                    (en / entry.name).symlink_to(entry.resolve())
        if self.sounds_custom.is_dir() and not (en / "custom").exists():
            (en / "custom").symlink_to(self.sounds_custom.resolve())
        prompts = ROOT / "pbx_router" / "prompts" / "en"  # sound:pbx-router/<name> (booking)
        if prompts.is_dir() and not (en / "pbx-router").exists():
            (en / "pbx-router").symlink_to(prompts.resolve())
        run = self.run_dir
        for sub in ("lib", "spool", "run", "log", "cache"):
            (run / sub).mkdir(exist_ok=True)
        ours = (self.conf_dir / "asterisk.conf")
        options = ours.read_text(encoding="utf-8") if ours.exists() else ""
        options = re.sub(r"(?ms)^\[directories\].*?(?=^\[|\Z)", "", options)
        main = run / "asterisk.conf"
        main.write_text(
            "[directories]\n"
            f"astetcdir => {etc}\n"
            f"astmoddir => {self.prefix}/lib/asterisk/modules\n"
            f"astdatadir => {data}\n"
            f"astvarlibdir => {run}/lib\n"
            f"astdbdir => {run}/lib\n"
            f"astkeydir => {run}/lib\n"
            f"astspooldir => {run}/spool\n"
            f"astrundir => {run}/run\n"
            f"astlogdir => {run}/log\n"
            f"astcachedir => {run}/cache\n\n"
            + options.strip() + "\n",
            encoding="utf-8",
        )
        # Our asterisk.conf's [options] are kept; the run user is whoever runs the tests.
        return main

    async def start(self, timeout: float = 60.0) -> None:
        if len(str(self.run_dir / "run" / "asterisk.ctl")) > 100:
            raise RuntimeError(f"run directory too long for Asterisk's control socket: {self.run_dir}")
        main = self._main = self._write_config()
        log = self._log = append_log(self.console_log)
        self.process = await asyncio.create_subprocess_exec(
            str(self.binary), "-C", str(main), "-f", "-n", stdin=asyncio.subprocess.DEVNULL,
            stdout=log, stderr=log,
        )
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self.process.returncode is not None:
                        raise RuntimeError(f"Asterisk exited at start ({self.process.returncode}); "
                                           f"see {self.console_log}")
                    rc, _ = await self._rx("core waitfullybooted", check=False)
                    if rc == 0:
                        break
                    await asyncio.sleep(0.2)  # the control socket is not there yet
        except BaseException:
            await self.stop()
            raise

    async def _rx(self, command: str, check: bool = True) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            str(self.binary), "-C", str(self._main), "-rx", command,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        rc = proc.returncode if proc.returncode is not None else -1
        if check and rc != 0:
            raise RuntimeError(f"asterisk -rx {command!r} failed ({rc}): {out.decode(errors='replace')}")
        return rc, out.decode(errors="replace")

    async def restart(self, timeout: float = 60.0) -> None:
        """``core restart now``, as an admin would, then wait until it is fully booted again
        (the same process re-executes itself)."""
        await self._rx("core restart now", check=False)
        async with asyncio.timeout(timeout):
            while True:
                rc, out = await self._rx("core waitfullybooted", check=False)
                if rc == 0 and "fully booted" in out.lower():
                    # The restart may not have begun yet: only a fresh uptime counts.
                    _, uptime = await self._rx("core show uptime seconds", check=False)
                    if "System uptime: " in uptime and int(uptime.split("System uptime: ")[1].split()[0]) < 30:
                        return
                await asyncio.sleep(0.2)  # the control socket comes back when Asterisk does

    async def cli(self, command: str) -> str:
        """One Asterisk CLI command (``asterisk -rx``); its output."""
        return (await self._rx(command))[1]

    async def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(RuntimeError, OSError):
                await self._rx("core stop now", check=False)
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log, self._log = self._log, None
        if log is not None:
            log.close()

    def messages(self) -> str:
        """Asterisk's own log of this run (notices, warnings, errors)."""
        path = self.run_dir / "log" / "messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cleanup(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
